#include "coordinator.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace agentd {

namespace {
constexpr const char* kProgressNames[] = {"none",        "install_begun",  "installed", "restart_begun",
                                          "restarted",   "healthy",        "failed",    "rollback_begun",
                                          "rolled_back", "rollback_failed"};
constexpr const char* kActionNames[] = {"none",    "write",        "prepare",  "install",
                                        "restart", "check_health", "rollback", "adopt"};
// The log event names of the writes: operators and tests read them.
constexpr const char* kWriteNames[] = {"join",    "heartbeat", "prepare", "idle",    "fail",  "wait",
                                       "acquire", "renew",     "verify",  "release", "fenced"};

std::string seconds_text(Mono d) {
  auto s = static_cast<long long>((d.count() + 999) / 1000);
  return std::to_string(s) + "s";
}

// The disruptive step recorded as begun, for messages.
const char* begun_step(Progress p) {
  switch (p) {
    case Progress::install_begun: return "install";
    case Progress::restart_begun: return "restart";
    case Progress::rollback_begun: return "rollback";
    default: return "a disruptive step";
  }
}

// Orders waiters by waitingSince (§4.3 rule 4); unparsable times sort last.
Wall waiting_key(const Entry& e) {
  Wall w;
  if (!parse_time(e.waiting_since, &w)) return Wall::max();
  return w;
}
}  // namespace

const char* to_string(Progress p) {
  return kProgressNames[static_cast<int>(p)];
}

std::optional<Progress> progress_from_string(const std::string& s) {
  for (std::size_t i = 0; i < std::size(kProgressNames); ++i)
    if (s == kProgressNames[i]) return static_cast<Progress>(i);
  return std::nullopt;
}

const char* to_string(ActionKind k) {
  return kActionNames[static_cast<int>(k)];
}

const char* to_string(WriteKind k) {
  return kWriteNames[static_cast<int>(k)];
}

NextStep next_step(Progress p) {
  switch (p) {
    case Progress::none:
    case Progress::install_begun: return {ActionKind::install};
    case Progress::installed: return {ActionKind::restart};
    case Progress::restart_begun:
    case Progress::restarted: return {ActionKind::check_health};
    case Progress::failed:
    case Progress::rollback_begun: return {ActionKind::rollback};
    case Progress::healthy: return {ActionKind::none, State::succeeded};
    case Progress::rolled_back: return {ActionKind::none, State::rolledback};
    case Progress::rollback_failed: return {ActionKind::none, State::failed};
  }
  return {};
}

Coordinator::Coordinator(std::string self, Timing timing) : self_(std::move(self)), timing_(timing) {}

void Coordinator::reset() {
  seen_.clear();
  active_since_.reset();
}

