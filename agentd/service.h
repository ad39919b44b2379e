// The service manager edge: stop signals through a signalfd (no global state, no
// async-signal handlers), wake-ups from worker threads, and sd_notify.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "backoff.h"

namespace agentd {

// Blocks SIGTERM, SIGINT and SIGHUP for the process (construct it before any
// thread starts, so every thread inherits the mask) and turns them into a
// readable signalfd. sleep_for() returns early on a signal or a wake().
class SignalWaiter final : public Sleeper {
 public:
  SignalWaiter();
  ~SignalWaiter() override;
  SignalWaiter(const SignalWaiter&) = delete;
  SignalWaiter& operator=(const SignalWaiter&) = delete;

  bool sleep_for(std::chrono::milliseconds d) override;  // false: stop requested
  bool stop_requested() override;
  void wake();  // thread-safe: ends the current sleep_for early
  int stop_signal() const { return stop_signal_.load(); }

 private:
  void drain_signals();
  int signal_fd_ = -1;
  int event_fd_ = -1;
  std::atomic<int> stop_signal_{0};  // set from whichever thread reads the signalfd
};

// A Sleeper for worker threads: waits in slices of at most 100 ms, asking
// `stop` in between (a SignalWaiter's own sleep belongs to the main loop).
class SlicedSleeper final : public Sleeper {
 public:
  explicit SlicedSleeper(std::function<bool()> stop) : stop_(std::move(stop)) {}
  bool sleep_for(std::chrono::milliseconds d) override;
  bool stop_requested() override { return stop_(); }

 private:
  std::function<bool()> stop_;
};

// sd_notify(3) when NOTIFY_SOCKET is set; a no-op otherwise.
class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual void notify(const std::string& state) = 0;
  // Half of WatchdogSec= when the watchdog is enabled for us, else zero.
  virtual std::chrono::milliseconds watchdog_interval() const = 0;
};
std::unique_ptr<Notifier> make_sd_notifier();

// WATCHDOG=1 at most once per watchdog interval, from wherever the main thread
// waits: its loop, and curl's progress callback during a slow or hung hub
// request, so that a hub outage never looks like a hung agentd.
class WatchdogPinger {
 public:
  explicit WatchdogPinger(Notifier& notifier)
      : notifier_(notifier), interval_(notifier.watchdog_interval()) {}
  void ping_if_due();

 private:
  Notifier& notifier_;
  std::chrono::milliseconds interval_;
  std::atomic<long long> last_ms_{-1};
};

}  // namespace agentd
