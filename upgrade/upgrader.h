// The upgrade step behind the protocol's two halves (protocol.md §4.2):
// prepare needs no lease; install and restart are the disruptive steps that the
// daemon runs only under the lease, fencing before each (protocol.md §4.4).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "agentd/result.h"

namespace agentd {

struct Target {
  std::string version;           // version to move to
  std::string previous_version;  // version running before the upgrade (rollback target)
  std::string manifest;          // "org/id" of the upgrade manifest, if any
};

// Progress of a long step, for the member's message, the management status and
// sd_notify STATUS=: short human text and, when known, how much of how much is done.
struct JobProgress {
  std::string text;
  std::uint64_t done = 0;
  std::uint64_t total = 0;  // 0: unknown
  bool operator==(const JobProgress&) const = default;
};
using ProgressFn = std::function<void(const JobProgress& progress)>;

class Upgrader {
 public:
  virtual ~Upgrader() = default;
  // The agent version running now.
  virtual Result<std::string> running_version() = 0;
  // Fetch and verify; no lease. `progress` receives what it is doing.
  virtual Status prepare(const Target& t, const ProgressFn& progress) = 0;
  virtual Status install(const Target& t) = 0;       // disruptive
  virtual Status restart(const Target& t) = 0;       // disruptive
  virtual Status check_health(const Target& t) = 0;  // after restart
  virtual Status rollback(const Target& t) = 0;      // bring previous_version back
};

}  // namespace agentd