void Coordinator::observe(const GroupDocument& doc, Mono now) {
  const Mono window = 3 * timing_.heartbeat;
  // §4.1: remember when each entry's renewTime / lastSeen last *changed*; the
  // first sighting counts as a change, so a restarted member waits a full period.
  //
  // §6 (amended): an admin who ends a lease does not end the step its holder may
  // still be running. A member never moves itself from a lease state to idle nor
  // deletes its own entry, so an entry seen to do either, an idle entry carrying
  // the group's highest epoch (a holder released to idle before we saw its lease),
  // and a member with no entry are *unaccounted*: disrupted until their owner
  // writes (lastSeen changes, or the entry appears), for at most 3 × heartbeat.
  std::int64_t top = 0;
  for (const auto& [node, e] : doc.entries) top = std::max(top, e.epoch);
  auto unaccounted_from = [](Mono t) {
    Seen s;
    s.present = false;
    s.released_at = t;
    return s;
  };
  for (auto it = seen_.begin(); it != seen_.end();) {
    Seen& s = it->second;
    if (doc.entry(it->first)) {
      ++it;
      continue;
    }
    if (s.present) s = unaccounted_from(now);
    const bool counting = s.released_at && now - *s.released_at < window;
    if (doc.is_member(it->first) || counting)
      ++it;
    else
      it = seen_.erase(it);
  }
  for (const auto& m : doc.members)
    if (!doc.entry(m) && !seen_.contains(m)) seen_.emplace(m, unaccounted_from(now));
  for (const auto& [node, e] : doc.entries) {
    auto [it, fresh] = seen_.try_emplace(node);
    Seen& s = it->second;
    if (!s.present) {  // written (again) by its owner
      s = Seen{};
      fresh = true;
    }
    if (fresh || s.renew_time != e.renew_time) {
      s.renew_time = e.renew_time;
      s.renew_changed = now;
    }
    // An idle entry whose epoch grew since we last saw it went through an
    // acquisition whose end we never saw (agentd-sim: with maxConcurrent 2 a later
    // acquisition can hide it from the highest-epoch rule).
    const bool unaccounted =
        e.state == State::idle &&
        ((!fresh && (holds_lease(s.state) || e.epoch > s.epoch)) || (e.epoch > 0 && e.epoch == top));
    if (unaccounted && !s.unaccounted)
      s.released_at = now;
    else if (!fresh && s.last_seen != e.last_seen)
      s.released_at.reset();
    s.unaccounted = unaccounted;
    if (fresh || s.last_seen != e.last_seen) {
      if (!fresh) s.changed_since_first = true;
      s.last_seen = e.last_seen;
      s.last_seen_changed = now;
    }
    s.state = e.state;
    s.epoch = e.epoch;
  }
  if (rollout_active(doc)) {
    if (!active_since_) active_since_ = now;
  } else {
    active_since_.reset();
  }
}

bool Coordinator::lease_live(const std::string& node, const Entry& e, Mono now) const {
  if (!carries_lease(e)) return false;
  auto it = seen_.find(node);
  if (it == seen_.end()) return true;  // not observed yet: live for a full duration from now
  Mono duration =
      e.lease_duration_seconds > 0 ? Mono{e.lease_duration_seconds * 1000} : timing_.lease_duration;
  return now - it->second.renew_changed < duration;
}

bool Coordinator::fresh_last_seen(const Seen& s, Mono now) const {
  return now - s.last_seen_changed < 3 * timing_.heartbeat;
}

bool Coordinator::disrupted(const std::string& node, const Entry& e, Mono now) const {
  if (lease_live(node, e, now)) return true;
  auto it = seen_.find(node);
  if (it == seen_.end()) return holds_lease(e.state);  // not observed yet: fresh
  const Seen& s = it->second;
  if (holds_lease(e.state) && fresh_last_seen(s, now)) return true;
  return s.released_at && now - *s.released_at < 3 * timing_.heartbeat;
}

std::int64_t Coordinator::disrupted_others(const GroupDocument& doc, Mono now, std::string* who) const {
  std::int64_t n = 0;
  for (const auto& [node, e] : doc.entries) {
    if (node != self_ && disrupted(node, e, now)) {
      ++n;
      if (who) *who = node;
    }
  }
  for (const auto& [node, s] : seen_) {
    if (node != self_ && !s.present && s.released_at && now - *s.released_at < 3 * timing_.heartbeat) {
      ++n;
      if (who) *who = node;
    }
  }
  return n;
}

bool Coordinator::healthy(const std::string& node, const Entry& e, Mono now) const {
  if (is_halting(e.state)) return false;
  if (holds_lease(e.state) && !lease_live(node, e, now)) return false;
  if (disrupted(node, e, now)) return false;  // §4.3 rule 2 (amended): disrupted is not healthy
  auto it = seen_.find(node);
  if (it == seen_.end()) return true;
  return fresh_last_seen(it->second, now);
}

bool Coordinator::judging(Mono now) const {
  return active_since_ && now - *active_since_ >= 3 * timing_.heartbeat;
}

bool Coordinator::rollout_active(const GroupDocument& doc) {
  return std::any_of(doc.entries.begin(), doc.entries.end(),
                     [](const auto& kv) { return is_active(kv.second.state); });
}

std::optional<std::string> Coordinator::halted_for(const GroupDocument& doc, const std::string& target) {
  if (target.empty()) return std::nullopt;
  for (const auto& [node, e] : doc.entries) {
    if (is_halting(e.state) && e.target_version == target) {
      std::string why = node + " " + to_string(e.state) + " upgrading to " + target;
      if (!e.message.empty()) why += ": " + e.message;
      return why;
    }
  }
  return std::nullopt;
}

