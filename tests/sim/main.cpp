// agentd-sim: the deterministic simulator of tests/sim/sim.h.
//   agentd-sim [--seeds COUNT] [--from FIRST]   run COUNT schedules (default 10000 from 1)
//   agentd-sim --seed N [--trace]               replay one schedule, one line per event
// Exit status: 0 every schedule held the invariants and ended converged or
// halted with a reason; 1 a violation (its seed and the replay command printed);
// 2 bad usage.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "sim/sim.h"

namespace {

constexpr const char* kUsage =
    "usage: agentd-sim [--seeds COUNT] [--from FIRST] [--stop-on-failure]\n"
    "       agentd-sim --seed N [--trace]\n";

bool number(const char* s, std::uint64_t* out) {
  char* end = nullptr;
  *out = std::strtoull(s, &end, 10);
  return end && *end == '\0' && end != s;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t from = 1, count = 10000;
  bool one = false, keep_going = true;
  agentd::sim::Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::uint64_t* out) {
      if (i + 1 >= argc || !number(argv[i + 1], out)) {
        std::fprintf(stderr, "agentd-sim: %s needs a number\n%s", arg.c_str(), kUsage);
        std::exit(2);
      }
      ++i;
    };
    if (arg == "--seeds") {
      value(&count);
    } else if (arg == "--from") {
      value(&from);
    } else if (arg == "--seed") {
      value(&from);
      count = 1;
      one = true;
    } else if (arg == "--trace") {
      options.trace = true;
    } else if (arg == "--stop-on-failure") {
      keep_going = false;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "agentd-sim: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  std::uint64_t failed = 0, converged = 0, halted = 0;
  std::int64_t virtual_ms = 0;
  std::map<std::string, std::int64_t> faults;
  for (std::uint64_t seed = from; seed < from + count; ++seed) {
    agentd::sim::Result r = agentd::sim::run(seed, options);
    virtual_ms += r.end_ms;
    for (const auto& [k, v] : r.faults) faults[k] += v;
    if (r.converged) ++converged;
    if (r.halted) ++halted;
    if (one) {
      std::string end = r.converged ? "converged"
                        : r.halted  ? "halted (" + r.halt_reason + ")"
                                    : "not converged";
      std::printf("seed %llu: %s, %s at t=%.3fs\n", static_cast<unsigned long long>(seed),
                  r.ok ? "invariants hold" : r.violation.c_str(), end.c_str(),
                  static_cast<double>(r.end_ms) / 1000);
    }
    if (!r.ok) {
      ++failed;
      if (!one)
        std::printf("FAIL seed %llu: %s\n  replay: agentd-sim --seed %llu --trace\n",
                    static_cast<unsigned long long>(seed), r.violation.c_str(),
                    static_cast<unsigned long long>(seed));
      if (!keep_going) break;
    }
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!one) {
    std::printf(
        "%llu schedules (seeds %llu..%llu) in %.1f s, %.0f h of virtual time: %llu failed, %llu converged, "
        "%llu halted with a reason\nfaults:",
        static_cast<unsigned long long>(count), static_cast<unsigned long long>(from),
        static_cast<unsigned long long>(from + count - 1), wall, static_cast<double>(virtual_ms) / 3.6e6,
        static_cast<unsigned long long>(failed), static_cast<unsigned long long>(converged),
        static_cast<unsigned long long>(halted));
    for (const auto& [k, v] : faults) std::printf(" %s=%lld", k.c_str(), static_cast<long long>(v));
    std::printf("\n");
  }
  return failed == 0 ? 0 : 1;
}
