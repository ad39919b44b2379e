// A Sleeper (agentd/backoff.h) that never sleeps: it records each wait, lets a
// test change the world during one (on_sleep), and stops on request.
#pragma once

#include <chrono>
#include <functional>
#include <vector>

#include "agentd/backoff.h"

namespace agentd::testing {

class FakeSleeper final : public Sleeper {
 public:
  bool sleep_for(std::chrono::milliseconds d) override {
    waits.push_back(d);
    if (on_sleep) on_sleep();
    return !stop;
  }
  bool stop_requested() override { return stop; }

  bool stop = false;  // a stop request: every wait ends early, and says so
  std::vector<std::chrono::milliseconds> waits;
  std::function<void()> on_sleep;
};

}  // namespace agentd::testing