std::int64_t Coordinator::next_epoch(const GroupDocument& doc, const Local& local) const {
  // §4.3 says 1 + max(epoch over all entries). Amended: if the member holding the
  // highest epoch is removed from the group its entry goes, and that rule would hand
  // out its epoch again (I2). The revision only grows, and every acquisition made
  // this way is <= its revision + 1, so max(..., revision + 1) strictly increases
  // while staying >= 1 + max for members that follow the original rule.
  std::int64_t m = local.highest_epoch;
  for (const auto& [node, e] : doc.entries) m = std::max(m, e.epoch);
  return std::max(m + 1, doc.revision + 1);
}

Verdict Coordinator::may_acquire(const GroupDocument& doc, const Local& local, Mono now) const {
  // §4.3 rule 1
  if (!doc.is_member(self_)) return {false, "not a member of group " + doc.name};
  if (auto halt = halted_for(doc, local.target)) return {false, "group halted: " + *halt};
  if (doc.settings.paused) return {false, "group paused by an admin"};
  // rule 2 (amended): a fenced step still running counts like a lease.
  std::string holder;
  if (disrupted_others(doc, now, &holder) >= doc.settings.max_concurrent)
    return {false, "waiting for " + holder + " (lease held or a step still running)"};
  // rule 3; with nobody required there is nothing to observe.
  std::int64_t need = doc.min_available();
  if (need > 0) {
    // §4.1: before 3 × heartbeat of watching, a peer counts as healthy only once
    // its lastSeen has been seen to change (a first sighting proves nothing): a
    // group whose members are seen alive need not wait out the whole window.
    const bool watched = judging(now);
    std::int64_t ok = 0;
    std::string down;
    for (const auto& m : doc.members) {
      if (m == self_) continue;
      const Entry* e = doc.entry(m);
      auto it = seen_.find(m);
      bool proven = watched || (it != seen_.end() && it->second.changed_since_first);
      if (e && proven && healthy(m, *e, now)) {
        ++ok;
      } else {
        down += (down.empty() ? "" : ",") + m;
      }
    }
    if (ok < need && !watched) {
      Mono left = active_since_ ? 3 * timing_.heartbeat - (now - *active_since_) : 3 * timing_.heartbeat;
      return {false, "observing peers' health before acquiring (" + seconds_text(left) + " left at most)"};
    }
    if (ok < need)
      return {false, std::to_string(ok) + " other members healthy, need " + std::to_string(need) +
                         " (unhealthy: " + down + ")"};
  }
  // rule 4: only the head of the healthy waiters for this target contends.
  const Entry* mine = doc.entry(self_);
  if (!mine || mine->state != State::waiting) return {false, "own entry is not waiting"};
  std::vector<std::pair<Wall, std::string>> waiters;
  for (const auto& [node, e] : doc.entries) {
    if (e.state != State::waiting || e.target_version != local.target || !doc.is_member(node)) continue;
    if (node != self_ && !healthy(node, e, now)) continue;
    waiters.emplace_back(waiting_key(e), node);
  }
  std::sort(waiters.begin(), waiters.end());
  if (waiters.empty() || waiters.front().second != self_)
    return {false, "waiting behind " + (waiters.empty() ? std::string("?") : waiters.front().second)};
  return {true, "free"};
}

int Coordinator::queue_position(const GroupDocument& doc, const Local& local, Mono now) const {
  // §4.3 rule 4's order among the healthy waiters for our target.
  const Entry* mine = doc.entry(self_);
  if (!mine || mine->state != State::waiting) return -1;
  const std::pair<Wall, std::string> me{waiting_key(*mine), self_};
  int ahead = 0;
  for (const auto& [node, e] : doc.entries) {
    if (node == self_ || e.state != State::waiting || e.target_version != local.target ||
        !doc.is_member(node))
      continue;
    if (healthy(node, e, now) && std::pair<Wall, std::string>{waiting_key(e), node} < me) ++ahead;
  }
  return ahead;
}

