#include "upgrade/pipeline.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>

#include "agentd/files.h"
#include "agentd/json.h"
#include "agentd/metrics.h"
#include "upgrade/fetch.h"
#include "upgrade/plan.h"
#include "upgrade/verify.h"
#include "upgrade/version_floor.h"
#include "upgrade/version_range.h"

namespace agentd {

const char* build_arch() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__arm__)
  return "armhf";
#elif defined(__i386__)
  return "i386";
#else
  return "unknown";
#endif
}

std::string rpm_arch(const std::string& a) {
  if (a == "amd64") return "x86_64";
  if (a == "arm64") return "aarch64";
  if (a == "armhf") return "armv7hl";
  if (a == "i386") return "i686";
  return a;
}

std::string anax_bundle_name(PackageKind kind, const std::string& arch) {
  return std::string("horizon-agent-linux-") + (kind == PackageKind::rpm ? "rpm" : "deb") + "-" + arch +
         ".tar.gz";
}

Result<std::string> choose_package_file(const UpgradeSection& sw, PackageKind kind, const std::string& arch,
                                        bool prefer_bundle) {
  std::vector<std::string> names;
  for (const std::string& f : sw.files) {
    if (f == "*") {
      for (const auto& [name, hash] : sw.sha256) names.push_back(name);
    } else {
      names.push_back(f);
    }
  }
  std::vector<std::string> endings;
  switch (kind) {
    case PackageKind::deb: endings = {"_" + arch + ".deb", "_all.deb"}; break;
    case PackageKind::rpm: endings = {"." + rpm_arch(arch) + ".rpm", ".noarch.rpm"}; break;
    case PackageKind::tarball: endings = {"-" + arch + ".tar.gz"}; break;
  }
  std::vector<std::string> found;
  for (const std::string& n : names) {
    bool match =
        std::any_of(endings.begin(), endings.end(), [&](const std::string& e) { return n.ends_with(e); });
    if (match && std::find(found.begin(), found.end(), n) == found.end()) found.push_back(n);
  }
  std::string what = std::string(to_string(kind)) + " package for " + arch;
  if (prefer_bundle && kind != PackageKind::tarball &&
      std::find(names.begin(), names.end(), anax_bundle_name(kind, arch)) != names.end())
    found.clear();  // beside anax: the file anax downloaded, not a second one
  if (found.empty() && kind != PackageKind::tarball) {
    // What Open Horizon publishes: the agent's packages in one tar.gz per
    // package system and architecture (anax download_worker.go).
    std::string bundle = anax_bundle_name(kind, arch);
    if (std::find(names.begin(), names.end(), bundle) != names.end()) found.push_back(bundle);
  }
  if (found.empty()) {
    std::string listed;
    for (const std::string& n : names) listed += (listed.empty() ? "" : ", ") + n;
    return fail(Errc::verification,
                "the manifest lists no " + what + " (files: " + (listed.empty() ? "none" : listed) + ")");
  }
  if (found.size() > 1) {
    return fail(Errc::verification,
                "the manifest lists more than one " + what + ": " + found[0] + ", " + found[1]);
  }
  auto safe = safe_file_name(found[0]);
  if (!safe) return std::unexpected(safe.error());
  return *safe;
}

