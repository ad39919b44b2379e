// The cost of agentd's metrics file: renders a lease holder's metrics mid-rollout
// and writes them with MetricsFile (write + fsync + rename + directory fsync) N
// times, each with a changed gauge so that every update writes. Prints the file's
// size and microseconds per render and per write.
// Usage: agentd-metrics-bench [DIR] [N]   (DIR default: a new directory under /tmp)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "agentd/log.h"
#include "agentd/metrics.h"
#include "support/metrics_sample.h"

using namespace agentd;

namespace {

class NoLog final : public Logger {
 public:
  void log(Level, std::string_view, std::initializer_list<Field>) override {}
};

// The holder of the unit tests with the counters of a long-lived member: every route used.
MetricValues mid_rollout() {
  MetricValues v = testing::holder();
  for (std::size_t r = 0; r < kHubRoutes; ++r) {
    v.counters.hub_requests[r][static_cast<std::size_t>(HubOutcome::ok)] = 1000 + r;
    v.counters.hub_requests[r][static_cast<std::size_t>(HubOutcome::transport_error)] = 3;
  }
  v.counters.hub_requests[static_cast<std::size_t>(HubRoute::group_read)]
                         [static_cast<std::size_t>(HubOutcome::not_modified)] = 50000;
  v.counters.renewals = 400;
  v.counters.download_bytes = 123456789;
  v.member.last_success_seconds = 1.69e9;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "";
  const int n = argc > 2 ? std::atoi(argv[2]) : 1000;
  if (dir.empty()) {
    char tmpl[] = "/tmp/agentd-metrics-bench.XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    dir = tmpl;
  }
  using Clock = std::chrono::steady_clock;
  MetricValues v = mid_rollout();
  std::size_t bytes = 0;
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    v.counters.renewals = static_cast<std::uint64_t>(i);
    bytes += render(v).size();
  }
  const double render_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;

  NoLog log;
  MetricsFile file(dir, log);
  t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    v.member.epoch = 2000 + i;  // a gauge: written at once
    file.update(v, Mono{i}, Mono{1000}, Mono{600'000});
  }
  const double write_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;
  if (file.writes() != static_cast<std::uint64_t>(n)) {
    std::fprintf(stderr, "only %llu of %d writes happened (%s)\n",
                 static_cast<unsigned long long>(file.writes()), n, file.path().c_str());
    return 1;
  }
  std::printf(
      "metrics file of a lease holder mid-rollout: %zu bytes; render %.1f us, render+write %.1f us "
      "(write, fsync, rename, fsync of %s; %d writes)\n",
      bytes / static_cast<std::size_t>(n), render_us, write_us, dir.c_str(), n);
  if (argc <= 1) std::filesystem::remove_all(dir);
  return 0;
}
