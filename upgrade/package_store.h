// The package files agentd keeps under its state directory (upgrade/pipeline.h):
// the downloads of a target version, the package it installed last (current/)
// and the package of the version before it (previous/), each with a record of
// what was verified about it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "agentd/log.h"
#include "agentd/result.h"
#include "upgrade/installer.h"

namespace agentd {

// What agentd knows about one package file it verified: the agent version it
// stands for (the plan's name for it) and the version its package system reports.
struct PackageRecord {
  std::string agent_version;
  std::string package_version;
  std::string file;  // plain name in the record's directory
  std::string sha256;
  std::string attempt;  // prepared.json only: names this cycle's install and rollback runs
};

std::string record_json(const PackageRecord& r);

// nullopt when there is no record; an unreadable or damaged one is an error.
Result<std::optional<PackageRecord>> load_record(const std::string& path);

// A version string names a directory: only what package versions use is kept.
std::string dir_name_of(const std::string& version);

// create_directories, then mode 0700.
Status make_private_dirs(const std::string& path);

struct PackageStoreOptions {
  std::string state_dir;
  std::string package;  // the agent's package: current/<package>/, previous/<package>/
  std::string arch;     // for the package cache's file names
  std::string install_root = "/";
  std::uint64_t max_bytes = 1024ull * 1024 * 1024;  // of a package file hashed from the cache
};

class PackageStore {
 public:
  // `installer` (inspect, kind) and `log` must outlive the store.
  PackageStore(PackageStoreOptions options, Installer& installer, Logger& log)
      : o_(std::move(options)), installer_(installer), log_(log) {}

  std::string download_dir(const std::string& version) const;
  // Per package: agentd upgrading itself (AGENTD_AGENT_PACKAGE=agentd) keeps
  // its own previous package apart from the agent's, where agentd-rollback.service
  // finds it (previous/agentd/).
  std::string current_dir() const;
  std::string previous_dir() const;
  // The run's directory; its parent is created here (DetachedRunner creates only the last level).
  std::string run_dir(const std::string& id) const;
  // The newest downloads/*/prepared.json ("" when none), for naming the running version.
  std::string prepared_path_of_any() const;

  // previous/ must hold the package of `running` (the version running now)
  // before anything replaces it. Sources, best first: previous/ already has it;
  // current/ (the package agentd installed last) has it; the package system's
  // cache. Without one the upgrade still goes ahead: a failure then halts the
  // group as `failed` instead of `rolledback` (protocol.md §4.5), and the log
  // says why.
  void keep_previous(const std::string& running);

  // The package cache: apt keeps what it downloaded in /var/cache/apt/archives.
  // Copied into previous/ when it holds `version`; the path it came from.
  std::optional<std::string> from_cache(const std::string& version);

  // The upgrade to `version` stands: its package `r` becomes current/, what
  // was current before is already previous/ (keep_previous), downloads go.
  void commit(const std::string& version, const PackageRecord& r);

  // A new cycle for `version` begins: downloads of other versions are not
  // needed any more (the target's own may hold a .part to resume), and of the
  // finished install and rollback runs the newest few are kept for the operator.
  void prune(const std::string& version);

 private:
  PackageStoreOptions o_;
  Installer& installer_;
  Logger& log_;
};

}  // namespace agentd
