#include "sim/sim.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <vector>

#include "agentd/backoff.h"
#include "agentd/coordinator.h"
#include "agentd/member.h"
#include "check/invariants.h"
#include "upgrade/state_file.h"

namespace agentd::sim {

namespace {

// protocol.md §5 scaled down: the ratios matter, not the seconds.
constexpr Timing kTiming{Mono{30'000}, Mono{5'000}, Mono{60'000}, Mono{1'000}, Mono{3'000}};
constexpr std::int64_t kLeaseSeconds = 30;
// The timeout of a detached install or rollback (upgrade/detached.h): no run lasts longer.
constexpr Mono kStepTimeout{60'000};
const std::string kGroup = "g";
const std::string kFirst = "1.0.0";
const Wall kWallOrigin{std::chrono::seconds{1'795'000'000}};

std::string secs(Mono t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%" PRId64 ".%03" PRId64 "s", static_cast<std::int64_t>(t.count() / 1000),
                static_cast<std::int64_t>(t.count() % 1000));
  return buf;
}

bool is_step(ActionKind k) {
  return k == ActionKind::install || k == ActionKind::restart || k == ActionKind::rollback;
}

// The chance of each fault in one schedule: drawn from the seed, so some
// schedules are calm and some are storms.
struct Faults {
  double read_fail = 0;      // 5xx or a dead connection on a read
  double stale_read = 0;     // the answer reflects the hub up to 2 s ago (latency)
  double write_lost = 0;     // not committed: 5xx or connection refused
  double lost_after = 0;     // committed, the answer lost (transport error)
  double resend_412 = 0;     // committed, the connection reset, the re-sent copy gets 412
  double http5xx_after = 0;  // committed, then a proxy answers 5xx
  double kill_in_write = 0;  // the member dies before sending, or after the commit
  double kill_at_step = 0;   // the member dies after recording a step as begun
  double install_fails = 0;  // per node and target
  double health_fails = 0;
  double rollback_fails = 0;
  double verification_fails = 0;
  double prepare_retry = 0;
  int kills = 0, partitions = 0, hub_outages = 0, admin_actions = 0, joins = 0, leaves = 0, wall_jumps = 0;
  bool skewed = false;            // wall clocks hours apart
  bool second_release = false;    // a newer version is published during the rollout
  bool group_conditions = false;  // the hub ignores If-Match-Scope: entry (checks the whole group)
};

struct Snapshot {
  Mono t;
  GroupDocument doc;
};

// The store of protocol.md §3: one group, a hub-wide revision counter, If-Match.
struct Hub {
  GroupDocument doc;
  std::int64_t counter = 0;
  std::map<std::string, Mono> written_at;              // hub time of each entry's last write (I1, I3)
  std::map<std::string, bool> by_admin;                // that write was an admin's
  std::map<std::string, std::int64_t> entry_revision;  // when each entry last changed (If-Match-Scope)
  std::deque<Snapshot> history;                        // for answers that left the hub a while ago
  std::vector<check::HubWrite> log;                    // the write log the checker reads
  Mono down_until{0};
};

// One disruptive step (or health check) as it runs on the machine: outside the
// agentd process (upgrade/detached.h), so it outlives a killed member.
struct Run {
  Mono begin{0}, end{0};
  bool ok = true;
  std::int64_t epoch = 0;
  ActionKind kind = ActionKind::none;
  std::string target, previous;
};

struct Proc {
  Proc(const std::string& id, std::uint64_t seed) : coord(id, kTiming), rng(seed) {}
  Coordinator coord;
  std::mt19937_64 rng;
  PersistedState ps;
  std::optional<GroupDocument> doc;
  Mono next_read{0};
  Mono doc_read_at{-1};
  std::int64_t written_revision = 0;  // Daemon::written_revision_
  bool force_read = true;
  int conflicts = 0;
  Mono retry_prepare{0};
  struct Job {
    ActionKind kind = ActionKind::none;
    Mono end{0};
    bool ok = true;
    std::string key;  // the machine's run this job waits for ("" for prepare / health)
    std::string target;
  };
  std::optional<Job> job;
};

struct Node {
  std::string id;
  std::string installed = kFirst, running = kFirst;
  // What the state file holds: written at each persist (the struct; the JSON
  // text only when a process reads it back, which is what a restart sees).
  std::optional<PersistedState> persisted;
  Mono wall_offset{0};
  bool member = true;          // false once removed: no longer part of the group's invariants
  std::unique_ptr<Proc> proc;  // null while killed
  Mono restart_at{0};
  Mono partitioned_until{0};
  Mono last_contact{0};                 // when its last request reached the hub (answers are never older)
  Mono plan_at{0};                      // when this member's refresh_plan sees the current release
  std::map<std::string, Run> runs;      // by "install 2.0.0": what the run directory holds
  std::map<std::string, bool> failing;  // "install 2.0.0" -> the step fails (drawn once)
  std::uint64_t wake_gen = 0;
  std::set<std::string> sent;  // every writeId its members' processes sent (protocol.md §4.6)
};

struct Event {
  Mono t;
  std::uint64_t seq;
  int kind;  // see Sim::fire
  std::size_t node;
  std::uint64_t gen;
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

enum EventKind { ev_wake, ev_fault, ev_restart, ev_run_end };

class Sim {
 public:
  Sim(std::uint64_t seed, const Options& o) : rng_(seed), opt_(o) {}
  Result run();

 private:
  // ---- randomness
  double uni() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  bool chance(double p) { return p > 0 && uni() < p; }
  std::int64_t between(std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_);
  }
  Mono ms(std::int64_t lo, std::int64_t hi) { return Mono{between(lo, hi)}; }

  void trace(const std::string& who, const std::string& what) {
    if (opt_.trace) std::printf("%10s %-4s %s\n", secs(now_).c_str(), who.c_str(), what.c_str());
  }
  void fault(const std::string& kind, const std::string& who, const std::string& what) {
    ++result_.faults[kind];
    if (opt_.trace) trace(who, "FAULT " + kind + ": " + what);
  }
  void violate(const std::string& inv, const std::string& text) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.violation = inv + " t=" + secs(now_) + ": " + text;
    trace("!!", result_.violation);
  }

  void schedule(Mono t, int kind, std::size_t node, std::uint64_t gen = 0) {
    queue_.push(Event{std::max(t, now_), seq_++, kind, node, gen});
  }
  void wake(std::size_t i, Mono t) { schedule(t, ev_wake, i, nodes_[i].wake_gen); }

  // ---- set-up
  void draw_faults();
  void add_node(bool initial);
  Wall wall(const Node& n) const { return kWallOrigin + now_ + n.wall_offset; }
  bool reachable(const Node& n) const { return now_ >= hub_.down_until && now_ >= n.partitioned_until; }

  // ---- the hub (protocol.md §3)
  void commit(const std::string& op, const std::string& actor, const std::string& node);
  std::optional<GroupDocument> hub_read(Node& n);
  agentd::Result<std::int64_t> hub_write(std::size_t i, const Entry& e, std::int64_t if_revision,
                                         WriteCondition condition);

  // ---- a member process: Daemon::tick's grouped part, same order
  void start_proc(std::size_t i);
  void kill(std::size_t i, const std::string& why);
  void persist(Node& n) { n.persisted = n.proc->ps; }
  void tick(std::size_t i);
  void refresh_plan(Node& n);
  bool read_group(Node& n, bool force);
  void resolve(Node& n);
  void grouped_tick(std::size_t i);
  WriteOutcome write(std::size_t i, const Action& a);
  bool begin_step(std::size_t i, ActionKind kind);
  void start_job(std::size_t i, ActionKind kind);
  void finish_job(std::size_t i);
  Mono next_wake(const Node& n) const;

  // ---- faults and admin (protocol.md §6)
  void random_fault();
  void admin_action();
  void heal();

  // ---- invariants (protocol.md §7)
  void check_i1_i2(const std::map<std::string, Entry>& before);
  void check_step_begin(std::size_t i, ActionKind kind);
  bool converged() const;
  std::optional<std::string> halted() const;
  void final_checks();

  std::mt19937_64 rng_;
  Options opt_;
  Faults f_;
  Result result_;
  Hub hub_;
  std::vector<Node> nodes_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::uint64_t seq_ = 0;
  Mono now_{0};
  std::string release_;  // the version the plan names now
  Mono faults_until_{0};
  bool healed_ = false;
  // maxConcurrent as the invariants judge it: an admin who lowers it does not end
  // the leases and steps already under way (protocol.md §6), so the old value holds
  // until they have surely ended.
  std::int64_t allowed_ = 1;
  Mono allowed_until_{0};
  std::int64_t allowed() const {
    return now_ < allowed_until_ ? std::max(allowed_, hub_.doc.settings.max_concurrent)
                                 : hub_.doc.settings.max_concurrent;
  }
  std::int64_t max_epoch_ = 0;
  bool any_acquisition_ = false;
};

void Sim::draw_faults() {
  auto level = [&](double hi) {
    switch (between(0, 3)) {
      case 0: return 0.0;
      case 1: return hi / 10;
      case 2: return hi / 3;
      default: return hi;
    }
  };
  f_.read_fail = level(0.3);
  f_.stale_read = level(0.5);
  f_.write_lost = level(0.2);
  f_.lost_after = level(0.2);
  f_.resend_412 = level(0.3);
  f_.http5xx_after = level(0.1);
  f_.kill_in_write = level(0.05);
  f_.kill_at_step = level(0.05);
  f_.install_fails = level(0.04);
  f_.health_fails = level(0.04);
  f_.rollback_fails = level(0.2);
  f_.verification_fails = level(0.01);
  f_.prepare_retry = level(0.3);
  f_.kills = static_cast<int>(between(0, 6));
  f_.partitions = static_cast<int>(between(0, 4));
  f_.hub_outages = static_cast<int>(between(0, 2));
  f_.admin_actions = static_cast<int>(between(0, 6));
  f_.joins = static_cast<int>(between(0, 2));
  f_.leaves = static_cast<int>(between(0, 1));
  f_.wall_jumps = static_cast<int>(between(0, 3));
  f_.skewed = chance(0.5);
  f_.second_release = chance(0.2);
  f_.group_conditions = chance(0.25);
}

void Sim::add_node(bool initial) {
  Node n;
  n.id = "n" + std::to_string(nodes_.size() + 1);
  if (f_.skewed) n.wall_offset = Mono{between(-6 * 3600, 6 * 3600) * 1000 + between(0, 999)};
  n.plan_at = now_ + ms(0, 8'000);
  nodes_.push_back(std::move(n));
  std::size_t i = nodes_.size() - 1;
  hub_.doc.members.push_back(nodes_[i].id);
  if (!initial) commit("members", "admin", "");
  start_proc(i);
}

// ---- the hub ------------------------------------------------------------------

void Sim::commit(const std::string& op, const std::string& actor, const std::string& node) {
  std::map<std::string, Entry> before =
      hub_.log.empty() ? std::map<std::string, Entry>{} : hub_.log.back().entries;
  hub_.doc.revision = ++hub_.counter;
  // The entries this change touched; settings touch none.
  if (op == "members") {
    for (const auto& m : hub_.doc.members) hub_.entry_revision[m] = hub_.doc.revision;
  } else if (op != "settings") {
    hub_.entry_revision[node] = hub_.doc.revision;
  }
  hub_.history.push_back({now_, hub_.doc});
  while (hub_.history.size() > 1 && hub_.history[1].t <= now_ - Mono{2'000}) hub_.history.pop_front();
  check::HubWrite w;
  w.seq = static_cast<std::int64_t>(hub_.log.size()) + 1;
  w.t_us =
      std::chrono::duration_cast<std::chrono::microseconds>((kWallOrigin + now_).time_since_epoch()).count();
  w.org = "o";
  w.group = kGroup;
  w.revision = hub_.doc.revision;
  w.op = op;
  w.actor = actor;
  w.node = node;
  w.members = hub_.doc.members;
  w.settings = hub_.doc.settings;
  w.entries = hub_.doc.entries;
  hub_.log.push_back(std::move(w));
  check_i1_i2(before);
}

std::optional<GroupDocument> Sim::hub_read(Node& n) {
  if (!reachable(n)) return std::nullopt;
  if (chance(f_.read_fail)) {
    fault("read-5xx", n.id, "read fails");
    return std::nullopt;
  }
  Mono asked = n.last_contact;
  n.last_contact = now_;
  if (hub_.history.size() > 1 && chance(f_.stale_read)) {
    // The answer left the hub a while ago (latency): a write committed since is
    // not in it. It was asked after this member's previous exchange with the hub,
    // so it shows at least what that exchange did.
    std::size_t k = static_cast<std::size_t>(between(0, static_cast<std::int64_t>(hub_.history.size()) - 2));
    if (hub_.history[k + 1].t > asked && hub_.history[k + 1].t > now_ - Mono{2'000}) {
      fault("stale-read", n.id, "answer from revision " + std::to_string(hub_.history[k].doc.revision));
      return hub_.history[k].doc;
    }
  }
  return hub_.doc;
}

agentd::Result<std::int64_t> Sim::hub_write(std::size_t i, const Entry& e, std::int64_t if_revision,
                                            WriteCondition condition) {
  Node& n = nodes_[i];
  if (!reachable(n)) return fail(Errc::transport, "unreachable");
  n.last_contact = now_;
  if (chance(f_.write_lost)) {
    fault("write-lost", n.id, "not committed");
    return fail(Errc::http, "503", 503);
  }
  if (!hub_.doc.is_member(n.id)) return fail(Errc::forbidden, "not a member", 403);
  // protocol.md §3 (amended): an entry-conditioned write is stale only when its
  // own entry changed after if_revision.
  const bool entry_scope = condition == WriteCondition::entry && !f_.group_conditions;
  const std::int64_t changed = entry_scope ? hub_.entry_revision[n.id] : hub_.doc.revision;
  if (entry_scope ? changed > if_revision || if_revision > hub_.doc.revision : if_revision != changed)
    return fail(Errc::conflict, "412", 412);
  hub_.doc.entries[n.id] = e;
  hub_.written_at[n.id] = now_;
  hub_.by_admin[n.id] = false;
  commit("write_entry", n.id, n.id);
  if (chance(f_.kill_in_write)) {
    fault("kill-after-commit", n.id, "dies before the answer");
    kill(i, "after commit");
    return fail(Errc::transport, "killed");
  }
  if (chance(f_.lost_after)) {
    fault("answer-lost", n.id, "committed, answer lost");
    return fail(Errc::transport, "connection reset");
  }
  if (chance(f_.resend_412)) {
    fault("resend-412", n.id, "committed, re-sent copy answered 412");
    return fail(Errc::conflict, "412 to the re-sent copy", 412);
  }
  if (chance(f_.http5xx_after)) {
    fault("5xx-after-commit", n.id, "committed, answered 502");
    return fail(Errc::http, "502", 502);
  }
  return hub_.doc.revision;
}

// ---- a member process -----------------------------------------------------------

void Sim::start_proc(std::size_t i) {
  Node& n = nodes_[i];
  n.proc = std::make_unique<Proc>(n.id, rng_());
  Proc& p = *n.proc;
  if (n.persisted) {
    auto loaded = state_from_json(state_to_json(*n.persisted));
    if (!loaded) {
      violate("state", n.id + ": state file unreadable: " + loaded.error().describe());
      return;
    }
    p.ps = std::move(*loaded);
  } else {
    p.ps.group = kGroup;
  }
  // Daemon::start: a step an earlier process began may still run; the running
  // version comes from the machine.
  process_started(p.ps.local, now_, kStepTimeout);
  p.ps.local.version = n.running;
  persist(n);
  ++n.wake_gen;
  trace(n.id, "start: " + std::string(to_string(p.ps.local.state)) + " progress " +
                  to_string(p.ps.local.progress) + " epoch " + std::to_string(p.ps.local.epoch));
  wake(i, now_);
}

void Sim::kill(std::size_t i, const std::string& why) {
  Node& n = nodes_[i];
  if (!n.proc) return;
  trace(n.id, "killed (" + why + ")");
  n.proc.reset();
  ++n.wake_gen;
  n.restart_at = now_ + ms(0, 20'000);
  schedule(n.restart_at, ev_restart, i);
}

void Sim::refresh_plan(Node& n) {
  // Daemon::refresh_plan: a release in flight keeps its target.
  if (now_ < n.plan_at || release_.empty()) return;
  Local& l = n.proc->ps.local;
  if (!holds_lease(l.state) && l.progress == Progress::none && l.target != release_) {
    l.target = release_;
    l.prepared = false;
    l.verification_failed = false;
    persist(n);
  }
}

bool Sim::read_group(Node& n, bool force) {
  Proc& p = *n.proc;
  if (!force && !p.force_read && now_ < p.next_read) return p.doc.has_value();
  auto d = hub_read(n);
  if (!d) {
    p.next_read = now_ + std::max(kTiming.poll, Mono{500});
    p.doc.reset();
    return false;
  }
  p.force_read = false;
  p.doc_read_at = now_;
  p.doc = std::move(*d);
  p.coord.observe(*p.doc, now_);
  note_job(p.ps.local, p.job.has_value(), p.job && is_step(p.job->kind), now_);
  p.next_read = now_ + p.coord.poll_interval(*p.doc, p.ps.local, now_);
  return true;
}

void Sim::tick(std::size_t i) {
  Node& n = nodes_[i];
  finish_job(i);
  if (!n.proc) return;
  refresh_plan(n);
  grouped_tick(i);
  if (n.proc) wake(i, next_wake(n));
}

void Sim::resolve(Node& n) {
  Proc& p = *n.proc;
  if (p.ps.pending_write_id.empty() || !p.doc) return;
  Landed effects;
  if (auto e = resolve_pending(p.ps, *p.doc, n.id, &effects)) {
    p.ps.local.heartbeat_jitter_permille =
        std::uniform_int_distribution<int>(0, kMaxHeartbeatJitterPermille)(p.rng);  // Daemon::report
    trace(n.id, "write-recovered " + std::string(to_string(e->state)) + " epoch " + std::to_string(e->epoch));
  }
  persist(n);
}

void Sim::grouped_tick(std::size_t i) {
  Node& n = nodes_[i];
  Proc& p = *n.proc;
  const Mono pass = now_;
  bool reread = false;
  if (!read_group(n, false)) return;
  resolve(n);
  for (int step = 0; step < kMaxDecisionsPerPass; ++step) {
    Local& l = p.ps.local;
    note_job(l, p.job.has_value(), p.job && is_step(p.job->kind), now_);
    char wid[33];
    std::snprintf(wid, sizeof wid, "%016" PRIx64 "%016" PRIx64, static_cast<std::uint64_t>(p.rng()),
                  static_cast<std::uint64_t>(p.rng()));
    Action a = p.coord.decide(*p.doc, l, now_, wall(n), wid);
    switch (a.kind) {
      case ActionKind::none: return;
      case ActionKind::adopt: {
        // protocol.md §4.6: an entry that carries a writeId we sent is our own write.
        if (n.sent.contains(a.entry.write_id))
          violate("§4.6", n.id + " takes its own write " + a.entry.write_id + " (" +
                              to_string(a.entry.state) + " epoch " + std::to_string(a.entry.epoch) +
                              ") for someone else's");
        Adopted ad = adopt_entry(l, a.entry);
        trace(n.id, "adopt " + std::string(to_string(a.entry.state)) +
                        (ad.fenced ? " (fenced: " + ad.reason + ")" : ""));
        persist(n);
        continue;
      }
      case ActionKind::write: {
        // Daemon::grouped_tick: a copy read before this pass is read again first.
        if (p.doc_read_at < pass && !reread) {
          reread = true;
          if (!read_group(n, true)) return;
          resolve(n);
          continue;
        }
        WriteOutcome w = write(i, a);
        if (!n.proc) return;
        if (w == WriteOutcome::landed) continue;
        if (w == WriteOutcome::conflict) {
          Mono delay = conflict_delay(p.ps.local, p.conflicts, p.rng);
          ++p.conflicts;
          p.doc.reset();
          p.next_read = now_ + delay;
          p.force_read = delay == Mono{0};
        }
        return;
      }
      case ActionKind::prepare:
        if (now_ < p.retry_prepare) return;
        start_job(i, a.kind);
        return;
      case ActionKind::check_health: start_job(i, a.kind); return;
      case ActionKind::install:
      case ActionKind::restart:
      case ActionKind::rollback:
        if (!begin_step(i, a.kind)) {
          if (!n.proc || !p.doc) return;
          continue;
        }
        return;
    }
  }
}

WriteOutcome Sim::write(std::size_t i, const Action& a) {
  Node& n = nodes_[i];
  Proc& p = *n.proc;
  Mono sent = now_;
  p.ps.pending_write_id = a.entry.write_id;
  n.sent.insert(a.entry.write_id);
  persist(n);  // protocol.md §4.2: persist before every write
  if (chance(f_.kill_in_write / 2)) {
    fault("kill-before-send", n.id, std::string(to_string(a.what)) + " persisted, never sent");
    kill(i, "before send");
    return WriteOutcome::unknown;
  }
  const WriteCondition condition = write_condition(a.entry);
  auto r = hub_write(i, a.entry, if_match_revision(*p.doc, p.written_revision, condition), condition);
  if (!n.proc) return WriteOutcome::unknown;
  if (!r) {
    WriteOutcome outcome = classify_write_error(r.error().code);
    write_not_answered(p.ps, outcome);
    trace(n.id, std::string(to_string(a.what)) + " " + to_string(a.entry.state) + " -> " + r.error().message);
    if (outcome == WriteOutcome::conflict) return outcome;
    if (outcome == WriteOutcome::refused) {
      persist(n);
      p.next_read = sent + std::max(kTiming.poll, Mono{1000});
      p.doc.reset();
      return outcome;
    }
    p.force_read = true;
    p.next_read = sent + Mono{200};
    return outcome;
  }
  p.conflicts = 0;
  (void)land_answered_write(p.ps, *p.doc, n.id, a.entry, *r, sent, condition);
  p.written_revision = *r;
  if (condition == WriteCondition::entry) p.doc_read_at = Mono{-1};  // Daemon::write
  p.ps.local.heartbeat_jitter_permille =
      std::uniform_int_distribution<int>(0, kMaxHeartbeatJitterPermille)(p.rng);  // Daemon::report
  persist(n);
  p.coord.observe(*p.doc, sent);
  p.next_read =
      std::min(p.next_read, sent + p.coord.poll_interval(*p.doc, p.ps.local, sent));  // Daemon::write
  if (!routine(a.what))
    trace(n.id, std::string(to_string(a.what)) + " " + to_string(a.entry.state) + " epoch " +
                    std::to_string(a.entry.epoch) + " rev " + std::to_string(*r) +
                    (a.entry.lease_duration_seconds ? " lease" : "") + ": " + a.reason);
  return WriteOutcome::landed;
}

bool Sim::begin_step(std::size_t i, ActionKind kind) {
  Node& n = nodes_[i];
  Proc& p = *n.proc;
  // protocol.md §4.4: re-read immediately before each disruptive step.
  if (!read_group(n, true)) return false;
  Verdict v = p.coord.fence(*p.doc, p.ps.local, now_);
  if (!v.ok) {
    trace(n.id, "fence before " + std::string(to_string(kind)) + ": " + v.reason);
    return false;
  }
  start_job(i, kind);
  return n.proc != nullptr;
}

void Sim::start_job(std::size_t i, ActionKind kind) {
  Node& n = nodes_[i];
  Proc& p = *n.proc;
  Local& l = p.ps.local;
  Proc::Job job;
  job.kind = kind;
  job.target = l.target;
  switch (kind) {
    case ActionKind::prepare: {
      job.end = now_ + ms(500, 8'000);
      bool bad = chance(f_.verification_fails);
      job.ok = !bad && !chance(f_.prepare_retry);
      job.key = bad ? "verification" : "";
      break;
    }
    case ActionKind::check_health: job.end = now_ + ms(3'000, 6'000); break;
    case ActionKind::install: l.progress = Progress::install_begun; break;
    case ActionKind::restart: l.progress = Progress::restart_begun; break;
    case ActionKind::rollback: l.progress = Progress::rollback_begun; break;
    default: return;
  }
  persist(n);  // the step is recorded as begun before it begins
  if (is_step(kind)) {
    if (chance(f_.kill_at_step)) {
      fault("kill-at-step", n.id, std::string(to_string(kind)) + " recorded as begun, not started");
      kill(i, "at step");
      return;
    }
    // upgrade/detached.h: a run started by an earlier process is waited for, not repeated.
    job.key = std::string(to_string(kind)) + " " + l.target;
    auto it = n.runs.find(job.key);
    if (it == n.runs.end()) {
      Run r;
      r.begin = now_;
      Mono d = kind == ActionKind::install   ? ms(1'000, 45'000)
               : kind == ActionKind::restart ? ms(500, 2'500)
                                             : ms(1'000, 20'000);
      r.end = now_ + d;
      auto failing = [&](double chance_of) {
        auto [f, fresh] = n.failing.try_emplace(job.key, false);
        if (fresh) f->second = chance(chance_of);
        return f->second;
      };
      r.ok = kind == ActionKind::install    ? !failing(f_.install_fails)
             : kind == ActionKind::rollback ? !failing(f_.rollback_fails)
                                            : true;
      r.epoch = l.epoch;
      r.kind = kind;
      r.target = l.target;
      r.previous = l.previous_version;
      check_step_begin(i, kind);
      schedule(r.end, ev_run_end, i);
      it = n.runs.emplace(job.key, r).first;
      trace(n.id,
            "STEP " + job.key + " begins, epoch " + std::to_string(l.epoch) + ", ends at " + secs(r.end));
    } else {
      trace(n.id, "STEP " + job.key + " resumed (started by an earlier process)");
    }
    job.end = it->second.end;
    job.ok = it->second.ok;
  }
  l.job_running = true;
  l.step_running = is_step(kind);
  p.job = job;
  schedule(job.end, ev_wake, i, n.wake_gen);
}

void Sim::finish_job(std::size_t i) {
  Node& n = nodes_[i];
  Proc& p = *n.proc;
  if (!p.job || now_ < p.job->end) return;
  Proc::Job job = *p.job;
  p.job.reset();
  Local& l = p.ps.local;
  l.job_running = false;
  l.step_running = false;
  if (is_step(job.kind)) n.runs.erase(job.key);  // its result is taken: the run directory is done
  trace(n.id, std::string("job ") + to_string(job.kind) + (job.ok ? " ok" : " failed"));
  if (job.kind == ActionKind::prepare && job.target != l.target) return;
  // Daemon::finish_job, same transitions.
  switch (job.kind) {
    case ActionKind::prepare:
      if (job.ok) {
        l.prepared = true;
      } else if (job.key == "verification") {
        l.verification_failed = true;
        l.message = "artifact failed verification";
      } else {
        l.message = "prepare failed";
        p.retry_prepare = now_ + full_jitter(3, Mono{1000}, Mono{60'000}, p.rng) + Mono{1000};
      }
      break;
    case ActionKind::install:
      l.progress = job.ok ? Progress::installed : Progress::failed;
      if (!job.ok) l.message = "install of " + l.target + " failed";
      break;
    case ActionKind::restart: l.progress = job.ok ? Progress::restarted : Progress::failed; break;
    case ActionKind::check_health: {
      auto [f, fresh] = n.failing.try_emplace("health " + l.target, false);
      if (fresh) f->second = chance(f_.health_fails);
      if (n.running == l.target && !f->second) {
        l.progress = Progress::healthy;
      } else {
        l.progress = Progress::failed;
        l.message = "health check of " + l.target + " failed (running " + n.running + ")";
      }
      break;
    }
    case ActionKind::rollback:
      if (job.ok) {
        l.progress = Progress::rolled_back;
        l.version = n.running;
      } else {
        l.progress = Progress::rollback_failed;
        l.message += "; rollback failed";
      }
      break;
    default: break;
  }
  persist(n);
  p.force_read = true;
}

Mono Sim::next_wake(const Node& n) const {
  const Proc& p = *n.proc;
  Mono w = p.next_read;
  if (now_ < n.plan_at) w = std::min(w, n.plan_at);
  if (p.retry_prepare > now_) w = std::min(w, p.retry_prepare);
  if (p.job) w = std::min(w, p.job->end);
  const Local& l = p.ps.local;
  if (l.last_write && p.doc) {
    Mono hb = holds_lease(l.state)                  ? std::min(kTiming.renew_period(), kTiming.heartbeat)
              : Coordinator::rollout_active(*p.doc) ? Coordinator::jittered(kTiming.heartbeat, l)
                                                    : kTiming.idle_heartbeat;
    w = std::min(w, *l.last_write + hb);
  }
  return std::max(w, now_ + Mono{10});  // Daemon::run's floor
}

// ---- faults and admin ---------------------------------------------------------------

void Sim::random_fault() {
  std::vector<std::size_t> live;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].member) live.push_back(i);
  if (live.empty()) return;
  std::size_t i = live[static_cast<std::size_t>(between(0, static_cast<std::int64_t>(live.size()) - 1))];
  Node& n = nodes_[i];
  switch (between(0, 6)) {
    case 0:
      if (f_.kills-- > 0 && n.proc) {
        fault("kill", n.id, "kill -9");
        kill(i, "kill -9");
      }
      break;
    case 1:
      if (f_.partitions-- > 0) {
        n.partitioned_until = now_ + ms(2'000, 90'000);
        fault("partition", n.id, "until " + secs(n.partitioned_until));
      }
      break;
    case 2:
      if (f_.hub_outages-- > 0) {
        hub_.down_until = now_ + ms(1'000, 60'000);
        fault("hub-down", "hub", "until " + secs(hub_.down_until));
      }
      break;
    case 3:
      if (f_.admin_actions-- > 0) admin_action();
      break;
    case 4:
      if (f_.joins-- > 0 && nodes_.size() < 9) {
        fault("join", "hub", "a new member joins");
        add_node(false);
      }
      break;
    case 5:
      if (f_.leaves-- > 0 && live.size() > 2) {
        fault("leave", n.id, "removed from the group");
        n.member = false;
        std::erase(hub_.doc.members, n.id);
        hub_.doc.entries.erase(n.id);
        commit("members", "admin", "");
        // Out of the group it coordinates no more (Daemon::refresh_node); its
        // machine finishes what runs.
        n.proc.reset();
        ++n.wake_gen;
      }
      break;
    case 6:
      if (f_.wall_jumps-- > 0) {
        n.wall_offset += Mono{between(-3 * 3600, 3 * 3600) * 1000};
        fault("wall-jump", n.id, "wall clock jumps");
      }
      break;
  }
}

void Sim::admin_action() {
  std::vector<std::string> ids;
  ids.reserve(hub_.doc.entries.size());
  for (const auto& [id, e] : hub_.doc.entries) ids.push_back(id);
  auto pick_state = [&](auto pred) -> std::string {
    std::vector<std::string> c;
    for (const auto& [id, e] : hub_.doc.entries)
      if (pred(e)) c.push_back(id);
    if (c.empty()) return "";
    return c[static_cast<std::size_t>(between(0, static_cast<std::int64_t>(c.size()) - 1))];
  };
  auto idle_it = [&](Entry& e, const std::string& message) {
    e.state = State::idle;
    e.target_version.clear();
    e.lease_duration_seconds = 0;
    e.acquire_time.clear();
    e.renew_time.clear();
    e.waiting_since.clear();
    e.write_id.clear();
    e.message = message;
  };
  auto admin_write = [&](const std::string& node) {
    hub_.written_at[node] = now_;
    hub_.by_admin[node] = true;
    commit("write_entry", "admin", node);
  };
  switch (between(0, 5)) {
    case 0: {  // pause; resumed a while later
      hub_.doc.settings.paused = !hub_.doc.settings.paused;
      fault(hub_.doc.settings.paused ? "pause" : "unpause", "admin", "settings");
      commit("settings", "admin", "");
      break;
    }
    case 1: {  // resume a halt
      std::string id = pick_state([](const Entry& e) { return is_halting(e.state); });
      if (id.empty()) break;
      fault("resume", id, "halted entry back to idle");
      idle_it(hub_.doc.entries[id], "resumed by admin");
      admin_write(id);
      break;
    }
    case 2: {  // agentctl force-release: the lease ends, the state does not
      std::string id = pick_state([](const Entry& e) { return holds_lease(e.state); });
      if (id.empty()) break;
      fault("force-release", id, "agentctl form (upgrading without lease)");
      Entry& e = hub_.doc.entries[id];
      e.lease_duration_seconds = 0;
      e.acquire_time.clear();
      e.renew_time.clear();
      e.write_id.clear();
      e.message = "force-released by admin";
      admin_write(id);
      break;
    }
    case 3: {  // a plain write to idle
      std::string id = pick_state([](const Entry& e) { return holds_lease(e.state); });
      if (id.empty()) break;
      fault("release-to-idle", id, "holder written to idle");
      idle_it(hub_.doc.entries[id], "force-released by admin");
      admin_write(id);
      break;
    }
    case 4: {  // DELETE of the entry
      std::string id =
          pick_state([](const Entry& e) { return holds_lease(e.state) || e.state == State::waiting; });
      if (id.empty()) break;
      fault("delete-entry", id, "admin DELETE");
      hub_.doc.entries.erase(id);
      hub_.written_at[id] = now_;
      hub_.by_admin[id] = true;
      commit("delete_entry", "admin", id);
      break;
    }
    case 5: {  // settings: maxConcurrent between 1 and 2
      allowed_ = std::max(allowed(), hub_.doc.settings.max_concurrent);
      allowed_until_ = now_ + kStepTimeout + Mono{2 * kLeaseSeconds * 1000};
      hub_.doc.settings.max_concurrent = hub_.doc.settings.max_concurrent == 1 ? 2 : 1;
      fault("settings", "admin", "maxConcurrent " + std::to_string(hub_.doc.settings.max_concurrent));
      commit("settings", "admin", "");
      break;
    }
  }
}

void Sim::heal() {
  healed_ = true;
  hub_.down_until = Mono{0};
  for (auto& n : nodes_) n.partitioned_until = Mono{0};
  if (hub_.doc.settings.paused) {
    hub_.doc.settings.paused = false;
    commit("settings", "admin", "");
  }
  trace("--", "faults end: partitions healed, hub up, unpaused");
}

// ---- invariants ------------------------------------------------------------------

void Sim::check_i1_i2(const std::map<std::string, Entry>& before) {
  // I1: live leases, judged with the hub's clock, at this revision.
  std::int64_t live = 0;
  std::string who;
  for (const auto& [id, e] : hub_.doc.entries) {
    if (!carries_lease(e)) continue;
    std::int64_t d = e.lease_duration_seconds > 0 ? e.lease_duration_seconds : kLeaseSeconds;
    if (now_ - hub_.written_at[id] < Mono{d * 1000}) {
      ++live;
      who += " " + id + "(epoch " + std::to_string(e.epoch) + ")";
    }
  }
  if (live > allowed())
    violate("I1", "revision " + std::to_string(hub_.doc.revision) + ": " + std::to_string(live) +
                      " live leases > maxConcurrent " + std::to_string(hub_.doc.settings.max_concurrent) +
                      ":" + who);
  // I2: every acquisition's epoch exceeds all earlier ones.
  for (const auto& [id, e] : hub_.doc.entries) {
    if (!carries_lease(e)) continue;
    auto it = before.find(id);
    if (it != before.end() && carries_lease(it->second) && it->second.epoch == e.epoch) continue;
    if (any_acquisition_ && e.epoch <= max_epoch_)
      violate("I2", id + " acquired epoch " + std::to_string(e.epoch) + ", not above " +
                        std::to_string(max_epoch_) + " (revision " + std::to_string(hub_.doc.revision) + ")");
    max_epoch_ = std::max(max_epoch_, e.epoch);
    any_acquisition_ = true;
  }
}

// I3 (amended) when a member starts a disruptive step on its machine: it holds the
// lease with the highest epoch (hub's clock), and at most maxConcurrent members of
// the group are inside a disruptive step. A killed member's step counts until the
// lease of its last write runs out: as long as the protocol lets peers assume.
void Sim::check_step_begin(std::size_t i, ActionKind kind) {
  Node& n = nodes_[i];
  const Local& l = n.proc->ps.local;
  std::string head = n.id + " begins " + to_string(kind) + " at epoch " + std::to_string(l.epoch);
  const Entry* mine = hub_.doc.entry(n.id);
  // An admin's write that reached the hub after our fencing read left it is the
  // race every lease has (the answer was in flight); only a member's own is not.
  bool admin_race =
      hub_.by_admin.contains(n.id) && hub_.by_admin[n.id] && now_ - hub_.written_at[n.id] <= Mono{2'000};
  if (admin_race) ++result_.faults["race:step-after-admin-write"];  // counted, to see how often
  if (!mine) {
    if (!admin_race) violate("I3", head + ": the hub has no entry for it");
  } else if (!admin_race) {
    if (!carries_lease(*mine) || mine->epoch != l.epoch)
      violate("I3", head + ": the hub's entry is " + to_string(mine->state) + " epoch " +
                        std::to_string(mine->epoch) + (carries_lease(*mine) ? "" : " without a lease"));
    else if (now_ - hub_.written_at[n.id] >= Mono{mine->lease_duration_seconds * 1000})
      violate("I3", head + ": the lease had expired on the hub's clock");
  }
  for (const auto& [id, e] : hub_.doc.entries) {
    if (id == n.id || !carries_lease(e) || e.epoch <= l.epoch) continue;
    if (now_ - hub_.written_at[id] < Mono{e.lease_duration_seconds * 1000})
      violate("I3", head + ": " + id + " holds a live lease with epoch " + std::to_string(e.epoch));
  }
  std::int64_t inside = 1;
  std::string who = n.id;
  for (std::size_t j = 0; j < nodes_.size(); ++j) {
    const Node& o = nodes_[j];
    if (j == i || !o.member) continue;
    for (const auto& [key, r] : o.runs) {
      if (!(r.begin <= now_ && now_ < r.end)) continue;
      if (!o.proc) {
        auto w = hub_.written_at.find(o.id);
        const Entry* oe = hub_.doc.entry(o.id);
        std::int64_t d = oe && oe->lease_duration_seconds > 0 ? oe->lease_duration_seconds : kLeaseSeconds;
        if (w == hub_.written_at.end() || now_ - w->second >= Mono{d * 1000}) continue;
      }
      ++inside;
      who += ", " + o.id + " (" + key + " since " + secs(r.begin) + ")";
    }
  }
  if (inside > allowed())
    violate("I3", std::to_string(inside) + " members inside a disruptive step > maxConcurrent " +
                      std::to_string(hub_.doc.settings.max_concurrent) + ": " + who);
}

bool Sim::converged() const {
  for (const auto& n : nodes_) {
    if (!n.member) continue;
    const Entry* e = hub_.doc.entry(n.id);
    if (!e || e->version != release_ || (e->state != State::succeeded && e->state != State::idle))
      return false;
    if (!n.proc || n.proc->job) return false;
  }
  return true;
}

std::optional<std::string> Sim::halted() const {
  std::optional<std::string> why;
  for (const auto& [id, e] : hub_.doc.entries) {
    if (holds_lease(e.state)) return std::nullopt;  // nothing may be left upgrading
    if (is_halting(e.state) && e.target_version == release_ && !e.message.empty())
      why = id + " " + to_string(e.state) + ": " + e.message;
  }
  for (const auto& n : nodes_)
    if (n.member && (!n.proc || n.proc->job)) return std::nullopt;
  return why;
}

void Sim::final_checks() {
  result_.end_ms = now_.count();
  if (!result_.ok) return;
  if (converged()) {
    result_.converged = true;
  } else if (auto why = halted()) {
    result_.halted = true;
    result_.halt_reason = *why;
  } else {
    std::string state;
    for (const auto& n : nodes_) {
      if (!n.member) continue;
      const Entry* e = hub_.doc.entry(n.id);
      state += " " + n.id + "=" + (e ? std::string(to_string(e->state)) + "@" + e->version : "none") +
               (n.proc ? "" : "(dead)");
    }
    violate("I4", "neither converged to " + release_ + " nor halted with a reason:" + state);
    return;
  }
  // The hub's log through the checker the soak uses (tests/check): I1, I2, I4.
  // It judges I1 by the maxConcurrent of each revision, so not after a change.
  if (allowed_until_ > Mono{0}) return;
  check::Options o;
  o.target = release_;
  o.final_state = true;
  for (const auto& v : check::find_violations(hub_.log, {}, o)) {
    violate(v.invariant, "invariant-check: " + check::to_string(v));
    break;
  }
}

Result Sim::run() {
  draw_faults();
  hub_.doc.name = kGroup;
  hub_.doc.settings.max_concurrent = chance(0.2) ? 2 : 1;
  std::int64_t n = between(2, 6);
  for (std::int64_t k = 0; k < n; ++k) add_node(true);
  commit("group_create", "admin", "");
  release_ = "2.0.0";
  // Faults come during the first part of the rollout, then the world heals.
  faults_until_ = Mono{between(60, 400) * 1000};
  int fault_events =
      f_.kills + f_.partitions + f_.hub_outages + f_.admin_actions + f_.joins + f_.leaves + f_.wall_jumps;
  for (int k = 0; k < fault_events * 2; ++k) schedule(ms(0, faults_until_.count()), ev_fault, 0);
  Mono second_at = f_.second_release ? ms(20'000, faults_until_.count() + 100'000) : Mono::max();
  const Mono deadline = faults_until_ + Mono{3'000'000};
  while (!queue_.empty() && result_.ok) {
    Event ev = queue_.top();
    if (ev.t >= faults_until_ && !healed_) {
      now_ = faults_until_;
      heal();
      for (std::size_t i = 0; i < nodes_.size(); ++i)
        if (nodes_[i].member && !nodes_[i].proc) schedule(now_, ev_restart, i);
      continue;
    }
    if (ev.t >= second_at) {
      now_ = second_at;
      second_at = Mono::max();
      release_ = "3.0.0";
      for (auto& node : nodes_) node.plan_at = now_ + ms(0, 8'000);
      fault("new-release", "hub", "3.0.0 published");
      continue;
    }
    queue_.pop();
    now_ = ev.t;
    if (now_ > deadline) break;
    Node* node = ev.node < nodes_.size() ? &nodes_[ev.node] : nullptr;
    switch (ev.kind) {
      case ev_wake:
        if (node->proc && ev.gen == node->wake_gen) {
          ++node->wake_gen;  // this wake is used; tick schedules the next one
          tick(ev.node);
        }
        break;
      case ev_restart:
        if (node->member && !node->proc && now_ >= node->restart_at) start_proc(ev.node);
        break;
      case ev_fault: random_fault(); break;
      case ev_run_end:
        // What a step did to the machine, at its end, whether or not the member
        // that began it still runs.
        for (const auto& [key, r] : node->runs) {
          if (r.end != now_ || !r.ok) continue;
          if (r.kind == ActionKind::install) node->installed = r.target;
          if (r.kind == ActionKind::restart) node->running = node->installed;
          if (r.kind == ActionKind::rollback) node->installed = node->running = r.previous;
        }
        break;
    }
    if (healed_ && (converged() || halted())) break;
  }
  final_checks();
  return result_;
}

}  // namespace

Result run(std::uint64_t seed, const Options& options) {
  Sim s(seed, options);
  return s.run();
}

}  // namespace agentd::sim
