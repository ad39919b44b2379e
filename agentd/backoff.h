// Jittered backoff and interruptible waiting.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace agentd {

struct RetryPolicy {
  int attempts = 4;  // total tries, including the first
  std::chrono::milliseconds base{200};
  std::chrono::milliseconds cap{10'000};
  // All tries of one call, backoff included, end within this (each try's
  // HTTP timeout is cut to what is left): a slow hub cannot hold the daemon's
  // loop past a heartbeat or a lease renewal. 0: no limit.
  std::chrono::milliseconds budget{0};
};

// Full jitter (protocol.md §4.3): uniform in [0, min(cap, base * 2^attempt)].
inline std::chrono::milliseconds full_jitter(int attempt, std::chrono::milliseconds base,
                                             std::chrono::milliseconds cap, std::mt19937_64& rng) {
  std::int64_t ceiling = base.count();
  for (int i = 0; i < attempt && ceiling < cap.count(); ++i) ceiling *= 2;
  ceiling = std::min<std::int64_t>(ceiling, cap.count());
  std::uniform_int_distribution<std::int64_t> d(0, std::max<std::int64_t>(ceiling, 0));
  return std::chrono::milliseconds{d(rng)};
}

// Waits that a stop request (SIGTERM) cuts short.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  // Returns false when the wait was cut short by a stop request.
  virtual bool sleep_for(std::chrono::milliseconds d) = 0;
  virtual bool stop_requested() = 0;
};

}  // namespace agentd