namespace {

namespace fs = std::filesystem;

// A signed manifest names the version it installs: exactly, as a range, or
// "latest" (then the package's own version, checked against the target, and its
// signed SHA-256 bind it).
Status binds_version(const std::string& manifest_version, const std::string& target) {
  if (manifest_version == target || manifest_version == "latest") return {};
  if (is_version_range_expression(manifest_version)) {
    auto range = parse_version_range(manifest_version);
    if (range && range->contains(target)) return {};
  }
  return fail(Errc::verification,
              "it is signed for version '" + manifest_version.substr(0, 64) + "', not " + target);
}

constexpr std::size_t kMaxRecordBytes = 64 * 1024;

// What agentd knows about one package file it verified: the agent version it
// stands for (the plan's name for it) and the version its package system reports.
struct Record {
  std::string agent_version;
  std::string package_version;
  std::string file;  // plain name in the record's directory
  std::string sha256;
  std::string attempt;  // prepared.json only: names this cycle's install and rollback runs
};

std::string record_json(const Record& r) {
  auto o = json::object();
  json::set(o.get(), "agentVersion", r.agent_version);
  json::set(o.get(), "packageVersion", r.package_version);
  json::set(o.get(), "file", r.file);
  json::set(o.get(), "sha256", r.sha256);
  if (!r.attempt.empty()) json::set(o.get(), "attempt", r.attempt);
  return json::print(o.get());
}

// nullopt when there is no record; an unreadable or damaged one is an error.
Result<std::optional<Record>> load_record(const std::string& path) {
  auto text = read_file(path, kMaxRecordBytes);
  if (!text) {
    if (text.error().code == Errc::not_found) return std::optional<Record>();
    return std::unexpected(text.error());
  }
  auto root = json::parse(*text, path);
  if (!root) return std::unexpected(root.error());
  Record r;
  auto a = json::get_string(root->get(), "agentVersion");
  auto p = json::get_string(root->get(), "packageVersion");
  auto f = json::get_string(root->get(), "file");
  auto h = json::get_string(root->get(), "sha256");
  auto at = json::opt_string(root->get(), "attempt");
  for (const auto* res : {&a, &p, &f, &h, &at})
    if (!*res) return fail(Errc::parse, path + ": " + res->error().message);
  r = Record{*a, *p, *f, *h, *at};
  if (!safe_file_name(r.file)) return fail(Errc::parse, path + ": bad file name '" + r.file + "'");
  return std::optional<Record>(std::move(r));
}

Status make_dir(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return fail(Errc::io, "cannot create " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0700);
  return {};
}

Status remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return fail(Errc::io, "cannot remove " + path + ": " + ec.message());
  return {};
}

