// One background job at a time (prepare, install, ...) on its own thread: the
// daemon's loop keeps renewing the lease and heartbeating while a long install
// runs (protocol.md §4.4).
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <thread>
#include <utility>

#include "coordinator.h"
#include "result.h"

namespace agentd {

class Job {
 public:
  ~Job();
  // Idle once the finished job's result has been taken: a job that has ended but
  // not been collected still counts, so its step is never started twice.
  bool idle() const { return !thread_.joinable(); }
  // A disruptive step (install, restart, rollback) is running or uncollected.
  bool in_step() const {
    return !idle() &&
           (kind_ == ActionKind::install || kind_ == ActionKind::restart || kind_ == ActionKind::rollback);
  }
  // Runs `work` on the job's thread, then `wake` (the loop's waiter).
  void start(ActionKind kind, std::function<Status()> work, std::function<void()> wake);
  // The finished job's kind and result, once; std::nullopt while running or idle.
  std::optional<std::pair<ActionKind, Status>> take();
  void join();

 private:
  std::thread thread_;
  std::atomic<bool> done_{false};
  ActionKind kind_ = ActionKind::none;
  Status result_;
};

}  // namespace agentd
