// Metrics in the Prometheus text format, for node_exporter's textfile collector:
// no port of agentd's own is opened. `Metrics` holds the counters (fed by the
// daemon loop, the Exchange client and the download on the job thread, hence
// the lock); `render()` is pure; `MetricsFile` decides when the file is written
// (write + rename) so that a quiet member does not wear its flash.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "clock.h"
#include "coordinator.h"
#include "group.h"
#include "result.h"

namespace agentd {

class Logger;  // log.h

// The hub routes agentd calls, a small fixed set: labels never carry node ids or
// group names (one series per route and outcome on every node).
enum class HubRoute {
  node,                 // GET /orgs/{org}/nodes/{node}
  node_policy,          // GET .../nodes/{node}/policy
  management_policies,  // GET /orgs/{org}/managementpolicies
  agent_versions,       // GET /orgs/IBM/AgentFileVersion
  changes,              // POST /orgs/{org}/changes, GET /changes/maxchangeid
  group_read,           // GET /orgs/{org}/hagroups/{g} (protocol.md §3)
  group_write,          // PUT|DELETE .../agentupgrade/{node}, PUT .../agentupgradesettings
  group_member,         // DELETE /orgs/{org}/hagroups/{g}/nodes/{node}
  management_status,    // PUT .../managementStatus/{nmp}
  software_version,     // PATCH /orgs/{org}/nodes/{node}
  css_object,           // GET {css}/api/v1/objects/... (manifests, metadata)
};
inline constexpr std::size_t kHubRoutes = 11;
const char* to_string(HubRoute r);

// How a hub request ended.
enum class HubOutcome { ok, not_modified, conflict, client_error, server_error, transport_error };
inline constexpr std::size_t kHubOutcomes = 6;
const char* to_string(HubOutcome o);
// From the HTTP status (0: no answer).
HubOutcome hub_outcome(long http_status);

// The disruptive steps and the health check, by outcome.
enum class StepMetric { install, restart, health, rollback };
inline constexpr std::size_t kStepMetrics = 4;
const char* to_string(StepMetric s);

// The member as it is now: every value is set afresh from the daemon's state.
struct MemberGauges {
  std::string group;    // "" when in no group
  std::string version;  // the agent version running now
  std::string target;   // "" when none
  State state = State::idle;
  Progress progress = Progress::none;
  bool lease_held = false;
  std::int64_t epoch = 0;
  double lease_acquired_seconds = 0;  // Unix time this member acquired its lease; 0 when not held
  double lease_duration_seconds = 0;  // AGENTD_LEASE_DURATION_SECONDS
  bool halted = false;                // the group is halted for our target (protocol.md §1 goal 4)
  bool rollout_active = false;        // protocol.md §4.1
  std::int64_t members = 0;
  std::int64_t members_unhealthy = 0;   // as this member judges them (§4.1), self excluded
  std::optional<bool> hub_coordinates;  // unknown until the first group read
  double last_success_seconds = 0;      // Unix time of the last successful upgrade; 0: none yet
  bool operator==(const MemberGauges&) const = default;
};

struct MetricCounters {
  std::array<std::array<std::uint64_t, kHubOutcomes>, kHubRoutes> hub_requests{};
  std::uint64_t write_conflicts = 0;        // 412 to our own entry writes (protocol.md §4.3)
  std::uint64_t fences = 0;                 // our lease found ended before a step (§4.4)
  std::uint64_t renewals = 0;               // lease renewals that landed (§4.4)
  std::uint64_t lost_writes_recovered = 0;  // writes found landed by their writeId (§4.6)
  std::uint64_t download_bytes = 0;
  std::uint64_t download_resumes = 0;   // download requests that continued a partial file
  std::uint64_t download_failures = 0;  // prepares that failed (download or verification)
  std::array<std::array<std::uint64_t, 2>, kStepMetrics> steps{};  // [step][0 ok, 1 failed]
  std::uint64_t halts_seen = 0;
};

struct MetricValues {
  MemberGauges member;
  MetricCounters counters;
};

// The text exposition format (version 0.0.4): HELP and TYPE for every metric,
// gauges first, then counters; the same values always give the same bytes.
std::string render(const MetricValues& v);
// Only the gauges' part of render(): when it changes, the file is written at once.
std::string render_gauges(const MemberGauges& g);

// Counters shared by the threads that make requests.
class Metrics {
 public:
  void hub_request(HubRoute route, long http_status);
  void download(std::uint64_t bytes, bool resumed);
  void step(StepMetric s, bool ok);
  // One of the counters of MetricCounters, e.g. &MetricCounters::fences.
  void count(std::uint64_t MetricCounters::*counter);
  MetricCounters counters() const;

 private:
  mutable std::mutex mu_;
  MetricCounters c_;
};

// The file node_exporter reads: DIR/agentd.prom, mode 0644.
class MetricsFile {
 public:
  // `dir` "" disables the file.
  MetricsFile(std::string dir, Logger& log);
  bool enabled() const { return !dir_.empty(); }
  std::string path() const { return dir_ + "/agentd.prom"; }
  // Writes when the gauges changed, when only counters changed and
  // `counters_every` has passed since the last write, and at least every
  // `every` (node_exporter's mtime then shows a live agentd). A failed write
  // is logged once per distinct error and never stops the daemon.
  void update(const MetricValues& v, Mono now, Mono counters_every, Mono every);
  std::uint64_t writes() const { return writes_; }

 private:
  std::string dir_;
  Logger& log_;
  std::optional<Mono> written_at_;  // the last attempt that was due
  std::string gauges_;              // as last written
  std::string content_;             // as last written
  std::string error_;               // the last write's error, "" when it worked
  std::uint64_t writes_ = 0;
};

}  // namespace agentd