std::string human_bytes(std::uint64_t n) {
  char buf[32];
  if (n >= 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1024.0 * 1024.0));
  else if (n >= 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  return buf;
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

class PipelineUpgrader final : public Upgrader {
 public:
  PipelineUpgrader(PipelineOptions o, PipelineParts p)
      : o_(std::move(o)),
        p_(p),
        floor_(version_floor_path(o_.state_dir, o_.package)),
        rng_(std::random_device{}()) {}

  // The installed package's version, named as the plan names it when agentd
  // installed that package itself (an rpm reports 2.0.0-1 for agent version 2.0.0).
  Result<std::string> running_version() override {
    auto v = installed_version();
    if (!v) return v;
    for (const std::string& path :
         {prepared_path_of_any(), current_dir() + "/record.json", previous_dir() + "/record.json"}) {
      if (path.empty()) continue;
      auto r = load_record(path);
      if (r && *r && (*r)->package_version == *v) return (*r)->agent_version;
    }
    return v;
  }

  Status prepare(const Target& t, const ProgressFn& progress) override {
    const std::string dir = download_dir(t.version);
    prune(t);
    if (auto s = make_dir(dir); !s) return s;
    // 1. The manifest, verified before anything in it is used.
    if (t.manifest.empty()) return fail(Errc::config, "no upgrade manifest names version " + t.version);
    say(progress, "reading manifest " + t.manifest);
    auto m = p_.artifacts.manifest(t.manifest);
    if (!m) return std::unexpected(m.error());
    if (auto s = verify_signature(*m); !s) return s;
    const UpgradeSection& sw = m->manifest.software;
    // The signature covers the version the manifest installs: a manifest signed
    // for another version is not a licence for this one (anti-rollback).
    if (auto s = binds_version(sw.version, t.version); !s)
      return fail(Errc::verification, "manifest " + t.manifest + ": " + s.error().message);
    if (auto s = floor_.check(t.version, o_.allow_downgrade); !s) return s;

    // 2. The one package for this node.
    auto name = choose_package_file(sw, p_.installer.kind(), o_.arch, o_.prefer_bundle);
    if (!name) return std::unexpected(name.error());
    auto hash = sw.sha256.find(*name);
    if (hash == sw.sha256.end())
      return fail(Errc::verification, "manifest " + t.manifest + " gives no SHA-256 for " + *name);
    auto offered = p_.artifacts.size(t.version, *name);
    if (!offered) return std::unexpected(offered.error());
    std::uint64_t size = *offered;
    if (auto s = sw.sizes.find(*name); s != sw.sizes.end() && s->second != size)
      return fail(Errc::verification, *name + ": the hub offers " + std::to_string(size) +
                                          " bytes, the signed manifest says " + std::to_string(s->second));
    if (size > o_.max_download_bytes)
      return fail(Errc::too_large, *name + " is " + human_bytes(size) + ", over AGENTD_MAX_DOWNLOAD_BYTES (" +
                                       human_bytes(o_.max_download_bytes) + ")");

    // 3. Download, resumable (upgrade/fetch.h).
    FetchOptions fo;
    fo.retry.attempts = o_.download_attempts;
    fo.request_timeout = o_.download_timeout;
    fo.sleeper = &p_.sleeper;
    fo.metrics = p_.metrics;
    fo.progress = [&](const FetchProgress& fp) {
      std::string text = "downloading " + fp.name + ": " + human_bytes(fp.done);
      if (fp.total > 0)
        text += " of " + human_bytes(fp.total) + " (" + std::to_string(fp.done * 100 / fp.total) + "%)";
      if (progress) progress({text, fp.done, fp.total});
    };
    // What is already on disk (a .part from before a crash, or the whole
    // file), so the log shows how much a resume saved.
    std::error_code ec;
    std::uint64_t had = 0;
    if (auto n = fs::file_size(dir + "/" + *name, ec); !ec)
      had = n;
    else if (auto m2 = fs::file_size(dir + "/" + *name + ".part", ec); !ec)
      had = m2;
    const auto started = std::chrono::steady_clock::now();
    if (auto s = p_.artifacts.fetch(t.version, *name, size, o_.max_download_bytes, dir, fo); !s) return s;
    if (had < size) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      char rate[32];
      std::snprintf(rate, sizeof rate, "%.3f",
                    secs > 0 ? static_cast<double>(size - had) / secs / 1048576.0 : 0.0);
      char took[32];
      std::snprintf(took, sizeof took, "%.3f", secs);
      p_.log.info("downloaded", {{"file", *name},
                                 {"bytes", std::to_string(size)},
                                 {"resumedFrom", std::to_string(had)},
                                 {"seconds", took},
                                 {"MiBps", rate}});
    }

    // 4. Its hash, then what the package says it is.
    const std::string file = dir + "/" + *name;
    say(progress, "verifying " + *name);
    if (auto s = verify_sha256(file, hash->second, o_.max_download_bytes); !s) {
      (void)::unlink(file.c_str());  // a damaged file is never installed; the next cycle fetches it again
      return s;
    }
    std::string package_name = *name;
    std::string package_sha = hash->second;
    if (*name == anax_bundle_name(p_.installer.kind(), o_.arch)) {
      auto unpacked = unpack_bundle(file, dir);
      if (!unpacked) return std::unexpected(unpacked.error());
      package_name = *unpacked;
      auto sha = sha256_file(dir + "/" + package_name, o_.max_download_bytes);
      if (!sha) return std::unexpected(sha.error());
      package_sha = *sha;
    }
    auto info = p_.installer.inspect(dir + "/" + package_name);
    if (!info) return std::unexpected(info.error());
    if (!package_version_matches(info->version, t.version))
      return fail(Errc::verification, package_name + " holds version " + info->version + " of " + info->name +
                                          ", the manifest names version " + t.version);

    // 5. A copy of the running version's package, for a rollback.
    keep_previous();

    // 6. Recorded, with a fresh attempt id for this cycle's install and rollback runs.
    Record r{t.version, info->version, package_name, package_sha, new_attempt()};
    if (auto s = write_file_atomic(dir + "/prepared.json", record_json(r)); !s) return s;
    p_.log.info("prepared", {{"target", t.version}, {"file", package_name}, {"package", info->version}});
    return {};
  }

  Status install(const Target& t) override {
    auto r = prepared(t);
    if (!r) return std::unexpected(r.error());
    // Checked again: the floor may have risen since prepare.
    if (auto s = floor_.check(r->agent_version, o_.allow_downgrade); !s) return s;
    const std::string file = download_dir(t.version) + "/" + r->file;
    // Checked again: the file sat on disk since prepare.
    if (auto s = verify_sha256(file, r->sha256, o_.max_download_bytes); !s) return s;
    const std::string dir = run_dir("install-" + r->attempt);
    auto s = p_.installer.install(file, "install-" + r->attempt, dir);
    log_output("install", dir);
    if (!s) return s;
    auto v = installed_version();
    if (!v) return fail(Errc::process, "after installing " + r->file + ": " + v.error().message);
    if (*v != r->package_version)
      return fail(Errc::process, "after installing " + r->file + " the package system reports version " + *v +
                                     ", expected " + r->package_version);
    if (auto raised = floor_.raise(r->agent_version); !raised)
      p_.log.warn("version-floor-failed", {{"error", raised.error().describe()}});
    return {};
  }

  Status restart(const Target&) override { return restart_agent(); }

  Status check_health(const Target& t) override {
    auto r = prepared(t);
    if (!r) return std::unexpected(r.error());
    auto s = wait_healthy(r->package_version);
    if (!s) return s;
    commit(t, *r);
    return {};
  }

  Status rollback(const Target& t) override {
    auto cur = prepared(t);
    std::string attempt = cur ? cur->attempt : new_attempt();
    const std::string dir = run_dir("rollback-" + attempt);
    auto prev = load_record(previous_dir() + "/record.json");
    if (!prev) return std::unexpected(prev.error());
    if (!*prev) {
      // Someone restored it already (agentd-rollback.service after a crash loop
      // of a new agentd): the previous version runs, and that is a rollback.
      auto v = installed_version();
      if (v && !t.previous_version.empty() && package_version_matches(*v, t.previous_version))
        return wait_healthy(*v);
      return fail(Errc::unsupported, "no package of " + t.previous_version + " was kept in " +
                                         previous_dir() + ": the previous version cannot be restored");
    }
    const Record& pr = **prev;
    const std::string file = previous_dir() + "/" + pr.file;
    if (auto s = verify_sha256(file, pr.sha256, o_.max_download_bytes); !s) return s;
    auto installed = p_.installer.install(file, "rollback-" + attempt, dir);
    log_output("rollback", dir);
    if (!installed) return installed;
    // Restarted once per rollback: when agentd rolls itself back, the restart
    // ends this process and the next one, resuming the rollback, must go on to
    // the health check instead of restarting itself again.
    const std::string restarted = dir + "/restart-requested";
    if (::access(restarted.c_str(), F_OK) != 0) {
      if (auto s = make_dir(dir); !s) return s;
      if (auto s = write_file_atomic(restarted, "", 0600); !s) return s;
      if (auto s = restart_agent(); !s) return s;
    }
    return wait_healthy(pr.package_version);
  }

 private:
  std::string download_dir(const std::string& v) const {
    return o_.state_dir + "/downloads/" + dir_name_of(v);
  }
  // Per package: agentd upgrading itself (AGENTD_AGENT_PACKAGE=agentd) keeps
  // its own previous package apart from the agent's, where agentd-rollback.service
  // finds it (previous/agentd/).
  std::string current_dir() const { return o_.state_dir + "/current/" + o_.package; }
  std::string previous_dir() const { return o_.state_dir + "/previous/" + o_.package; }
  // The run's directory; its parent is created here (DetachedRunner creates only the last level).
  std::string run_dir(const std::string& id) const {
    (void)make_dir(o_.state_dir + "/runs");
    return o_.state_dir + "/runs/" + id;
  }

  // The newest prepared.json, for naming the running version.
  std::string prepared_path_of_any() const {
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

  // The agent's own package out of an anax bundle (already verified against
  // the signed manifest): `<package>_*_<arch>.deb` / `_all.deb`, or
  // `<package>-*.<rpmarch>.rpm` / `.noarch.rpm`, at the top of the archive. Only
  // that one member is extracted, by its plain name, into `dir`.
  Result<std::string> unpack_bundle(const std::string& bundle, const std::string& dir) {
    ProcessSpec list;
    list.argv = {"tar", "-tzf", bundle};
    list.timeout = o_.command_timeout;
    list.max_output = 1024 * 1024;
    auto l = p_.runner.run(list);
    if (!l) return std::unexpected(l.error());
    if (l->exit_code != 0)
      return fail(Errc::verification, bundle + " is not a readable tar.gz: " + output_tail(l->output, 300));
    const bool rpm = p_.installer.kind() == PackageKind::rpm;
    std::vector<std::string> endings =
        rpm ? std::vector<std::string>{"." + rpm_arch(o_.arch) + ".rpm", ".noarch.rpm"}
            : std::vector<std::string>{"_" + o_.arch + ".deb", "_all.deb"};
    const std::string prefix = o_.package + (rpm ? "-" : "_");
    std::string member, plain;
    std::size_t start = 0;
    const std::string& text = l->output;
    while (start < text.size()) {
      std::size_t nl = text.find('\n', start);
      std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      start = nl == std::string::npos ? text.size() : nl + 1;
      std::string base = line.starts_with("./") ? line.substr(2) : line;
      if (base.find('/') != std::string::npos || !base.starts_with(prefix)) continue;
      // "horizon-cli_..." starts with "horizon" too: the next part must be the version.
      char after = base.size() > prefix.size() ? base[prefix.size()] : '\0';
      if (after < '0' || after > '9') continue;
      if (std::none_of(endings.begin(), endings.end(),
                       [&](const std::string& e) { return base.ends_with(e); }))
        continue;
      if (!member.empty())
        return fail(Errc::verification, bundle + " holds more than one " + o_.package + " package");
      member = line;
      plain = base;
    }
    if (member.empty())
      return fail(Errc::verification, bundle + " holds no " + o_.package + " package for " + o_.arch);
    if (!safe_file_name(plain))
      return fail(Errc::verification, bundle + ": unsafe member name '" + plain + "'");
    ProcessSpec extract;
    extract.argv = {"tar", "-xzf", bundle, "-C", dir, "--no-same-owner", "--no-same-permissions",
                    "--",  member};
    extract.timeout = o_.command_timeout;
    auto x = p_.runner.run(extract);
    if (!x) return std::unexpected(x.error());
    if (x->exit_code != 0)
      return fail(Errc::io, "extracting " + plain + " from " + bundle + ": " + output_tail(x->output, 300));
    // Only a plain file may stand for the package: a symlink or hard link
    // member would make us hash and install some other file.
    const std::string extracted = dir + "/" + plain;
    struct stat st {};
    if (::lstat(extracted.c_str(), &st) != 0)
      return fail(Errc::io, "cannot stat " + extracted + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
      (void)::unlink(extracted.c_str());
      return fail(Errc::verification, bundle + ": member " + member + " is not a regular file (" +
                                          (S_ISLNK(st.st_mode)   ? "a symlink"
                                           : S_ISREG(st.st_mode) ? "a hard link"
                                                                 : "not a file") +
                                          "); refusing it");
    }
    return plain;
  }

  // The package system's output goes into agentd's log (the journal), one
  // event per line, once per run; the whole of it stays in the run directory.
  void log_output(const char* step, const std::string& dir) {
    const std::string logged = dir + "/output-logged";
    if (::access(logged.c_str(), F_OK) == 0) return;
    auto text = read_file(dir + "/output.log", 256 * 1024);
    if (!text) return;
    constexpr int kMaxLines = 200;
    int n = 0;
    std::size_t start = 0;
    while (start < text->size() && n < kMaxLines) {
      std::size_t nl = text->find('\n', start);
      std::string line = text->substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      start = nl == std::string::npos ? text->size() : nl + 1;
      if (line.empty()) continue;
      p_.log.info("package-output", {{"step", step}, {"line", line}});
      ++n;
    }
    if (start < text->size())
      p_.log.info("package-output", {{"step", step}, {"line", "... (more in " + dir + "/output.log)"}});
    (void)write_file_atomic(logged, "", 0600);
  }

  static void say(const ProgressFn& progress, const std::string& text) {
    if (progress) progress({text});
  }

  std::string new_attempt() {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng_()));
    return buf;
  }

  Result<std::string> installed_version() {
    if (o_.version_command.empty()) return p_.installer.installed_version();
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", o_.version_command};
    spec.timeout = o_.command_timeout;
    auto r = p_.runner.run(spec);
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0)
      return fail(Errc::process, "the version command exited with " + std::to_string(r->exit_code));
    std::string v = r->output.substr(0, r->output.find('\n'));
    while (!v.empty() && (v.back() == ' ' || v.back() == '\r' || v.back() == '\t')) v.pop_back();
    if (v.empty()) return fail(Errc::process, "the version command printed no version");
    return v;
  }

  Status verify_signature(const SignedManifest& m) {
    std::optional<std::string> sig;
    if (!m.signature.empty()) {
      auto raw = base64_decode(m.signature);
      if (!raw)
        return fail(Errc::verification, "manifest " + m.org + "/" + m.id +
                                            ": its signature is not base64: " + raw.error().message);
      sig = std::move(*raw);
    }
    auto trust = TrustStore::load(o_.trusted_keys_dir);
    if (!trust) {
      if (!sig && o_.allow_unsigned_manifest)
        trust = TrustStore{};
      else
        return fail(trust.error().code, "trusted keys: " + trust.error().message);
    }
    // No key pinned is this node's configuration, not a bad artifact: the
    // prepare step fails and is retried (the member keeps preparing, and its
    // status says why) instead of failing the upgrade and halting the group.
    if (sig && trust->size() == 0)
      return fail(Errc::config,
                  "no trusted keys in " + o_.trusted_keys_dir +
                      ": put the publisher's public key (*.pem) there to accept signed manifests");
    if (auto s = verify_manifest(m.bytes, sig, *trust, o_.allow_unsigned_manifest); !s)
      return fail(s.error().code, "manifest " + m.org + "/" + m.id + ": " + s.error().message);
    if (!sig) {
      p_.log.warn(
          "unsigned-manifest-accepted",
          {{"manifest", m.org + "/" + m.id},
           {"why", "AGENTD_ALLOW_UNSIGNED_MANIFEST=true: nothing proves who published this upgrade"}});
    }
    return {};
  }

  Result<Record> prepared(const Target& t) {
    const std::string path = download_dir(t.version) + "/prepared.json";
    auto r = load_record(path);
    if (!r) return std::unexpected(r.error());
    if (!*r) return fail(Errc::io, "version " + t.version + " is not prepared (" + path + " is missing)");
    return **r;
  }

  // previous/ must hold the package of the version running now before
  // anything replaces it. Sources, best first: previous/ already has it;
  // current/ (the package agentd installed last) has it; the package system's
  // cache. Without one the upgrade still goes ahead: a failure then halts the
  // group as `failed` instead of `rolledback` (protocol.md §4.5), and the log
  // says why.
  void keep_previous() {
    auto running = installed_version();
    if (!running) {
      p_.log.warn("rollback-copy-unknown", {{"error", running.error().describe()}});
      return;
    }
    auto prev = load_record(previous_dir() + "/record.json");
    if (prev && *prev && (*prev)->package_version == *running) return;
    auto cur = load_record(current_dir() + "/record.json");
    if (cur && *cur && (*cur)->package_version == *running) {
      std::error_code ec;
      (void)remove_tree(previous_dir());
      (void)make_dir(fs::path(previous_dir()).parent_path().string());
      fs::rename(current_dir(), previous_dir(), ec);
      if (!ec) {
        p_.log.info("rollback-copy", {{"version", *running}, {"from", "current"}});
        return;
      }
      p_.log.warn("rollback-copy-failed", {{"error", ec.message()}});
    }
    if (auto cached = from_cache(*running)) {
      p_.log.info("rollback-copy", {{"version", *running}, {"from", *cached}});
      return;
    }
    p_.log.warn("no-rollback-copy",
                {{"running", *running},
                 {"why", "no package of the running version is kept in " + previous_dir() +
                             " nor in the package cache: a failed upgrade cannot be rolled back"}});
  }

  // The package cache: apt keeps what it downloaded in /var/cache/apt/archives.
  std::optional<std::string> from_cache(const std::string& version) {
    if (p_.installer.kind() != PackageKind::deb) return std::nullopt;
    std::string escaped;  // apt's file names spell an epoch's ':' as %3a
    for (char c : version) escaped += c == ':' ? std::string("%3a") : std::string(1, c);
    std::string root = o_.install_root == "/" ? "" : o_.install_root;
    for (const std::string& arch : {o_.arch, std::string("all")}) {
      std::string name = o_.package + "_" + escaped + "_" + arch + ".deb";
      std::string path = root + "/var/cache/apt/archives/" + name;
      if (::access(path.c_str(), R_OK) != 0) continue;
      auto info = p_.installer.inspect(path);
      if (!info || info->version != version) continue;
      auto hash = sha256_file(path, o_.max_download_bytes);
      if (!hash) continue;
      const std::string staging = previous_dir() + ".new";
      (void)remove_tree(staging);
      if (!make_dir(staging)) return std::nullopt;
      std::error_code ec;
      fs::copy_file(path, staging + "/" + name, ec);
      if (ec || !write_file_atomic(staging + "/record.json",
                                   record_json(Record{version, version, name, *hash, ""})))
        return std::nullopt;
      (void)remove_tree(previous_dir());
      fs::rename(staging, previous_dir(), ec);
      if (ec) return std::nullopt;
      return path;
    }
    return std::nullopt;
  }

  // The upgrade stands: its package becomes current/, what was current
  // before is already previous/ (keep_previous), downloads go.
  void commit(const Target& t, const Record& r) {
    auto cur = load_record(current_dir() + "/record.json");
    if (cur && *cur && (*cur)->package_version == r.package_version) return;  // done before a restart
    const std::string staging = current_dir() + ".new";
    (void)remove_tree(staging);
    if (!make_dir(staging)) return;
    std::error_code ec;
    fs::copy_file(download_dir(t.version) + "/" + r.file, staging + "/" + r.file, ec);
    Record kept = r;
    kept.attempt.clear();
    if (ec || !write_file_atomic(staging + "/record.json", record_json(kept))) {
      p_.log.warn("keep-package-failed", {{"file", r.file}, {"error", ec ? ec.message() : "record"}});
      return;
    }
    (void)remove_tree(current_dir());
    fs::rename(staging, current_dir(), ec);
    if (ec) {
      p_.log.warn("keep-package-failed", {{"file", r.file}, {"error", ec.message()}});
      return;
    }
    (void)remove_tree(download_dir(t.version));  // current/ has the package now
  }

  // A new cycle begins: downloads of other versions are not needed any more
  // (the target's own may hold a .part to resume), and of the finished install
  // and rollback runs the newest few are kept for the operator.
  void prune(const Target& t) {
    std::error_code ec;
    const std::string keep = fs::path(download_dir(t.version)).filename().string();
    for (const auto& e : fs::directory_iterator(o_.state_dir + "/downloads", ec))
      if (e.path().filename() != keep) (void)remove_tree(e.path().string());
    std::vector<std::pair<fs::file_time_type, std::string>> runs;
    for (const auto& e : fs::directory_iterator(o_.state_dir + "/runs", ec))
      runs.emplace_back(fs::last_write_time(e.path(), ec), e.path().string());
    std::sort(runs.begin(), runs.end(), std::greater<>());
    constexpr std::size_t kRunsKept = 8;
    for (std::size_t i = kRunsKept; i < runs.size(); ++i) (void)remove_tree(runs[i].second);
  }

  Status restart_agent() {
    if (!o_.restart_command.empty()) return run_command("restart", o_.restart_command);
    if (o_.agent_unit.empty()) return {};
    if (p_.units == nullptr) {
      p_.log.warn("restart-skipped", {{"unit", o_.agent_unit}, {"why", "systemd is not running"}});
      return {};
    }
    return p_.units->restart(o_.agent_unit, o_.restart_timeout);
  }

  Status run_command(const char* step, const std::string& command) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", command};
    spec.timeout = o_.command_timeout;
    auto r = p_.runner.run(spec);
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0 || r->signal != 0 || r->timed_out) {
      std::string out = output_tail(r->output, 300);
      return fail(Errc::process, std::string(step) + " command " +
                                     (r->timed_out ? std::string("timed out")
                                                   : "exited with " + std::to_string(r->exit_code)) +
                                     (out.empty() ? "" : ": " + out));
    }
    return {};
  }

  // One round of the health check; the reason it fails, or nothing.
  std::optional<std::string> health_problem(const std::string& package_version) {
    auto v = installed_version();
    if (!v) return "cannot read the agent's version: " + v.error().message;
    if (*v != package_version) return "the agent's package is at " + *v + ", expected " + package_version;
    if (p_.units != nullptr && !o_.agent_unit.empty()) {
      auto st = p_.units->active_state(o_.agent_unit);
      if (!st) return st.error().message;
      if (*st != "active") return o_.agent_unit + " is " + *st;
    }
    if (auto n = p_.hub.get_node(); !n)
      return "the hub does not answer with this node's credentials: " + n.error().message;
    if (!o_.health_command.empty()) {
      if (auto s = run_command("health", o_.health_command); !s) return s.error().message;
    }
    return std::nullopt;
  }

  Status wait_healthy(const std::string& package_version) {
    const Mono deadline = p_.clock.mono() + o_.health_timeout;
    for (;;) {
      auto problem = health_problem(package_version);
      if (!problem) return {};
      if (p_.clock.mono() + o_.health_retry >= deadline)
        return fail(Errc::process, "not healthy within " + std::to_string(o_.health_timeout.count() / 1000) +
                                       " s: " + *problem);
      if (!p_.sleeper.sleep_for(o_.health_retry)) return fail(Errc::cancelled, "stopping");
    }
  }

  PipelineOptions o_;
  PipelineParts p_;
  VersionFloor floor_;
  std::mt19937_64 rng_;
};

}  // namespace

