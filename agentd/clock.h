// Time at the edge: decisions use the monotonic clock (protocol.md §4.1, goal 5),
// entries carry wall-clock text for people. Tests use FakeClock.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace agentd {

using Mono = std::chrono::milliseconds;  // since an arbitrary, process-local origin
using Wall = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Mono mono() const = 0;
  virtual Wall wall() const = 0;
};

class SystemClock final : public Clock {
 public:
  Mono mono() const override {
    return std::chrono::duration_cast<Mono>(std::chrono::steady_clock::now().time_since_epoch());
  }
  Wall wall() const override { return std::chrono::system_clock::now(); }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(Mono start = Mono{1'000'000},
                     Wall wall_start = Wall{std::chrono::seconds{1'795'000'000}})
      : mono_(start), wall_(wall_start) {}
  Mono mono() const override { return mono_; }
  Wall wall() const override { return wall_; }
  void advance(Mono d) {
    mono_ += d;
    wall_ += d;
  }
  void set_wall(Wall w) { wall_ = w; }  // wall jumps never move the monotonic clock

 private:
  Mono mono_;
  Wall wall_;
};

// "2026-11-25T20:00:01.123456Z", as the Exchange writes since 2.143.0 (protocol.md §5).
std::string format_time(Wall t);
// Accepts the form above with 0..9 fraction digits, and the older "...Z[UTC]".
bool parse_time(const std::string& text, Wall* out);

}  // namespace agentd
