// Restarting the agent's systemd unit over D-Bus (sd-bus on the system bus),
// and reading its state for the health check.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "agentd/result.h"

namespace agentd {

class UnitManager {
 public:
  virtual ~UnitManager() = default;
  // org.freedesktop.systemd1.Manager.RestartUnit(unit, "replace"); waits (up to
  // `timeout`) for the job to finish. Restarting agentd's own unit returns as
  // soon as the job is queued: systemd stops this process next.
  virtual Status restart(const std::string& unit, std::chrono::milliseconds timeout) = 0;
  // The unit's ActiveState ("active", "activating", "failed", ...).
  virtual Result<std::string> active_state(const std::string& unit) = 0;
  // The unit's main PID (0 when none), to tell a restarted process from the old one.
  virtual Result<unsigned> main_pid(const std::string& unit) = 0;
};

// Errc::unsupported when systemd is not running (sd_booted() <= 0) or the
// system bus cannot be reached; the error says which.
Result<std::unique_ptr<UnitManager>> make_systemd_unit_manager();

}  // namespace agentd
