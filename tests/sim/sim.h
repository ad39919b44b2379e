// A deterministic simulator of one HA group (issue 10 part 1): N members each
// running the real Coordinator and the member bookkeeping of agentd/member.h,
// a hub with the store semantics of protocol.md §3, and a seeded scheduler in
// virtual time that injects the faults of the real world. The invariants of
// protocol.md §7 (I3 as amended) are checked after every step, liveness at the
// end. No threads, no real clocks: one seed, one schedule, replayed exactly.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace agentd::sim {

struct Result {
  bool ok = true;
  std::string violation;                       // "I3 t=123.456s: ..." when !ok
  bool converged = false;                      // every member at the final target
  bool halted = false;                         // halted for the final target with a reason
  std::string halt_reason;                     // who halted it and why
  std::int64_t end_ms = 0;                     // virtual time at the end
  std::map<std::string, std::int64_t> faults;  // injected, by kind
};

struct Options {
  bool trace = false;  // one line per event on stdout
};

Result run(std::uint64_t seed, const Options& options);

}  // namespace agentd::sim