std::uint64_t free_own_space(const std::string& state_dir, const std::string& keep_version,
                             bool drop_partial) {
  std::uint64_t freed = 0;
  std::error_code ec;
  auto size_of = [&](const fs::path& p) {
    std::uint64_t n = 0;
    std::error_code e;
    if (fs::is_regular_file(fs::symlink_status(p, e))) return static_cast<std::uint64_t>(fs::file_size(p, e));
    for (const auto& f : fs::recursive_directory_iterator(p, e))
      if (f.is_regular_file(e) && !f.is_symlink(e)) n += f.file_size(e);
    return n;
  };
  auto drop = [&](const fs::path& p) {
    const std::uint64_t n = size_of(p);
    std::error_code e;
    if (fs::remove_all(p, e) > 0 && !e) freed += n;
  };
  const std::string keep = keep_version.empty() ? std::string() : dir_name_of(keep_version);
  for (const auto& d : fs::directory_iterator(state_dir + "/downloads", ec)) {
    if (d.path().filename() != keep) {
      drop(d.path());
      continue;
    }
    if (!drop_partial) continue;
    std::error_code e;
    for (const auto& f : fs::directory_iterator(d.path(), e))
      if (f.path().extension() == ".part") drop(f.path());
  }
  std::vector<std::pair<fs::file_time_type, fs::path>> runs;
  for (const auto& r : fs::directory_iterator(state_dir + "/runs", ec))
    runs.emplace_back(fs::last_write_time(r.path(), ec), r.path());
  std::sort(runs.begin(), runs.end(), std::greater<>());
  for (std::size_t i = 2; i < runs.size(); ++i) drop(runs[i].second);
  return freed;
}

std::unique_ptr<Upgrader> make_pipeline_upgrader(PipelineOptions options, PipelineParts parts) {
  return std::make_unique<PipelineUpgrader>(std::move(options), parts);
}

}  // namespace agentd
