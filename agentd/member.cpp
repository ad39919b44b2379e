#include "member.h"

#include <algorithm>

#include "backoff.h"

namespace agentd {

Landed land_write(PersistedState& ps, const Entry& e, std::optional<Mono> sent) {
  Local& l = ps.local;
  Landed out;
  State before = l.state;
  if (holds_lease(e.state) && !holds_lease(before) && l.progress == Progress::none)
    l.previous_version = l.version;
  bool released = holds_lease(before) && (e.state == State::succeeded || is_halting(e.state));
  const bool rollback_failed = released && l.progress == Progress::rollback_failed;
  bool failed_prepare = before == State::preparing && e.state == State::failed;
  l.state = e.state;
  l.version = e.version;
  l.epoch = e.epoch;
  l.highest_epoch = std::max(l.highest_epoch, e.epoch);
  l.acquire_time = e.acquire_time;
  l.waiting_since = e.waiting_since;
  l.message = e.message;
  l.last_write_id = e.write_id;
  l.last_write = sent;
  l.leaseless = holds_lease(e.state) && !carries_lease(e);
  l.last_renew = carries_lease(e) ? sent : std::nullopt;
  if (released || failed_prepare) {
    l.progress = Progress::none;
    l.prepared = false;
    l.verification_failed = false;
  }
  ps.pending_write_id.clear();
  // Node management status, with the real agent's strings (exchange-api.md §4.3).
  if (e.state == State::preparing && before != State::preparing)
    out.reports.push_back({MgmtStatus::download_started, ""});
  if (e.state == State::waiting && before == State::preparing)
    out.reports.push_back({MgmtStatus::ha_node_waiting, ""});
  if (failed_prepare) out.reports.push_back({MgmtStatus::failed, e.message});
  if (released) {
    if (e.state == State::succeeded)
      out.reports.push_back({MgmtStatus::successful, ""});  // also the version the hub knows
    if (e.state == State::rolledback) out.reports.push_back({MgmtStatus::rollback_successful, e.message});
    if (e.state == State::failed)
      out.reports.push_back({rollback_failed ? MgmtStatus::rollback_failed : MgmtStatus::failed, e.message});
  }
  return out;
}

Landed land_answered_write(PersistedState& ps, GroupDocument& doc, const std::string& self, const Entry& e,
                           std::int64_t revision, Mono sent, WriteCondition condition) {
  Landed out = land_write(ps, e, sent);
  doc.entries[self] = e;
  if (condition == WriteCondition::group) doc.revision = revision;
  return out;
}

std::optional<Entry> resolve_pending(PersistedState& ps, const GroupDocument& doc, const std::string& self,
                                     Landed* effects) {
  if (ps.pending_write_id.empty()) return std::nullopt;
  std::optional<Entry> found;
  if (Coordinator::write_landed(doc, self, ps.pending_write_id)) {
    found = *doc.entry(self);
    // We do not know when it landed: a lease is renewed before anything else.
    Landed l = land_write(ps, *found, std::nullopt);
    if (effects) *effects = std::move(l);
  }
  ps.pending_write_id.clear();
  return found;
}

Adopted adopt_entry(Local& l, const Entry& e) {
  // Ours: still our lease (an admin changed something else in it). An entry in a
  // lease state without a lease is an admin's force-release (protocol.md §6).
  bool ours = carries_lease(e) && holds_lease(l.state) && e.epoch == l.epoch;
  if (holds_lease(l.state) && !ours && l.step_running) {
    // protocol.md §4.4, §6: force-released while a step we began still runs. The
    // step is not undone; until it ends our entry says upgrading without a lease,
    // so no peer starts its own (the next pass writes it at once).
    std::string why = "fenced: " + (e.message.empty() ? std::string("our entry was changed") : e.message);
    l.state = State::upgrading;
    l.leaseless = true;
    l.message = why + "; the step begun under the lease is still running";
    l.last_write_id = e.write_id;
    l.last_write.reset();
    return {true, true, why};
  }
  Adopted out;
  if (holds_lease(l.state) && !ours) {
    // Fenced with no step running: start over; what was begun on this node is kept
    // in `progress` and finished under the next lease.
    out = {true, false, "fenced: " + e.message};
    l.state = l.progress != Progress::none ? State::preparing : State::idle;
    l.leaseless = false;
  } else if (holds_lease(e.state) && !ours) {
    l.state = State::waiting;  // a lease we did not take is not ours: write waiting next
  } else if (ours) {
    l.state = e.state;
    l.last_renew.reset();  // renew before anything else
  } else if (holds_lease(l.state) || l.state == State::failed || l.state == State::rolledback) {
    // force-release (holder) or resume (halted): start over from idle; what was
    // begun on this node is kept in `progress` and finished under the next lease.
    l.state = e.state == State::idle || e.state == State::succeeded ? State::idle : e.state;
    if (!holds_lease(l.state) && l.progress != Progress::none && l.state == State::idle)
      l.state = State::preparing;
  } else {
    l.state = e.state;
  }
  if (l.state == State::idle && l.progress == Progress::none) {
    l.prepared = false;
    l.verification_failed = false;
  }
  l.message = e.message;
  l.last_write_id = e.write_id;
  l.last_write.reset();  // show we are alive soon
  return out;
}

void process_started(Local& l, Mono now, Mono step_timeout) {
  l.begun_step_until.reset();
  if (l.progress == Progress::install_begun || l.progress == Progress::rollback_begun)
    l.begun_step_until = now + step_timeout;
}

const char* note_job(Local& l, bool job_running, bool job_in_step, Mono now) {
  const char* ended = nullptr;
  if (job_running) {
    l.begun_step_until.reset();  // the step is ours again (resumed), or done
  } else if (l.begun_step_until && now >= *l.begun_step_until) {
    l.begun_step_until.reset();
    if (l.progress == Progress::install_begun) ended = "install";
    if (l.progress == Progress::rollback_begun) ended = "rollback";
  }
  l.job_running = job_running;
  l.step_running = job_in_step || l.begun_step_until.has_value();
  return ended;
}

WriteOutcome classify_write_error(Errc code) {
  switch (code) {
    case Errc::conflict: return WriteOutcome::conflict;
    case Errc::forbidden:
    case Errc::not_found:
    case Errc::parse:
    case Errc::precondition:
    case Errc::unauthorized: return WriteOutcome::refused;
    default: return WriteOutcome::unknown;  // transport error or 5xx: the write may have landed
  }
}

void write_not_answered(PersistedState& ps, WriteOutcome outcome) {
  // protocol.md §4.6: a 412 may answer a copy of this write that the HTTP client
  // re-sent after the connection died, the first copy having landed; like a lost
  // answer it stays pending until a fresh read judges it by its writeId. Only a
  // refusal says the write never landed.
  if (outcome == WriteOutcome::refused) ps.pending_write_id.clear();
}

Mono conflict_delay(const Local& l, int conflicts, std::mt19937_64& rng) {
  if (holds_lease(l.state)) return Mono{0};  // a holder renews at once (§4.4)
  return full_jitter(std::min(conflicts, 6), Mono{200}, Mono{10'000}, rng);
}

}  // namespace agentd
