#include "upgrade/package_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <vector>

#include "agentd/files.h"
#include "agentd/json.h"
#include "upgrade/verify.h"

namespace agentd {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxRecordBytes = 64 * 1024;

Status remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return fail(Errc::io, "cannot remove " + path + ": " + ec.message());
  return {};
}

}  // namespace

std::string record_json(const PackageRecord& r) {
  auto o = json::object();
  json::set(o.get(), "agentVersion", r.agent_version);
  json::set(o.get(), "packageVersion", r.package_version);
  json::set(o.get(), "file", r.file);
  json::set(o.get(), "sha256", r.sha256);
  if (!r.attempt.empty()) json::set(o.get(), "attempt", r.attempt);
  return json::print(o.get());
}

// nullopt when there is no record; an unreadable or damaged one is an error.
Result<std::optional<PackageRecord>> load_record(const std::string& path) {
  auto text = read_file(path, kMaxRecordBytes);
  if (!text) {
    if (text.error().code == Errc::not_found) return std::optional<PackageRecord>();
    return std::unexpected(text.error());
  }
  auto root = json::parse(*text, path);
  if (!root) return std::unexpected(root.error());
  PackageRecord r;
  auto a = json::get_string(root->get(), "agentVersion");
  auto p = json::get_string(root->get(), "packageVersion");
  auto f = json::get_string(root->get(), "file");
  auto h = json::get_string(root->get(), "sha256");
  auto at = json::opt_string(root->get(), "attempt");
  for (const auto* res : {&a, &p, &f, &h, &at})
    if (!*res) return fail(Errc::parse, path + ": " + res->error().message);
  r = PackageRecord{*a, *p, *f, *h, *at};
  if (!safe_file_name(r.file)) return fail(Errc::parse, path + ": bad file name '" + r.file + "'");
  return std::optional<PackageRecord>(std::move(r));
}

Status make_private_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail(Errc::io, "cannot create " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0700);
  return {};
}

// A version string names a directory: keep only what package versions use.
std::string dir_name_of(const std::string& version) {
  std::string out;
  for (char c : version) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == '+' || c == '_';
    out += ok ? c : '_';
  }
  if (out.empty() || out.front() == '.') out.insert(out.begin(), 'v');
  return out.substr(0, 100);
}

std::string PackageStore::download_dir(const std::string& v) const {
  return o_.state_dir + "/downloads/" + dir_name_of(v);
}
std::string PackageStore::current_dir() const {
  return o_.state_dir + "/current/" + o_.package;
}
std::string PackageStore::previous_dir() const {
  return o_.state_dir + "/previous/" + o_.package;
}
std::string PackageStore::run_dir(const std::string& id) const {
  (void)make_private_dirs(o_.state_dir + "/runs");
  return o_.state_dir + "/runs/" + id;
}

std::string PackageStore::prepared_path_of_any() const {
  std::error_code ec;
  std::string best;
  fs::file_time_type best_time{};
  for (const auto& e : fs::directory_iterator(o_.state_dir + "/downloads", ec)) {
    auto p = e.path() / "prepared.json";
    auto t = fs::last_write_time(p, ec);
    if (ec) continue;
    if (best.empty() || t > best_time) {
      best = p.string();
      best_time = t;
    }
  }
  return best;
}

void PackageStore::keep_previous(const std::string& running) {
  auto prev = load_record(previous_dir() + "/record.json");
  if (prev && *prev && (*prev)->package_version == running) return;
  auto cur = load_record(current_dir() + "/record.json");
  if (cur && *cur && (*cur)->package_version == running) {
    std::error_code ec;
    (void)remove_tree(previous_dir());
    (void)make_private_dirs(fs::path(previous_dir()).parent_path().string());
    fs::rename(current_dir(), previous_dir(), ec);
    if (!ec) {
      log_.info("rollback-copy", {{"version", running}, {"from", "current"}});
      return;
    }
    log_.warn("rollback-copy-failed", {{"error", ec.message()}});
  }
  if (auto cached = from_cache(running)) {
    log_.info("rollback-copy", {{"version", running}, {"from", *cached}});
    return;
  }
  log_.warn("no-rollback-copy",
            {{"running", running},
             {"why", "no package of the running version is kept in " + previous_dir() +
                         " nor in the package cache: a failed upgrade cannot be rolled back"}});
}

std::optional<std::string> PackageStore::from_cache(const std::string& version) {
  if (installer_.kind() != PackageKind::deb) return std::nullopt;
  std::string escaped;  // apt's file names spell an epoch's ':' as %3a
  for (char c : version) escaped += c == ':' ? std::string("%3a") : std::string(1, c);
  std::string root = o_.install_root == "/" ? "" : o_.install_root;
  for (const std::string& arch : {o_.arch, std::string("all")}) {
    std::string name = o_.package + "_" + escaped + "_" + arch + ".deb";
    std::string path = root + "/var/cache/apt/archives/" + name;
    if (::access(path.c_str(), R_OK) != 0) continue;
    auto info = installer_.inspect(path);
    if (!info || info->version != version) continue;
    auto hash = sha256_file(path, o_.max_bytes);
    if (!hash) continue;
    const std::string staging = previous_dir() + ".new";
    (void)remove_tree(staging);
    if (!make_private_dirs(staging)) return std::nullopt;
    std::error_code ec;
    fs::copy_file(path, staging + "/" + name, ec);
    if (ec || !write_file_atomic(staging + "/record.json",
                                 record_json(PackageRecord{version, version, name, *hash, ""})))
      return std::nullopt;
    (void)remove_tree(previous_dir());
    fs::rename(staging, previous_dir(), ec);
    if (ec) return std::nullopt;
    return path;
  }
  return std::nullopt;
}

void PackageStore::commit(const std::string& version, const PackageRecord& r) {
  auto cur = load_record(current_dir() + "/record.json");
  if (cur && *cur && (*cur)->package_version == r.package_version) return;  // done before a restart
  const std::string staging = current_dir() + ".new";
  (void)remove_tree(staging);
  if (!make_private_dirs(staging)) return;
  std::error_code ec;
  fs::copy_file(download_dir(version) + "/" + r.file, staging + "/" + r.file, ec);
  PackageRecord kept = r;
  kept.attempt.clear();
  if (ec || !write_file_atomic(staging + "/record.json", record_json(kept))) {
    log_.warn("keep-package-failed", {{"file", r.file}, {"error", ec ? ec.message() : "record"}});
    return;
  }
  (void)remove_tree(current_dir());
  fs::rename(staging, current_dir(), ec);
  if (ec) {
    log_.warn("keep-package-failed", {{"file", r.file}, {"error", ec.message()}});
    return;
  }
  (void)remove_tree(download_dir(version));  // current/ has the package now
}

void PackageStore::prune(const std::string& version) {
  std::error_code ec;
  const std::string keep = fs::path(download_dir(version)).filename().string();
  for (const auto& e : fs::directory_iterator(o_.state_dir + "/downloads", ec))
    if (e.path().filename() != keep) (void)remove_tree(e.path().string());
  std::vector<std::pair<fs::file_time_type, std::string>> runs;
  for (const auto& e : fs::directory_iterator(o_.state_dir + "/runs", ec))
    runs.emplace_back(fs::last_write_time(e.path(), ec), e.path().string());
  std::sort(runs.begin(), runs.end(), std::greater<>());
  constexpr std::size_t kRunsKept = 8;
  for (std::size_t i = kRunsKept; i < runs.size(); ++i) (void)remove_tree(runs[i].second);
}

}  // namespace agentd