Verdict Coordinator::fence(const GroupDocument& doc, const Local& local, Mono now) const {
  const Entry* mine = doc.entry(self_);
  if (!mine || !holds_lease(mine->state) || mine->epoch != local.epoch)
    return {false, "fenced: our entry no longer holds the lease with epoch " + std::to_string(local.epoch)};
  if (mine->write_id != local.last_write_id) return {false, "fenced: our entry was changed by someone else"};
  if (!local.last_renew || now - *local.last_renew >= timing_.lease_duration)
    return {false, "lease lost: not renewed for a whole lease duration"};
  for (const auto& [node, e] : doc.entries) {
    if (node != self_ && e.epoch > local.epoch && lease_live(node, e, now))
      return {false, "fenced by " + node + " holding epoch " + std::to_string(e.epoch)};
  }
  return {true, "holding epoch " + std::to_string(local.epoch)};
}

bool Coordinator::write_landed(const GroupDocument& doc, const std::string& self,
                               const std::string& write_id) {
  const Entry* mine = doc.entry(self);
  return mine && !write_id.empty() && mine->write_id == write_id;
}

Entry Coordinator::base_entry(const Local& local, const Wall& wall, const std::string& write_id) const {
  Entry e;
  e.state = local.state;
  e.version = local.version;
  e.target_version = local.state == State::idle ? "" : local.target;
  e.epoch = local.epoch;
  if (holds_lease(local.state) && !local.leaseless) {
    e.lease_duration_seconds = static_cast<std::int64_t>(std::ceil(timing_.lease_duration.count() / 1000.0));
    e.acquire_time = local.acquire_time;
    e.renew_time = format_time(wall);  // every write by the holder renews (§4.4)
  }
  if (local.state == State::waiting) e.waiting_since = local.waiting_since;
  e.last_seen = format_time(wall);
  e.message = local.message;
  e.write_id = write_id;
  return e;
}

bool Coordinator::heartbeat_due(const GroupDocument& doc, const Local& local, Mono now) const {
  if (!local.last_write) return true;
  bool active = rollout_active(doc);
  // A rollout that began after our last write: show we are alive soon (§4.1),
  // within this member's jitter of the heartbeat, not all members at one instant.
  if (active && active_since_ && *local.last_write < *active_since_)
    return now - *active_since_ >= timing_.heartbeat - jittered(timing_.heartbeat, local);
  // Jittered during a rollout only: a quiet group writes too rarely to collide,
  // and an idle member's cost is its idle heartbeat (protocol.md §1 goal 6).
  return now - *local.last_write >= (active ? jittered(timing_.heartbeat, local) : timing_.idle_heartbeat);
}

