// A member's bookkeeping around its own writes (protocol.md §4.2, §4.6): what
// changes in its persisted state when a write lands, when someone else wrote its
// entry, when a lost write is found on a fresh read, and after a write that did
// not land. No I/O: the daemon persists, logs and reports what these return, and
// the simulator (tests/sim) drives the very same functions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "clock.h"
#include "coordinator.h"
#include "group.h"
#include "group_store.h"
#include "result.h"
#include "upgrade/state_file.h"

namespace agentd {

// A node management status the caller sends (exchange-api.md §4.3).
struct StatusReport {
  MgmtStatus status = MgmtStatus::waiting;
  std::string error;
  bool operator==(const StatusReport&) const = default;
};

// What the caller does about a write of ours that landed (it also draws the next
// heartbeat's jitter, Local.heartbeat_jitter_permille).
struct Landed {
  std::vector<StatusReport> reports;  // in this order
};

// Our write of `e` is on the hub (its response came back at `sent`, or it was
// recognised later by its writeId, `sent` then unknown): the same bookkeeping
// either way. Clears the pending writeId.
Landed land_write(PersistedState& ps, const Entry& e, std::optional<Mono> sent);

// Our write of `e` came back with the new `revision`: land it and put it in our
// copy of the document. A group-conditioned write makes the copy what the hub
// holds at `revision`; after an entry-conditioned one peers may have written in
// between, so the copy keeps its older revision (a group-conditioned write on it
// then needs a fresh read, and If-None-Match gets the whole document).
Landed land_answered_write(PersistedState& ps, GroupDocument& doc, const std::string& self, const Entry& e,
                           std::int64_t revision, Mono sent, WriteCondition condition);

// The If-Match revision of our next write. Group-conditioned: our copy's. Entry-
// conditioned: our entry is as we know it since our copy was read, or since our
// last write landed at `written` (revision it answered), whichever is later.
inline std::int64_t if_match_revision(const GroupDocument& doc, std::int64_t written, WriteCondition c) {
  return c == WriteCondition::entry ? std::max(doc.revision, written) : doc.revision;
}

// protocol.md §4.6: on a fresh document, a pending write is judged by its writeId.
// Returns the entry when it had landed (land_write was applied); the pending
// writeId is cleared either way. `effects` gets what to report when it landed.
std::optional<Entry> resolve_pending(PersistedState& ps, const GroupDocument& doc, const std::string& self,
                                     Landed* effects);

// Someone else (an admin, protocol.md §6) wrote our entry `e`: the hub is the truth
// about the lease; our file stays the truth about what was done to this node.
struct Adopted {
  bool fenced = false;        // we held a lease and this entry ends it
  bool step_running = false;  // ... while a step we began still runs (stays upgrading, leaseless)
  std::string reason;         // for the log when fenced
};
Adopted adopt_entry(Local& l, const Entry& e);

// protocol.md §4.2, §4.4: a process that starts with an install or rollback
// recorded as begun cannot tell whether that step, run outside agentd by an
// earlier process, still runs. It counts as inside it (Local.step_running: a fence
// keeps its entry upgrading without a lease) until it resumes the step itself or
// `step_timeout`, after which the step's run has surely been ended, has passed.
void process_started(Local& l, Mono now, Mono step_timeout);

// Local.job_running / step_running from the job this process runs now. Returns
// the step ("install", "rollback") an earlier process began whose timeout has just
// passed: it has surely ended, and its end goes into the steps log (protocol.md §7
// I3), or nullptr.
const char* note_job(Local& l, bool job_running, bool job_in_step, Mono now);

// How a write that did not come back with a new revision is judged.
enum class WriteOutcome {
  landed,    // answered with the new revision
  conflict,  // 412: maybe a re-sent copy of a write that landed (§4.6): stays pending
  unknown,   // transport error or 5xx: may have landed; re-read, judge by writeId
  refused,   // 403/404/401/428, malformed: never landed; nothing pending
};
WriteOutcome classify_write_error(Errc code);

// The bookkeeping after a write that did not land by its answer.
void write_not_answered(PersistedState& ps, WriteOutcome outcome);

// protocol.md §4.3: after a conflict, re-read after full jitter; a holder at once.
Mono conflict_delay(const Local& l, int conflicts, std::mt19937_64& rng);

}  // namespace agentd
