#include "upgrade/fetch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <set>

#include "agentd/metrics.h"

namespace agentd {

namespace {

const std::string kPartSuffix = ".part";

// The size of `path`; nullopt when it does not exist.
Result<std::optional<std::uint64_t>> size_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) return fail(Errc::io, path + " is not a regular file");
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(st.st_size));
  }
  if (errno == ENOENT) return std::optional<std::uint64_t>();
  return fail(Errc::io, "cannot stat " + path + ": " + std::strerror(errno));
}

Status remove_file(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return {};
  return fail(Errc::io, "cannot remove " + path + ": " + std::strerror(errno));
}

// A rename is durable only once its directory is synced.
void sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: some file systems refuse directory fsync
  ::close(fd);
}

// A status other than 2xx as an error (categories: agentd/http.h http_status_error).
Error status_error(const HttpResponse& r, const std::string& url) {
  std::string text = "GET " + url + ": HTTP " + std::to_string(r.status);
  if (!r.body.empty()) text += ": " + r.body.substr(0, 200);
  return http_status_error(r, std::move(text));
}

// What one item needs, worked out before any request.
struct Job {
  const FetchItem* item = nullptr;
  std::string final_path;
  std::string part_path;
  std::uint64_t cap = 0;       // the file may not grow beyond this
  bool complete = false;       // the final file is already there
  std::uint64_t to_fetch = 0;  // bytes still to come (an upper bound when the size is unknown)
};

Result<Job> plan_job(const FetchItem& item, const std::string& dir) {
  if (!fetch_name_ok(item.name))
    return fail(Errc::parse,
                "refusing file name '" + item.name +
                    "': only A-Z a-z 0-9 . _ + - are allowed, 1 to 128 characters, no leading dot");
  if (item.url.empty()) return fail(Errc::parse, item.name + ": no URL");
  if (item.size > 0 && item.max_bytes > 0 && item.size > item.max_bytes)
    return fail(Errc::too_large, item.name + ": size " + std::to_string(item.size) + " exceeds the cap of " +
                                     std::to_string(item.max_bytes) + " bytes");
  Job job;
  job.item = &item;
  job.final_path = dir + "/" + item.name;
  job.part_path = job.final_path + kPartSuffix;
  job.cap = item.size > 0 ? item.size : item.max_bytes;
  if (job.cap == 0) return fail(Errc::internal, item.name + ": neither a size nor a size cap");

  auto final_size = size_of(job.final_path);
  if (!final_size) return std::unexpected(final_size.error());
  if (*final_size && (item.size == 0 || **final_size == item.size)) {
    job.complete = true;
    return job;
  }
  auto part_size = size_of(job.part_path);
  if (!part_size) return std::unexpected(part_size.error());
  const std::uint64_t have = part_size->value_or(0);
  job.to_fetch = have <= job.cap ? job.cap - have : job.cap;
  return job;
}

Status check_space(const std::string& dir, std::uint64_t needed) {
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0)
    return fail(Errc::io, "cannot check the free space of " + dir + ": " + std::strerror(errno));
  const std::uint64_t have = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (have < needed)
    return fail(Errc::io, "not enough space in " + dir + ": need " + std::to_string(needed) +
                              " bytes, have " + std::to_string(have));
  return {};
}

}  // namespace