Action Coordinator::decide(const GroupDocument& doc, const Local& local, Mono now, const Wall& wall,
                           const std::string& wid) const {
  auto write = [&](Entry e, WriteKind what, std::string reason) {
    return Action{ActionKind::write, std::move(e), what, WaitReason::none, std::move(reason)};
  };
  auto none = [](WaitReason why, std::string reason) {
    return Action{ActionKind::none, {}, WriteKind::heartbeat, why, std::move(reason)};
  };
  auto with = [&](State s, std::string message) {
    Local l = local;
    l.state = s;
    l.message = std::move(message);
    return l;
  };
  if (!doc.is_member(self_)) return none(WaitReason::not_member, "not a member of group " + doc.name);

  const Entry* mine = doc.entry(self_);
  if (!mine) {
    // §4.2: a member without an entry writes one first. A lease we thought we
    // held is gone with the entry (an admin cleared it): we are fenced (§4.4),
    // and stay disrupted while a step we began still runs.
    Local l = local;
    if (!holds_lease(l.state))
      return write(base_entry(l, wall, wid), WriteKind::join, "joining group " + doc.name);
    if (local.step_running) {
      l.state = State::upgrading;
      l.leaseless = true;
      l.message = std::string("fenced: our entry was removed by an admin; ") + begun_step(local.progress) +
                  " still running";
    } else {
      l.state = State::waiting;
      l.leaseless = false;
      l.message = "fenced: our entry was removed by an admin";
      l.waiting_since = format_time(wall);
    }
    return write(base_entry(l, wall, wid), WriteKind::fenced, l.message);
  }
  if (mine->write_id != local.last_write_id)
    return {ActionKind::adopt, *mine, WriteKind::join, WaitReason::none,
            "our entry was written by someone else: " + mine->message};

  // An upgrade begun on this node is finished, verified or rolled back, never
  // forgotten (§4.2): after a fence or a restart the node may already run the
  // target while its health check or release is still to come.
  const bool has_target =
      !local.target.empty() && (local.target != local.version || local.progress != Progress::none);
  switch (local.state) {
    case State::idle:
    case State::succeeded: {
      if (has_target) {
        if (auto halt = halted_for(doc, local.target)) {
          if (heartbeat_due(doc, local, now))
            return write(base_entry(local, wall, wid), WriteKind::heartbeat, "halted");
          return none(WaitReason::group_halted, "not preparing " + local.target + ": group halted: " + *halt);
        }
        Local l = with(State::preparing, "preparing " + local.target);
        return write(base_entry(l, wall, wid), WriteKind::prepare, "new target " + local.target);
      }
      if (heartbeat_due(doc, local, now))
        return write(base_entry(local, wall, wid), WriteKind::heartbeat, "heartbeat");
      return none(WaitReason::up_to_date, "up to date at " + local.version);
    }
    case State::preparing: {
      if (!has_target)
        return write(base_entry(with(State::idle, ""), wall, wid), WriteKind::idle, "target withdrawn");
      if (mine->target_version != local.target)
        return write(base_entry(with(State::preparing, "preparing " + local.target), wall, wid),
                     WriteKind::prepare, "target changed to " + local.target);
      if (local.verification_failed)
        return write(base_entry(with(State::failed, local.message), wall, wid), WriteKind::fail,
                     "artifact failed verification");
      if (local.prepared) {
        Local l = with(State::waiting, "waiting for the group lease");
        l.waiting_since = format_time(wall);
        return write(base_entry(l, wall, wid), WriteKind::wait, "prepared " + local.target);
      }
      if (!local.job_running)
        return {ActionKind::prepare, {}, WriteKind::join, WaitReason::none, "preparing " + local.target};
      if (heartbeat_due(doc, local, now))
        return write(base_entry(local, wall, wid), WriteKind::heartbeat, "heartbeat");
      return none(WaitReason::preparing, "preparing " + local.target);
    }
    case State::waiting: {
      if (!has_target)
        return write(base_entry(with(State::idle, ""), wall, wid), WriteKind::idle, "target withdrawn");
      if (mine->target_version != local.target)
        return write(base_entry(with(State::preparing, "preparing " + local.target), wall, wid),
                     WriteKind::prepare, "target changed to " + local.target);
      Verdict v = may_acquire(doc, local, now);
      if (v.ok) {
        Local l = with(State::upgrading, "upgrading to " + local.target);
        l.epoch = next_epoch(doc, local);
        l.acquire_time = format_time(wall);
        return write(base_entry(l, wall, wid), WriteKind::acquire,
                     "lease free; epoch " + std::to_string(l.epoch));
      }
      if (heartbeat_due(doc, local, now)) {
        Local l = local;
        l.message = v.reason;
        return write(base_entry(l, wall, wid), WriteKind::heartbeat, v.reason);
      }
      return none(WaitReason::may_not_acquire, v.reason);
    }
    case State::upgrading:
    case State::verifying: return holder_action(doc, local, now, wall, wid);
    case State::failed:
    case State::rolledback: {
      // A newer version is published: the halt was for the old one (§1 goal 4).
      if (has_target && local.target != mine->target_version)
        return write(base_entry(with(State::preparing, "preparing " + local.target), wall, wid),
                     WriteKind::prepare, "new target " + local.target);
      if (heartbeat_due(doc, local, now))
        return write(base_entry(local, wall, wid), WriteKind::heartbeat, "heartbeat");
      return none(WaitReason::halted,
                  std::string("halted: ") + to_string(local.state) + ": " + local.message);
    }
  }
  return {};
}

