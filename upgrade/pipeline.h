// The package upgrader: the Upgrader that an operator can leave alone on an
// unattended device. Each step is one unit behind a small interface:
//   prepare  (no lease, protocol.md §4.2): the signed manifest is read and its
//            signature checked against pinned keys (upgrade/verify.h), the one
//            package for this node's package system and architecture is chosen,
//            downloaded resumably (upgrade/fetch.h), its SHA-256 and its own
//            name and version checked (upgrade/installer.h), and a copy of the
//            running version's package is kept for a rollback;
//   install  (under the lease, fenced): the package system installs it outside
//            agentd's cgroup (upgrade/detached.h), resumable across a restart;
//   restart  (fenced): the agent's unit over D-Bus (upgrade/units.h);
//   check_health: the expected package version runs, the unit is active, the
//            hub answers with the node's credentials, the operator's command
//            passes, all before a deadline;
//   rollback (fenced): the kept package of the previous version is installed
//            again (a real downgrade) and restarted.
//
// Files under the state directory:
//   downloads/<version>/<file>         the verified package (and .part while downloading)
//   downloads/<version>/prepared.json  what prepare verified, and the attempt id
//   runs/<step>-<attempt>/             output and exit status of an install or rollback
//   current/<package>/                 the package agentd installed last, with record.json
//   previous/<package>/                the package of the version before it: what a
//                                      rollback reinstalls (agentd-rollback.service
//                                      reinstalls previous/agentd/ after a crash loop)
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agentd/backoff.h"
#include "agentd/clock.h"
#include "agentd/log.h"
#include "agentd/node_source.h"
#include "agentd/process.h"
#include "upgrade/artifact_source.h"
#include "upgrade/installer.h"
#include "upgrade/units.h"
#include "upgrade/upgrader.h"

namespace agentd {

class Metrics;  // agentd/metrics.h

struct PipelineOptions {
  std::string state_dir;
  std::string trusted_keys_dir = "/etc/agentd/trusted.d";
  bool allow_unsigned_manifest = false;  // an explicit, loudly logged opt-out (absence only)
  std::string arch;                      // Debian architecture name: amd64, arm64, armhf
  std::string package = "horizon";       // the agent's package (for the package cache)
  std::string install_root = "/";
  std::string agent_unit;      // "" = no unit to restart or watch
  bool prefer_bundle = false;  // beside anax: install from the bundle anax downloaded
  std::uint64_t max_download_bytes = 1024ull * 1024 * 1024;
  int download_attempts = 5;
  std::chrono::milliseconds download_timeout{3'600'000};  // each download request
  bool allow_downgrade = false;                           // AGENTD_ALLOW_DOWNGRADE: below the version floor
  std::chrono::milliseconds health_timeout{300'000};
  std::chrono::milliseconds restart_timeout{120'000};
  std::chrono::milliseconds health_retry{2'000};  // between health checks until the deadline
  // Optional operator commands (/bin/sh -c): the version command replaces the
  // package query, the restart command the D-Bus restart, the health command
  // is one more check.
  std::string version_command;
  std::string restart_command;
  std::string health_command;
  std::chrono::milliseconds command_timeout{600'000};
};

struct PipelineParts {
  // Both with their own HTTP client: the job thread must not share the daemon's.
  ArtifactSource& artifacts;  // the release's manifest and files
  NodeSource& hub;            // health: the hub answers with the node's credentials
  Installer& installer;
  UnitManager* units;  // null when systemd is not running
  ProcessRunner& runner;
  Logger& log;
  Clock& clock;
  Sleeper& sleeper;
  Metrics* metrics = nullptr;  // downloads' bytes and resumes
};

std::unique_ptr<Upgrader> make_pipeline_upgrader(PipelineOptions options, PipelineParts parts);

// The package file in a manifest's list for this package system and
// architecture: NAME_VERSION_ARCH.deb (or _all.deb), NAME-VERSION.RPMARCH.rpm
// (or .noarch.rpm), NAME-VERSION-ARCH.tar.gz, else anax's bundle (see
// anax_bundle_name); "*" stands for every file the
// manifest gives a SHA-256 for. Exactly one must match (Errc::verification
// otherwise, naming the candidates).
// With `prefer_bundle` (beside anax, which downloads only its bundle) the bundle
// wins whenever the manifest lists it.
Result<std::string> choose_package_file(const UpgradeSection& software, PackageKind kind,
                                        const std::string& arch, bool prefer_bundle = false);

// The bundle Open Horizon publishes for a package system and architecture
// (horizon-agent-linux-deb-arm64.tar.gz): chosen when the manifest lists no
// package file of its own; agentd installs the agent's package from inside it.
std::string anax_bundle_name(PackageKind kind, const std::string& arch);

// rpm's name for a Debian architecture (amd64 -> x86_64, arm64 -> aarch64, armhf -> armv7hl).
std::string rpm_arch(const std::string& debian_arch);

// Frees what agentd itself put in `state_dir` and can make again, for a full
// disk: the downloads of versions other than `keep_version`, its partial
// downloads (*.part) when `drop_partial` (no download is running), and the
// output of runs but the newest two. The kept packages (current/, previous/)
// stay. Returns the bytes freed.
std::uint64_t free_own_space(const std::string& state_dir, const std::string& keep_version,
                             bool drop_partial);

// The Debian architecture this agentd was built for.
const char* build_arch();

}  // namespace agentd
