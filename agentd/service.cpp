#include "service.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <thread>

namespace agentd {

SignalWaiter::SignalWaiter() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal_fd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

SignalWaiter::~SignalWaiter() {
  if (signal_fd_ >= 0) close(signal_fd_);
  if (event_fd_ >= 0) close(event_fd_);
}

void SignalWaiter::drain_signals() {
  signalfd_siginfo info;
  while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    // SIGHUP has no reload semantics yet; it is consumed and ignored.
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT)
      stop_signal_.store(static_cast<int>(info.ssi_signo));
  }
}

bool SignalWaiter::sleep_for(std::chrono::milliseconds d) {
  if (stop_requested()) return false;
  pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {event_fd_, POLLIN, 0}};
  auto ms = d.count() < 0 ? 0 : d.count();
  int timeout = ms > 3'600'000 ? 3'600'000 : static_cast<int>(ms);
  int r;
  do {
    r = poll(fds, 2, timeout);
  } while (r < 0 && errno == EINTR);
  if (r > 0 && (fds[1].revents & POLLIN)) {
    std::uint64_t v;
    [[maybe_unused]] auto n = read(event_fd_, &v, sizeof v);
  }
  return !stop_requested();
}

bool SignalWaiter::stop_requested() {
  if (stop_signal_.load() == 0) drain_signals();
  return stop_signal_.load() != 0;
}

void SignalWaiter::wake() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = write(event_fd_, &one, sizeof one);
}

namespace {
class SdNotifier final : public Notifier {
 public:
  SdNotifier() {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
      interval_ = std::chrono::milliseconds{static_cast<long long>(usec / 2000)};
  }
  void notify(const std::string& state) override { sd_notify(0, state.c_str()); }
  std::chrono::milliseconds watchdog_interval() const override { return interval_; }

 private:
  std::chrono::milliseconds interval_{0};
};
}  // namespace

std::unique_ptr<Notifier> make_sd_notifier() {
  return std::make_unique<SdNotifier>();
}

void WatchdogPinger::ping_if_due() {
  if (interval_.count() <= 0) return;
  long long now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
  long long last = last_ms_.load();
  if (last >= 0 && now - last < interval_.count()) return;
  if (last_ms_.compare_exchange_strong(last, now)) notifier_.notify("WATCHDOG=1");
}

bool SlicedSleeper::sleep_for(std::chrono::milliseconds d) {
  auto end = std::chrono::steady_clock::now() + d;
  while (!stop_()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds{0}) return true;
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds{100}));
  }
  return false;
}

}  // namespace agentd
