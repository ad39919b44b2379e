// systemd over D-Bus as a test double (upgrade/units.h): every restart
// recorded with its timeout, a restart that fails on request, and the unit's
// ActiveState played from a script (the last state repeats), so the pipeline's
// restart and health branches run without a bus.
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "upgrade/units.h"

namespace agentd::testing {

class FakeUnitManager final : public UnitManager {
 public:
  struct Restart {
    std::string unit;
    std::chrono::milliseconds timeout;
  };

  Status restart(const std::string& unit, std::chrono::milliseconds timeout) override {
    std::lock_guard lk(mu_);
    restarts_.push_back({unit, timeout});
    if (!restart_error_.empty()) return fail(Errc::process, restart_error_);
    ++pid_;
    return {};
  }

  Result<std::string> active_state(const std::string& unit) override {
    std::lock_guard lk(mu_);
    queried_.push_back(unit);
    if (!state_error_.empty()) return fail(Errc::unsupported, state_error_);
    if (states_.empty()) return std::string("active");
    std::string s = states_.front();
    if (states_.size() > 1) states_.pop_front();
    return s;
  }

  Result<unsigned> main_pid(const std::string&) override {
    std::lock_guard lk(mu_);
    return pid_;
  }

  // ActiveState answers in this order; the last one repeats ("active" when none).
  void play_states(std::vector<std::string> states) {
    std::lock_guard lk(mu_);
    states_.assign(states.begin(), states.end());
  }
  // Every restart fails with this message (as a D-Bus error would); "" restores.
  void fail_restarts(std::string message) {
    std::lock_guard lk(mu_);
    restart_error_ = std::move(message);
  }
  // Every ActiveState read fails with this message; "" restores.
  void fail_state_reads(std::string message) {
    std::lock_guard lk(mu_);
    state_error_ = std::move(message);
  }
  std::vector<Restart> restarts() const {
    std::lock_guard lk(mu_);
    return restarts_;
  }
  // The units whose ActiveState was read, once per read.
  std::vector<std::string> queried() const {
    std::lock_guard lk(mu_);
    return queried_;
  }

 private:
  mutable std::mutex mu_;
  std::deque<std::string> states_;
  std::string restart_error_, state_error_;
  std::vector<Restart> restarts_;
  std::vector<std::string> queried_;
  unsigned pid_ = 100;
};

}  // namespace agentd::testing
