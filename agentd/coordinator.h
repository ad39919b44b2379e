// The pure protocol (protocol.md §4): given the group document, what this member
// knows about itself, and the monotonic clock, decide the next action. No I/O:
// the daemon reads, writes and runs jobs; the coordinator only decides.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "clock.h"
#include "group.h"
#include "management_status.h"

namespace agentd {

// protocol.md §5, in milliseconds so tests can run fast.
struct Timing {
  Mono lease_duration{120'000};
  Mono heartbeat{20'000};
  Mono idle_heartbeat{600'000};
  Mono fast_poll{2'000};
  Mono poll{10'000};
  Mono renew_period() const { return lease_duration / 3; }  // §4.4
};

// How far the disruptive part has gone on this node (persisted; protocol.md §4.2:
// the local file is the truth about what was done to this node).
enum class Progress {
  none,           // nothing done under the lease yet
  install_begun,  // install started; a crash here means: run it again under the lease
  installed,
  restart_begun,  // restart started; a crash here is the expected end when agentd is the agent
  restarted,
  healthy,  // health check passed: release as succeeded
  failed,   // install or health failed: roll back under the lease
  rollback_begun,
  rolled_back,      // previous version back: release as rolledback
  rollback_failed,  // release as failed
};
const char* to_string(Progress p);
std::optional<Progress> progress_from_string(const std::string& s);

// What this member knows about itself. The persisted part lives in the state file.
struct Local {
  State state = State::idle;       // our entry's state as we last wrote it
  std::string version;             // agent version running now
  std::string target;              // version the plan names ("" = none)
  std::string previous_version;    // version before this upgrade (rollback target)
  std::int64_t epoch = 0;          // our fencing token (§4.3)
  std::int64_t highest_epoch = 0;  // highest epoch ever seen in the group (see next_epoch)
  std::string acquire_time;
  std::string waiting_since;
  std::string message;               // reason shown in our entry
  std::string last_write_id;         // writeId of our latest write known to have landed
  bool prepared = false;             // prepare finished for `target`
  bool verification_failed = false;  // the artifact failed verification: write failed (§4.2)
  std::string failed_target;         // a node in no group: the target whose upgrade failed
  Progress progress = Progress::none;
  // Fenced while a disruptive step still ran (protocol.md §4.4): our entry stays
  // upgrading without a lease until the step ends; never renewed.
  bool leaseless = false;

  // Process-local, not persisted: a restarted process renews first (§4.4).
  std::optional<Mono> last_renew;  // when our last acquire/renew landed
  std::optional<Mono> last_write;  // when our last write of any kind landed
  bool job_running = false;        // a prepare/install/... job is in flight
  bool step_running = false;       // that job is a disruptive step: install, restart, rollback
  // An install or rollback recorded as begun by an earlier process may still run
  // (outside agentd, upgrade/detached.h) until then: see process_started (member.h).
  std::optional<Mono> begun_step_until;
  // Each heartbeat of a rollout comes this much (per mille of its interval, 0..249) early,
  // drawn anew after every write: members that all wrote at once (a rollout
  // begins) drift apart instead of invalidating each other's next write.
  int heartbeat_jitter_permille = 0;
};

enum class ActionKind {
  none,     // nothing to do now; `wait` says why, `reason` in words (status text)
  write,    // write `entry` with If-Match of the document's revision
  prepare,  // run the upgrader's prepare (no lease)
  install,  // disruptive: fence first (§4.4)
  restart,  // disruptive: fence first
  check_health,
  rollback,  // disruptive: fence first
  adopt,     // someone else (an admin) wrote our entry: take `entry` as our state
};
const char* to_string(ActionKind k);

// Which write of our entry a write action is (protocol.md §4.2-§4.5); its name is
// the log event of the write.
enum class WriteKind {
  join,       // §4.2: a member without an entry writes one
  heartbeat,  // §4.1: lastSeen only (a holder's renews too)
  prepare,    // a new target: preparing
  idle,       // the target was withdrawn
  fail,       // the artifact failed verification (§4.2)
  wait,       // prepared: queue for the lease (§4.3)
  acquire,    // §4.3
  renew,      // §4.4
  verify,     // restarted: verifying under the lease
  release,    // §4.5
  fenced,     // §4.4: our lease is gone
};
const char* to_string(WriteKind k);
// Heartbeats and renewals happen all the time: logged at debug, not as events.
inline bool routine(WriteKind k) {
  return k == WriteKind::heartbeat || k == WriteKind::renew;
}

// Why a member does nothing now (ActionKind::none); the text is in Action::reason.
enum class WaitReason {
  none,          // not waiting
  not_member,    // not a member of the group (yet): its node record says more
  group_halted,  // §1 goal 4: the group halted for our target
  up_to_date,
  preparing,        // the prepare job runs
  may_not_acquire,  // §4.3 says not yet (Verdict::reason says which rule)
  step_running,     // a job, or a fenced step (§4.4), still runs
  halted,           // our own upgrade failed or rolled back
};

struct Action {
  ActionKind kind = ActionKind::none;
  Entry entry;                         // for write/adopt
  WriteKind what = WriteKind::join;    // for write
  WaitReason wait = WaitReason::none;  // for none
  std::string reason;                  // human text for logs and sd_notify STATUS
};

struct Verdict {
  bool ok = false;
  std::string reason;
};

// At most this many decisions in one pass of the loop (Daemon::grouped_tick and
// agentd-sim): each landed write or adoption decides again on the copy it made,
// and a chain that long means something keeps changing under us; the next pass
// goes on after a fresh read.
inline constexpr int kMaxDecisionsPerPass = 8;
// Local::heartbeat_jitter_permille is drawn from 0..this after every write.
inline constexpr int kMaxHeartbeatJitterPermille = 249;

// What an upgrade under way does next, by how far it has gone on this node
// (protocol.md §4.2): the one table for a lease holder and for a node in no group.
struct NextStep {
  ActionKind step = ActionKind::none;  // install, restart, check_health or rollback; none: it has ended
  State ends_in = State::idle;         // with none: succeeded, rolledback or failed
};
NextStep next_step(Progress p);

// A node in no group upgrades at once: no lease to take, nothing to write
// (Coordinator::decide_alone).
struct AloneAction {
  // prepare, install, restart, check_health or rollback: start that job; none
  // with `next`: a transition; none without: nothing to do (`wait`, `reason`).
  ActionKind kind = ActionKind::none;
  std::optional<Local> next;  // persist it, then report, then decide again unless `stop`
  std::optional<MgmtStatus> report;
  std::string report_error;
  bool released = false;  // the upgrade ended (log "release")
  bool stop = false;      // the pass ends after this transition
  WaitReason wait = WaitReason::none;
  std::string reason;
};

class Coordinator {
 public:
  Coordinator(std::string self, Timing timing);

  const std::string& self() const { return self_; }
  const Timing& timing() const { return timing_; }

  // Records, for every other entry, when its renewTime and lastSeen were seen to
  // change (§4.1). Call on every fresh document, before deciding.
  void observe(const GroupDocument& doc, Mono now);
  // Forget all observations (the member moved to another group).
  void reset();

  // §4.1: live while less than leaseDurationSeconds of local time has passed since
  // its renewTime last changed (first observation counts as a change).
  bool lease_live(const std::string& node, const Entry& e, Mono now) const;
  // §4.3 rule 2 (amended): holding a live lease, or in upgrading/verifying with a
  // fresh lastSeen (a fenced step still running), or force-released by an admin
  // while it held a lease and not heard from since (see observe()).
  bool disrupted(const std::string& node, const Entry& e, Mono now) const;
  // Other members disrupted now, entries removed while holding included; `who`
  // gets one of them for the status text.
  std::int64_t disrupted_others(const GroupDocument& doc, Mono now, std::string* who = nullptr) const;
  // §4.1: entry exists, lastSeen changed within 3 × heartbeat, not failed/rolledback,
  // not holding a lease that is no longer live, not disrupted.
  bool healthy(const std::string& node, const Entry& e, Mono now) const;
  // Whether we have watched the active rollout long enough to judge health (§4.1).
  bool judging(Mono now) const;

  static bool rollout_active(const GroupDocument& doc);
  // An entry in failed/rolledback for `target` halts the group (§1 goal 4); returns who and why.
  static std::optional<std::string> halted_for(const GroupDocument& doc, const std::string& target);
  // §4.3 (amended, see coordinator.cpp): 1 + max epoch, never below revision + 1.
  std::int64_t next_epoch(const GroupDocument& doc, const Local& local) const;

  // §4.3 rules 1-4 on this one revision.
  Verdict may_acquire(const GroupDocument& doc, const Local& local, Mono now) const;
  // §4.4: our entry still holds the lease with our epoch, and no entry with a higher
  // epoch holds a live lease.
  Verdict fence(const GroupDocument& doc, const Local& local, Mono now) const;
  // §4.6: did the write carrying `write_id` land?
  static bool write_landed(const GroupDocument& doc, const std::string& self, const std::string& write_id);

  // The next action for this member. `doc` must be fresh and observed.
  Action decide(const GroupDocument& doc, const Local& local, Mono now, const Wall& wall,
                const std::string& new_write_id) const;
  // The next action for a node in no group (or in one its hub cannot coordinate,
  // beside anax): the same steps as a holder's, without lease or writes. Call it
  // only while no job runs.
  static AloneAction decide_alone(const Local& local);

  // How many healthy waiters for our target come before us (§4.3 rule 4's order);
  // -1 when we are not waiting.
  int queue_position(const GroupDocument& doc, const Local& local, Mono now) const;
  // The heartbeat interval `d` less this member's jitter.
  static Mono jittered(Mono d, const Local& local) { return d - d * local.heartbeat_jitter_permille / 1000; }
  // How long to wait before the next conditional read (§5 pollSeconds).
  Mono poll_interval(const GroupDocument& doc, const Local& local, Mono now) const;

 private:
  struct Seen {
    std::string renew_time;
    Mono renew_changed{};
    std::string last_seen;
    Mono last_seen_changed{};
    State state = State::idle;
    std::int64_t epoch = 0;            // its epoch when last seen
    bool changed_since_first = false;  // lastSeen changed after the first sighting: alive
    bool present = true;               // false: a member without an entry (see observe())
    bool unaccounted = false;          // the entry's shape says an admin ended its lease
    // Since when the entry (or its absence) has been unaccounted for: its owner may
    // still be inside a disruptive step (§6 amended). Cleared when the owner writes.
    std::optional<Mono> released_at;
  };
  bool fresh_last_seen(const Seen& s, Mono now) const;

  Entry base_entry(const Local& local, const Wall& wall, const std::string& write_id) const;
  bool heartbeat_due(const GroupDocument& doc, const Local& local, Mono now) const;
  Action holder_action(const GroupDocument& doc, const Local& local, Mono now, const Wall& wall,
                       const std::string& write_id) const;

  std::string self_;
  Timing timing_;
  std::map<std::string, Seen> seen_;
  std::optional<Mono> active_since_;  // when we first saw the current rollout active
};

}  // namespace agentd