Action Coordinator::holder_action(const GroupDocument& doc, const Local& local, Mono now, const Wall& wall,
                                  const std::string& wid) const {
  auto write = [&](const Local& l, WriteKind what, std::string reason) {
    return Action{ActionKind::write, base_entry(l, wall, wid), what, WaitReason::none, std::move(reason)};
  };
  auto act = [](ActionKind kind, WaitReason why, std::string reason) {
    return Action{kind, {}, WriteKind::heartbeat, why, std::move(reason)};
  };
  auto fenced = [&](const std::string& why) {
    Local l = local;
    if (local.step_running) {
      // §4.4: a step already running is not undone by a fence; until it ends we
      // stay upgrading, without a lease, and count as disrupted.
      l.state = State::upgrading;
      l.leaseless = true;
      l.message = why + "; " + begun_step(local.progress) + " still running";
      return write(l, WriteKind::fenced, l.message);
    }
    l.state = State::waiting;
    l.leaseless = false;
    l.message = why;
    if (l.waiting_since.empty()) l.waiting_since = format_time(wall);
    return write(l, WriteKind::fenced, why);
  };

  if (local.leaseless) {
    if (local.step_running) {
      if (heartbeat_due(doc, local, now)) return write(local, WriteKind::heartbeat, local.message);
      return act(ActionKind::none, WaitReason::step_running, local.message);
    }
    // §4.4: only when the step has ended does a fenced member queue again; what it
    // did stays in `progress` and is finished under its next lease.
    Local l = local;
    l.state = State::waiting;
    l.leaseless = false;
    l.message = "fenced earlier; the step has ended, waiting for the lease again";
    l.waiting_since = format_time(wall);
    return write(l, WriteKind::wait, l.message);
  }

  // Anyone with a higher epoch and a live lease has superseded us (§4.4).
  for (const auto& [node, e] : doc.entries) {
    if (node != self_ && e.epoch > local.epoch && lease_live(node, e, now))
      return fenced("fenced by " + node + " holding epoch " + std::to_string(e.epoch));
  }
  const bool lost = !local.last_renew || now - *local.last_renew >= timing_.lease_duration;
  const bool renew_due =
      !local.last_renew || now - *local.last_renew >= std::min(timing_.renew_period(), timing_.heartbeat);
  if (renew_due) {
    if (lost) {
      // A lease we could not renew for a whole duration (or a restarted process's)
      // is taken again only where a fresh acquisition would not exceed maxConcurrent.
      if (disrupted_others(doc, now) >= doc.settings.max_concurrent)
        return fenced("lease lost while another member holds one or is inside a step");
    }
    return write(local, WriteKind::renew,
                 lost ? "renewing a lease not renewed for a whole duration" : "renew");
  }
  if (local.job_running) return act(ActionKind::none, WaitReason::step_running, local.message);

  const NextStep next = next_step(local.progress);
  switch (next.step) {
    case ActionKind::install: return act(ActionKind::install, WaitReason::none, "installing " + local.target);
    case ActionKind::restart:
      return act(ActionKind::restart, WaitReason::none, "restarting the agent at " + local.target);
    case ActionKind::check_health:
      if (local.state == State::upgrading) {
        Local l = local;
        l.state = State::verifying;
        l.message = "verifying " + local.target;
        return write(l, WriteKind::verify, "restarted; verifying");
      }
      return act(ActionKind::check_health, WaitReason::none, "checking health of " + local.target);
    case ActionKind::rollback:
      return act(ActionKind::rollback, WaitReason::none, "rolling back to " + local.previous_version);
    default: break;
  }
  // §4.5: the upgrade has ended; release the lease in the state it ended in.
  Local l = local;
  l.state = next.ends_in;
  switch (next.ends_in) {
    case State::succeeded:
      l.version = local.target;
      l.message = "upgraded to " + local.target;
      return write(l, WriteKind::release, "upgrade succeeded");
    case State::rolledback:
      l.version = local.previous_version;
      return write(l, WriteKind::release, "rolled back: " + local.message);
    default: return write(l, WriteKind::release, "failed: " + local.message);
  }
}