bool fetch_name_ok(const std::string& name) {
  if (name.empty() || name.size() > 128 || name.front() == '.') return false;
  if (name.size() >= kPartSuffix.size() && name.ends_with(kPartSuffix)) return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '+' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Status fetch_all(HttpClient& http, const std::vector<FetchItem>& items, const std::string& dir,
                 const FetchOptions& options) {
  // Everything that can be refused is refused before the first request.
  std::vector<Job> jobs;
  std::set<std::string> names;
  std::uint64_t needed = options.min_free_bytes;
  std::uint64_t all_total = 0;
  bool sizes_known = true;
  for (const auto& item : items) {
    auto job = plan_job(item, dir);
    if (!job) return std::unexpected(job.error());
    if (!names.insert(item.name).second)
      return fail(Errc::parse, "file name '" + item.name + "' appears twice");
    needed = job->to_fetch > UINT64_MAX - needed ? UINT64_MAX : needed + job->to_fetch;
    all_total += item.size;
    sizes_known = sizes_known && item.size > 0;
    jobs.push_back(std::move(*job));
  }
  if (auto st = check_space(dir, needed); !st) return st;
  if (!sizes_known) all_total = 0;

  std::mt19937_64 rng(std::random_device{}());
  const int attempts = std::max(1, options.retry.attempts);
  std::uint64_t all_done = 0;  // bytes of the files finished so far
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const Job& job = jobs[i];
    const FetchItem& item = *job.item;
    auto report = [&](std::uint64_t done, std::uint64_t total) {
      if (!options.progress) return;
      options.progress(FetchProgress{item.name, i, jobs.size(), done, total ? total : item.size,
                                     all_done + done, all_total});
    };
    if (job.complete) {
      auto size = size_of(job.final_path);
      if (!size) return std::unexpected(size.error());
      const std::uint64_t done = size->value_or(0);
      report(done, done);
      all_done += done;
      continue;
    }
    // A final file of the wrong size is not ours to keep.
    if (auto st = remove_file(job.final_path); !st) return st;

    bool restarted = false;  // after a 416: the .part does not fit the server's object
    for (int attempt = 0;;) {
      if (options.sleeper && options.sleeper->stop_requested())
        return fail(Errc::cancelled, "fetching " + item.name + ": stop requested");
      auto part = size_of(job.part_path);
      if (!part) return std::unexpected(part.error());
      std::uint64_t offset = part->value_or(0);
      if (offset > job.cap) {
        if (auto st = remove_file(job.part_path); !st) return st;
        offset = 0;
      }
      // Complete in an earlier run that stopped before the rename.
      if (item.size > 0 && offset == item.size) break;

      Error err;
      HttpRequest req{"GET", item.url, {}, "", options.request_timeout};
      auto r = http.download(req, job.part_path, offset, job.cap, report);
      if (options.metrics) {
        auto now_have = size_of(job.part_path);
        const std::uint64_t have = now_have ? now_have->value_or(0) : 0;
        options.metrics->download(have > offset ? have - offset : 0, offset > 0);
      }
      if (r && r->status >= 200 && r->status <= 299) {
        auto got = size_of(job.part_path);
        if (!got) return std::unexpected(got.error());
        const std::uint64_t have = got->value_or(0);
        if (item.size == 0 || have == item.size) break;
        // The body ended early without the transport noticing: resume like after a reset.
        err = Error{Errc::transport, "GET " + item.url + ": got " + std::to_string(have) + " of " +
                                         std::to_string(item.size) + " bytes"};
      } else if (r) {
        err = status_error(*r, item.url);
      } else {
        err = r.error();
      }
      if (err.code == Errc::http && err.http_status == 416 && !restarted) {
        restarted = true;
        if (auto st = remove_file(job.part_path); !st) return st;
        continue;
      }
      ++attempt;
      if (!err.transient() || attempt >= attempts) {
        auto left = size_of(job.part_path);
        if (left && *left == 0u) (void)remove_file(job.part_path);  // nothing to resume from
        std::string text = "fetching " + item.name + ": " + err.message;
        if (err.transient()) text += " (gave up after " + std::to_string(attempt) + " attempts)";
        return fail(err.code, text, err.http_status);
      }
      const auto wait = full_jitter(attempt - 1, options.retry.base, options.retry.cap, rng);
      if (options.sleeper && !options.sleeper->sleep_for(wait))
        return fail(Errc::cancelled, "fetching " + item.name + ": stop requested");
    }

    if (::rename(job.part_path.c_str(), job.final_path.c_str()) != 0)
      return fail(Errc::io, "cannot rename " + job.part_path + ": " + std::strerror(errno));
    sync_dir(dir);
    auto size = size_of(job.final_path);
    if (!size) return std::unexpected(size.error());
    all_done += size->value_or(0);
  }
  return {};
}

}  // namespace agentd
