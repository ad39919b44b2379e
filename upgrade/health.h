// The health check after an upgrade or a rollback (upgrade/pipeline.h): the
// expected package version runs, the agent's unit is active, the hub answers
// with the node's credentials, the operator's command passes, all before a
// deadline.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "agentd/backoff.h"
#include "agentd/clock.h"
#include "agentd/node_source.h"
#include "agentd/result.h"
#include "upgrade/units.h"

namespace agentd {

struct HealthCheck {
  std::function<Result<std::string>()> installed_version;  // the package version running
  UnitManager* units = nullptr;                            // null when systemd is not running
  std::string agent_unit;                                  // "" = no unit to watch
  NodeSource* hub = nullptr;
  std::function<Status()> command;  // the operator's health command; empty = none
  Clock* clock = nullptr;
  Sleeper* sleeper = nullptr;
  std::chrono::milliseconds timeout{300'000};
  std::chrono::milliseconds retry{2'000};  // between rounds until the deadline
};

// One round of the check; the reason it fails, or nothing.
std::optional<std::string> health_problem(const HealthCheck& check, const std::string& package_version);

// Rounds until one passes (ok), the deadline (Errc::process with the last
// problem) or a stop (Errc::cancelled).
Status wait_healthy(const HealthCheck& check, const std::string& package_version);

}  // namespace agentd