AloneAction Coordinator::decide_alone(const Local& local) {
  AloneAction a;
  auto transition = [&](Local l, std::optional<MgmtStatus> report = {}, std::string error = {}) {
    a.next = std::move(l);
    a.report = report;
    a.report_error = std::move(error);
    return a;
  };
  const bool halted = is_halting(local.state) && local.failed_target == local.target;
  // An upgrade in flight is finished first: when agentd upgrades itself, the
  // restarted process already runs the target and still has to check its health.
  const bool up_to_date =
      (local.target.empty() || local.target == local.version) && local.progress == Progress::none;
  if (up_to_date || halted) {
    if (local.state != State::idle && local.state != State::succeeded && !halted &&
        local.progress == Progress::none) {
      Local l = local;
      l.state = State::idle;
      return transition(std::move(l));
    }
    a.wait = halted ? WaitReason::halted : WaitReason::up_to_date;
    a.reason = halted ? "upgrade to " + local.target + " failed: " + local.message
                      : "not in an HA group; up to date at " + local.version;
    return a;
  }
  if (local.state == State::idle || local.state == State::succeeded || is_halting(local.state)) {
    Local l = local;
    l.state = State::preparing;
    l.prepared = false;
    l.failed_target.clear();
    return transition(std::move(l), MgmtStatus::download_started);
  }
  if (local.state == State::preparing) {
    if (local.verification_failed) {
      Local l = local;
      l.state = State::failed;
      l.failed_target = local.target;
      a.stop = true;
      return transition(std::move(l), MgmtStatus::failed, local.message);
    }
    if (!local.prepared) {
      a.kind = ActionKind::prepare;
      return a;
    }
    Local l = local;
    l.state = State::upgrading;  // no lease: nobody to coordinate with
    l.previous_version = local.version;
    return transition(std::move(l));
  }
  const NextStep next = next_step(local.progress);
  if (next.step != ActionKind::none) {
    a.kind = next.step;
    return a;
  }
  Local l = local;
  l.state = next.ends_in;
  l.progress = Progress::none;
  l.prepared = false;
  a.released = true;
  a.stop = true;
  switch (next.ends_in) {
    case State::succeeded:
      l.version = local.target;
      l.message = "upgraded to " + local.target;
      return transition(std::move(l), MgmtStatus::successful);
    case State::rolledback:
      l.failed_target = local.target;
      return transition(std::move(l), MgmtStatus::rollback_successful, local.message);
    default:
      l.failed_target = local.target;
      return transition(std::move(l), MgmtStatus::rollback_failed, local.message);
  }
}

Mono Coordinator::poll_interval(const GroupDocument& doc, const Local& local, Mono now) const {
  // §5: fast while waiting at the head or holding; slower in an active rollout;
  // a quiet group is read on a change notice or every idleHeartbeatSeconds.
  if (holds_lease(local.state)) return timing_.fast_poll;
  // Waiters poll faster the nearer they are to the head, whatever else blocks them:
  // the first three at the fast poll, a waiter p places back every (p - 1) fast
  // polls, up to the slow poll. Each place ahead is a whole turn (acquire, install,
  // release) and a turn takes at least a fast poll, so a waiter reads again before
  // the holder just ahead of it can release: short installs hand off within a fast
  // poll too, not a slow poll late (a fixed fast head of two was passed by turns
  // shorter than the slow poll). A quiet group has no waiters: its cost is unchanged.
  if (local.state == State::waiting) {
    int pos = queue_position(doc, local, now);
    if (pos < 0) return timing_.poll;
    // The head acquires next: it sees the release half a fast poll sooner on average
    // (issue goal: a median handoff <= 1 s at the 2 s fast poll), for about one extra
    // conditional read per fast poll of each turn, from one member.
    if (pos == 0) return std::max(timing_.fast_poll / 2, Mono{1});
    return std::clamp(std::max(pos - 1, 1) * timing_.fast_poll, timing_.fast_poll,
                      std::max(timing_.poll, timing_.fast_poll));
  }
  if (rollout_active(doc)) return timing_.poll;
  return timing_.idle_heartbeat;
}

}  // namespace agentd
