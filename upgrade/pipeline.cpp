#include "upgrade/pipeline.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>

#include "agentd/files.h"
#include "agentd/metrics.h"
#include "upgrade/bundle.h"
#include "upgrade/fetch.h"
#include "upgrade/health.h"
#include "upgrade/package_store.h"
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

class PipelineUpgrader final : public Upgrader {
 public:
  PipelineUpgrader(PipelineOptions o, PipelineParts p)
      : o_(std::move(o)),
        p_(p),
        store_({o_.state_dir, o_.package, o_.arch, o_.install_root, o_.max_download_bytes}, p_.installer,
               p_.log),
        health_(health_check()),
        floor_(version_floor_path(o_.state_dir, o_.package)),
        rng_(std::random_device{}()) {}

  // The installed package's version, named as the plan names it when agentd
  // installed that package itself (an rpm reports 2.0.0-1 for agent version 2.0.0).
  Result<std::string> running_version() override {
    auto v = installed_version();
    if (!v) return v;
    for (const std::string& path :
         {store_.prepared_path_of_any(), current_dir() + "/record.json", previous_dir() + "/record.json"}) {
      if (path.empty()) continue;
      auto r = load_record(path);
      if (r && *r && (*r)->package_version == *v) return (*r)->agent_version;
    }
    return v;
  }

  Status prepare(const Target& t, const ProgressFn& progress) override {
    const std::string dir = download_dir(t.version);
    store_.prune(t.version);
    if (auto s = make_private_dirs(dir); !s) return s;
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
      auto unpacked =
          unpack_bundle(p_.runner, o_.command_timeout, {p_.installer.kind(), o_.package, o_.arch}, file, dir);
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
    PackageRecord r{t.version, info->version, package_name, package_sha, new_attempt()};
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
    store_.commit(t.version, *r);
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
    const PackageRecord& pr = **prev;
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
      if (auto s = make_private_dirs(dir); !s) return s;
      if (auto s = write_file_atomic(restarted, "", 0600); !s) return s;
      if (auto s = restart_agent(); !s) return s;
    }
    return wait_healthy(pr.package_version);
  }

 private:
  std::string download_dir(const std::string& v) const { return store_.download_dir(v); }
  std::string current_dir() const { return store_.current_dir(); }
  std::string previous_dir() const { return store_.previous_dir(); }
  std::string run_dir(const std::string& id) const { return store_.run_dir(id); }

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

  Result<PackageRecord> prepared(const Target& t) {
    const std::string path = download_dir(t.version) + "/prepared.json";
    auto r = load_record(path);
    if (!r) return std::unexpected(r.error());
    if (!*r) return fail(Errc::io, "version " + t.version + " is not prepared (" + path + " is missing)");
    return **r;
  }

  // A copy of the running version's package, for a rollback (PackageStore::keep_previous).
  void keep_previous() {
    auto running = installed_version();
    if (!running) {
      p_.log.warn("rollback-copy-unknown", {{"error", running.error().describe()}});
      return;
    }
    store_.keep_previous(*running);
  }

  HealthCheck health_check() {
    HealthCheck h;
    h.installed_version = [this] { return installed_version(); };
    h.units = p_.units;
    h.agent_unit = o_.agent_unit;
    h.hub = &p_.hub;
    if (!o_.health_command.empty()) h.command = [this] { return run_command("health", o_.health_command); };
    h.clock = &p_.clock;
    h.sleeper = &p_.sleeper;
    h.timeout = o_.health_timeout;
    h.retry = o_.health_retry;
    return h;
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

  Status wait_healthy(const std::string& package_version) {
    return agentd::wait_healthy(health_, package_version);
  }

  PipelineOptions o_;
  PipelineParts p_;
  PackageStore store_;
  HealthCheck health_;
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
