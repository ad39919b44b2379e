// The Upgrader that runs the operator's commands (AGENTD_*_COMMAND), each by
// /bin/sh -c with the step's context in its environment:
//   AGENTD_STEP (version, prepare, install, restart, health, rollback),
//   AGENTD_TARGET_VERSION, AGENTD_PREVIOUS_VERSION, AGENTD_STATE_DIR.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "agentd/process.h"
#include "upgrade/upgrader.h"

namespace agentd {

struct UpgradeCommands {
  std::string version;                         // required: prints the running version on its first line
  std::string prepare;                         // optional: empty is a no-op success
  std::string install;                         // required
  std::string restart;                         // optional
  std::string health;                          // optional
  std::string rollback;                        // optional; empty: rollback() fails with Errc::unsupported
  std::chrono::milliseconds timeout{600'000};  // per command
  std::string state_dir;
};

// `runner` must outlive the returned Upgrader.
std::unique_ptr<Upgrader> make_command_upgrader(UpgradeCommands cmds, ProcessRunner& runner);

}  // namespace agentd
