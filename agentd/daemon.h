// The loop (architecture.md): poll the hub, heartbeat, drive the coordinator and
// the upgrade jobs, persist before every transition and write, tell systemd.
// daemon.cpp is the loop and its decisions, daemon_hub.cpp what it reads,
// daemon_reports.cpp what it tells the outside.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "anax.h"
#include "clock.h"
#include "config.h"
#include "coordinator.h"
#include "group_store.h"
#include "job_runner.h"
#include "log.h"
#include "member.h"
#include "metrics.h"
#include "node_source.h"
#include "service.h"
#include "status_reporter.h"
#include "upgrade/plan.h"
#include "upgrade/state_file.h"
#include "upgrade/upgrader.h"

namespace agentd {

struct DaemonParts {
  const Config& config;
  Clock& clock;
  NodeSource& hub;         // the changes feed, the node record, its policies
  GroupStore& store;       // the Exchange's coordination extension, or another CAS store
  StatusReporter& status;  // node management status of the upgrade
  Upgrader& upgrader;
  Logger& log;
  StateFile& state_file;
  Notifier& notifier;
  SignalWaiter& waiter;
  std::string steps_log;   // JSON lines of disruptive steps (protocol.md §7 I3)
  std::uint64_t seed = 0;  // for writeIds, jitter and startWindow draws; 0: std::random_device
  // Beside anax (anax-coexistence.md): its local API gives the node and the job;
  // null when agentd works alone.
  AnaxApi* anax = nullptr;
  // Counters shared with the Exchange clients and the pipeline; with it, the
  // member's metrics go to config.metrics_dir. Null: no metrics.
  Metrics* metrics = nullptr;
};

class Daemon {
 public:
  explicit Daemon(DaemonParts parts);
  int run();  // until SIGTERM/SIGINT; returns the exit status

  // run() in parts, for tests that drive the loop with a FakeClock: start() loads
  // the state and reports READY (exit status on failure), tick() is one pass of
  // the loop, next_wake() when the next pass is due, stop() what run() does last.
  // While the state file cannot be written (a full disk) agentd is degraded:
  // a pass only retries the write, after freeing what agentd itself filled.
  std::optional<int> start();
  void tick();
  Mono next_wake() const;
  int stop();
  const PersistedState& state() const { return ps_; }
  const std::string& status_text() const { return last_status_; }

 private:
  // daemon.cpp: the loop and its decisions.
  void pass();
  void grouped_tick();
  void ungrouped_tick();
  void resolve_pending();
  WriteOutcome write(const Action& a);
  void adopt(const Entry& e);
  bool begin_step(ActionKind kind, bool fenced);
  void start_job(ActionKind kind);
  void finish_job();
  void note_job();  // Local.job_running / step_running from the job
  void persist();
  void degrade(const std::string& why);
  bool recovered();
  std::string new_write_id();

  // daemon_hub.cpp: what it reads.
  void poll_changes();
  void refresh_node();
  void refresh_plan();
  std::optional<DowngradeRule> downgrade_rule();
  bool read_group(bool force);
  bool refresh_from_anax();
  void apply_plan(const Plan& plan);

  // daemon_reports.cpp: what it tells the outside.
  void status(const std::string& text);
  void report(const Landed& effects);  // what a landed write of ours calls for
  void report_management_status(MgmtStatus status, const std::string& error = {});
  void send_report();  // the pending report (PersistedState::report_*), until it is taken
  void report_policy_errors(const std::map<std::string, std::string>& errors);
  void show_progress();
  // protocol.md §7 I3: each disruptive step's begin and end, on this node's clock.
  void log_step(const char* step, const char* phase);
  // The metrics file (agentd/metrics.h): the member's gauges from its state, the
  // counters from p_.metrics; called after every pass.
  void update_metrics();
  void observe_group_for_metrics(Mono now);
  void count(std::uint64_t MetricCounters::*counter) {
    if (p_.metrics) p_.metrics->count(counter);
  }
  void count_step(StepMetric s, bool ok) {
    if (p_.metrics) p_.metrics->step(s, ok);
  }

  DaemonParts p_;
  Coordinator coordinator_;
  Job job_;
  std::mt19937_64 rng_;

  PersistedState ps_;  // ps_.local is the live Local
  std::optional<NodeRecord> node_;
  std::optional<GroupDocument> doc_;
  std::optional<Properties> node_properties_;  // the node policy's management properties
  Plan plan_;
  std::int64_t change_id_ = 0;
  std::string last_status_;
  std::optional<MgmtStatus> last_mgmt_status_;
  std::map<std::string, std::string> reported_policy_errors_;  // policy -> error sent to the hub
  std::string scheduled_time_;
  std::string unsupported_reason_;
  int unsupported_reads_ = 0;  // group reads in a row refused as unsupported (backoff)
  // Whether the hub has the coordination extension (protocol.md §3), as the last
  // group read showed; beside anax a hub without it leaves the agbot's lock.
  // Unknown until the first read; unknown counts as "no" for anax's jobs.
  std::optional<bool> hub_coordinates_;
  Mono next_report_{0};                // when a pending status report is sent again
  Mono doc_read_at_{-1};               // when doc_ was last read from the hub
  std::int64_t written_revision_ = 0;  // what our last landed write answered (if_match_revision)
  std::string job_target_;             // the target the running (or last) job works on
  // Progress from the running job's thread, shown by the loop.
  std::mutex progress_mu_;
  JobProgress job_progress_;
  std::string shown_progress_;
  int reported_percent_ = -1;  // of the download, last sent in the management status
  Wall not_before_{};          // the current plan's start plus its startWindow delay

  // When each periodic duty is next due (monotonic).
  Mono next_changes_{0}, next_node_{0}, next_plan_{0}, next_read_{0}, next_watchdog_{0}, retry_prepare_{0};
  bool force_read_ = true;
  int conflicts_ = 0;
  // Why the state file cannot be written ("" = it can), and when to try again.
  std::string degraded_;
  Mono retry_persist_{0}, persist_backoff_{1000};
  MetricsFile metrics_file_;
  // What the metrics remember between passes: the group's view as of the last
  // document read (a conflict drops the copy, not the facts), and transitions.
  MemberGauges group_gauges_;
  std::optional<State> metrics_state_;
  double last_success_seconds_ = 0;
};

}  // namespace agentd
