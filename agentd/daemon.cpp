// The loop (Daemon, daemon.h): each pass takes a finished job, reads what
// changed, and drives the coordinator's decisions: for a member of a group
// (grouped_tick: writes of our entry, fenced steps) or for a node in none
// (ungrouped_tick). Reading the hub is daemon_hub.cpp, telling the outside
// daemon_reports.cpp, the job's thread job_runner.h.
#include "daemon.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "upgrade/pipeline.h"

namespace agentd {

namespace {
Timing timing_from(const Config& c) {
  return Timing{c.lease_duration, c.heartbeat, c.idle_heartbeat, c.fast_poll, c.poll};
}

// Raised only when the state file cannot be written: no transition may proceed
// unrecorded (protocol.md §4.2), so the pass ends and agentd is degraded until
// the file can be written again.
struct PersistError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

Daemon::Daemon(DaemonParts parts)
    : p_(std::move(parts)),
      coordinator_(p_.config.node_id, timing_from(p_.config)),
      rng_(p_.seed != 0 ? p_.seed : std::random_device{}()),
      metrics_file_(p_.metrics ? p_.config.metrics_dir : "", p_.log) {}

std::string Daemon::new_write_id() {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, static_cast<std::uint64_t>(rng_()),
                static_cast<std::uint64_t>(rng_()));
  return buf;
}

void Daemon::persist() {
  if (auto s = p_.state_file.save(ps_); !s) {
    // Nothing is lost yet, but no transition may proceed unrecorded (protocol.md §4.2).
    p_.log.error("persist-failed", {{"path", p_.state_file.path()}, {"error", s.error().describe()}});
    throw PersistError("cannot persist state: " + s.error().describe());
  }
}

void Daemon::note_job() {
  if (const char* ended = agentd::note_job(ps_.local, !job_.idle(), job_.in_step(), p_.clock.mono()))
    log_step(ended, "end");  // begun by an earlier process; its timeout has ended it
}

std::optional<int> Daemon::start() {
  auto loaded = p_.state_file.load();
  if (!loaded) {
    p_.log.error("state-unreadable", {{"error", loaded.error().describe()}});
    return exit_state;
  }
  if (*loaded) {
    ps_ = std::move(**loaded);
    p_.log.info("resumed", {{"state", to_string(ps_.local.state)},
                            {"progress", to_string(ps_.local.progress)},
                            {"epoch", std::to_string(ps_.local.epoch)},
                            {"group", ps_.group}});
  }
  try {
    persist();  // proves the state directory is writable before anything else happens
  } catch (const PersistError& e) {
    // No directory is the operator's to fix; a full one is retried in place:
    // exiting would restart into the same failure, a crash loop.
    std::error_code ec;
    if (!std::filesystem::is_directory(std::filesystem::path(p_.state_file.path()).parent_path(), ec))
      return exit_state;
    degrade(e.what());
  }
  // An install or rollback that an earlier process began may still run outside us.
  // The longest such a step can run: the timeout its detached run is killed after.
  const Config& c = p_.config;
  Mono step_timeout =
      c.upgrade_method == "packages" ? std::max(c.install_timeout, c.command_timeout) : c.command_timeout;
  process_started(ps_.local, p_.clock.mono(), step_timeout);
  // A restart begun by an earlier process has ended: this process is its result
  // (agentd restarting itself) or outlived it (protocol.md §7 I3 step log).
  if (ps_.local.progress == Progress::restart_begun) log_step("restart", "end");
  if (auto v = p_.upgrader.running_version()) {
    ps_.local.version = *v;
  } else {
    p_.log.warn("version-unknown", {{"error", v.error().describe()}});
  }
  p_.notifier.notify("READY=1");
  p_.log.info("started", {{"node", p_.config.org + "/" + p_.config.node_id}, {"version", ps_.local.version}});
  return std::nullopt;
}

int Daemon::stop() {
  p_.notifier.notify("STOPPING=1");
  p_.log.info("stopping", {{"signal", std::to_string(p_.waiter.stop_signal())},
                           {"state", to_string(ps_.local.state)},
                           {"progress", to_string(ps_.local.progress)}});
  // A running job sees the stop request and ends its child; its step stays
  // recorded as begun, so the next start resumes it (protocol.md §4.2).
  job_.join();
  (void)job_.take();
  try {
    persist();
  } catch (const PersistError&) {
    return exit_state;
  }
  return exit_ok;
}

int Daemon::run() {
  if (auto failed = start()) return *failed;
  while (!p_.waiter.stop_requested()) {
    tick();
    // A floor keeps a due time that a pass could not move from spinning the CPU.
    p_.waiter.sleep_for(std::max(next_wake() - p_.clock.mono(), Mono{10}));
  }
  return stop();
}

// issue 11 #4: a state that cannot be written must not end agentd (systemd would
// restart it into the same failure, and a crash loop rolls agentd back). Nothing
// proceeds unrecorded meanwhile; a running job goes on and is taken afterwards.
void Daemon::tick() {
  Mono now = p_.clock.mono();
  if (p_.notifier.watchdog_interval() > Mono{0} && now >= next_watchdog_) {
    p_.notifier.notify("WATCHDOG=1");
    next_watchdog_ = now + p_.notifier.watchdog_interval();
  }
  if (degraded_.empty() || recovered()) {
    try {
      pass();
    } catch (const PersistError& e) {
      degrade(e.what());
    }
  }
  update_metrics();
}

void Daemon::degrade(const std::string& why) {
  const std::uint64_t freed = free_own_space(p_.config.state_dir, ps_.local.target, job_.idle());
  retry_persist_ = p_.clock.mono() + persist_backoff_;
  if (why != degraded_)
    p_.log.error("degraded", {{"error", why},
                              {"freedBytes", std::to_string(freed)},
                              {"retryInMs", std::to_string(persist_backoff_.count())}});
  persist_backoff_ = std::min(persist_backoff_ * 2, Mono{60'000});
  degraded_ = why;
  status("degraded: " + why + "; nothing proceeds until the state can be written (retrying)");
}

bool Daemon::recovered() {
  if (p_.clock.mono() < retry_persist_) return false;
  if (auto s = p_.state_file.save(ps_); !s) {
    degrade("cannot persist state: " + s.error().describe());
    return false;
  }
  p_.log.info("persist-recovered", {{"path", p_.state_file.path()}, {"after", degraded_}});
  degraded_.clear();
  persist_backoff_ = Mono{1000};
  return true;
}

Mono Daemon::next_wake() const {
  if (!degraded_.empty()) {
    Mono retry = retry_persist_;
    if (p_.notifier.watchdog_interval() > Mono{0}) retry = std::min(retry, next_watchdog_);
    return retry;
  }
  // A lease holder reads no plan until it releases (pass()); a due one waits.
  const bool holding = !ps_.group.empty() && holds_lease(ps_.local.state);
  Mono w = p_.anax ? next_node_ : std::min({next_changes_, next_node_, holding ? Mono::max() : next_plan_});
  if (!ps_.report_status.empty()) w = std::min(w, next_report_);
  // Progress of a running job is shown every second.
  if (!job_.idle()) w = std::min(w, p_.clock.mono() + Mono{1000});
  if (p_.notifier.watchdog_interval() > Mono{0}) w = std::min(w, next_watchdog_);
  if (retry_prepare_ > p_.clock.mono()) w = std::min(w, retry_prepare_);
  if (ps_.group.empty()) return w;  // a node in no group reads no group
  w = std::min(w, next_read_);
  // Heartbeats and renewals are decided on a read; never sleep past one.
  const Local& l = ps_.local;
  if (l.last_write && doc_) {
    const Timing& t = coordinator_.timing();
    Mono hb = holds_lease(l.state)                 ? std::min(t.renew_period(), t.heartbeat)
              : Coordinator::rollout_active(*doc_) ? Coordinator::jittered(t.heartbeat, l)
                                                   : t.idle_heartbeat;
    w = std::min(w, *l.last_write + hb);
  }
  return w;
}

void Daemon::pass() {
  Mono now = p_.clock.mono();
  finish_job();
  show_progress();
  // A lease holder renews before any other hub call of the pass (issue 11 #3:
  // renewals never queue behind reads); its target cannot change until it
  // releases, so the plan waits.
  const bool coordinated = !ps_.group.empty() && !(p_.anax && hub_coordinates_ == false);
  const bool holding = node_ && coordinated && holds_lease(ps_.local.state);
  if (holding) grouped_tick();
  if (!ps_.report_status.empty() && now >= next_report_) send_report();
  if (p_.anax) {
    // Beside anax: the node and its job come from anax's local API (no hub
    // traffic); anax itself sends the node's heartbeat and polls the changes feed.
    if (now >= next_node_ && !refresh_from_anax()) return;
  } else {
    if (now >= next_changes_) poll_changes();
    if (now >= next_node_) refresh_node();
  }
  if (!node_ || holding) return;
  if (!p_.anax && now >= next_plan_) refresh_plan();
  if (ps_.group.empty()) {
    ungrouped_tick();
  } else if (p_.anax && hub_coordinates_ == false) {
    // A hub without the coordination extension: the agbot's lock serialises the
    // group and a job is ours once anax reports it downloaded (plan_from_anax).
    // Its group is looked at again now and then, between jobs.
    if (now >= next_read_ && job_.idle() && ps_.local.progress == Progress::none) read_group(true);
    if (hub_coordinates_ == false) ungrouped_tick();
  } else {
    grouped_tick();
  }
  // A new target waiting for its policy's startWindow says so, whatever else is quiet.
  if (!plan_.version.empty() && plan_.version != ps_.local.target && p_.clock.wall() < not_before_)
    status("waiting for the startWindow of " + plan_.policy + " until " + format_time(not_before_));
}

// protocol.md §4.6: a write whose response was lost is judged by its writeId.
void Daemon::resolve_pending() {
  if (ps_.pending_write_id.empty() || !doc_) return;
  Landed effects;
  if (auto e = agentd::resolve_pending(ps_, *doc_, p_.config.node_id, &effects)) {
    count(&MetricCounters::lost_writes_recovered);
    p_.log.info("write-recovered", {{"writeId", e->write_id}, {"state", to_string(e->state)}});
    report(effects);
  }
  persist();
}

// ---- the grouped member ---------------------------------------------------------

void Daemon::grouped_tick() {
  if (!read_group(false)) return;
  resolve_pending();
  const Mono pass = p_.clock.mono();
  bool reread = false;
  for (int step = 0; step < kMaxDecisionsPerPass && !p_.waiter.stop_requested(); ++step) {
    Mono now = p_.clock.mono();
    note_job();
    Action a = coordinator_.decide(*doc_, ps_.local, now, p_.clock.wall(), new_write_id());
    switch (a.kind) {
      case ActionKind::none:
        if (a.wait == WaitReason::not_member) next_node_ = std::min(next_node_, now + p_.config.poll);
        // A running download says how far it got rather than just "preparing".
        status(!job_.idle() && !shown_progress_.empty() ? shown_progress_ : a.reason);
        return;
      case ActionKind::adopt: adopt(a.entry); continue;
      case ActionKind::write: {
        // A copy read a poll ago is stale whenever any peer wrote since: a
        // group-conditioned write on it would only earn a 412 (protocol.md §3), and
        // the decision itself, the message and the next poll (the queue position)
        // would be made on old news. Look again first (304 when nothing changed).
        if (doc_read_at_ < pass && !reread) {
          reread = true;
          if (!read_group(true)) return;
          resolve_pending();
          continue;
        }
        WriteOutcome w = write(a);
        if (w == WriteOutcome::landed) continue;
        if (w == WriteOutcome::conflict) {
          // protocol.md §4.3: re-read after jittered backoff; a holder renews at once.
          Mono delay = conflict_delay(ps_.local, conflicts_, rng_);
          ++conflicts_;
          // Our copy is stale: decide nothing until a fresh, unconditional read.
          doc_.reset();
          next_read_ = now + delay;
          force_read_ = delay == Mono{0};
        }
        return;
      }
      case ActionKind::prepare:
        if (now < retry_prepare_) {
          status("preparing " + ps_.local.target + ": retrying after an error: " + ps_.local.message);
          return;
        }
        start_job(a.kind);
        status(a.reason);
        return;
      case ActionKind::check_health:
        start_job(a.kind);
        status(a.reason);
        return;
      case ActionKind::install:
      case ActionKind::restart:
      case ActionKind::rollback:
        if (!begin_step(a.kind, true)) {
          if (!doc_) return;  // the re-read failed: nothing to decide on until the next read
          continue;           // fenced or lease stale: decide again on the fresh document
        }
        status(a.reason);
        return;
    }
  }
}

WriteOutcome Daemon::write(const Action& a) {
  Mono sent = p_.clock.mono();
  ps_.pending_write_id = a.entry.write_id;
  persist();  // protocol.md §4.2: persist before every write
  const WriteCondition condition = write_condition(a.entry);
  auto r = p_.store.write_entry(ps_.group, p_.config.node_id, a.entry,
                                if_match_revision(*doc_, written_revision_, condition), condition);
  if (!r) {
    const Error& e = r.error();
    WriteOutcome outcome = classify_write_error(e.code);
    write_not_answered(ps_, outcome);
    if (outcome == WriteOutcome::conflict) {
      // protocol.md §4.6: it stays pending; the re-read that follows every
      // conflict judges it by its writeId.
      count(&MetricCounters::write_conflicts);
      p_.log.debug("write-conflict", {{"what", to_string(a.what)},
                                      {"writeId", a.entry.write_id},
                                      {"revision", std::to_string(doc_->revision)}});
      return WriteOutcome::conflict;
    }
    if (outcome == WriteOutcome::refused) {
      persist();
      p_.log.error("write-refused", {{"what", to_string(a.what)}, {"error", e.describe()}});
      next_node_ = sent;  // perhaps no longer a member
      next_read_ = sent + std::max(p_.config.poll, Mono{1000});
      // Decide nothing more on this copy: the next pass reads the group again
      // (and learns why, e.g. a 403 there means no coordination for us).
      doc_.reset();
      return WriteOutcome::refused;
    }
    // Transport error or 5xx: the write may have landed. Re-read, then judge by writeId.
    p_.log.warn("write-unknown",
                {{"what", to_string(a.what)}, {"writeId", a.entry.write_id}, {"error", e.describe()}});
    force_read_ = true;
    next_read_ = sent + Mono{200};
    return WriteOutcome::unknown;
  }
  conflicts_ = 0;
  Landed effects = land_answered_write(ps_, *doc_, p_.config.node_id, a.entry, *r, sent, condition);
  written_revision_ = *r;
  // Peers may have written before it: a group-conditioned write reads first.
  if (condition == WriteCondition::entry) doc_read_at_ = Mono{-1};
  report(effects);
  persist();
  coordinator_.observe(*doc_, sent);
  // protocol.md §5: how often to look depends on our state, and the read before this
  // write scheduled the next one for the state we left. A member that has just
  // started waiting reads at its place in the queue, not a slow poll later.
  next_read_ = std::min(next_read_, sent + coordinator_.poll_interval(*doc_, ps_.local, sent));
  if (!routine(a.what)) {
    p_.log.info(to_string(a.what), {{"group", ps_.group},
                                    {"state", to_string(a.entry.state)},
                                    {"epoch", std::to_string(a.entry.epoch)},
                                    {"target", ps_.local.target},
                                    {"revision", std::to_string(*r)},
                                    {"msg", a.reason}});
  } else {
    if (a.what == WriteKind::renew) count(&MetricCounters::renewals);
    p_.log.debug(to_string(a.what), {{"revision", std::to_string(*r)}});
  }
  return WriteOutcome::landed;
}

// Someone else (an admin, protocol.md §6) wrote our entry: agentd/member.h.
void Daemon::adopt(const Entry& e) {
  p_.log.warn("entry-changed",
              {{"state", to_string(e.state)}, {"epoch", std::to_string(e.epoch)}, {"msg", e.message}});
  Adopted a = adopt_entry(ps_.local, e);
  if (a.fenced) count(&MetricCounters::fences);
  if (a.step_running)
    p_.log.warn("fence", {{"reason", a.reason}, {"running", "true"}});
  else if (a.fenced)
    p_.log.warn("fence", {{"reason", a.reason}});
  persist();
}

bool Daemon::begin_step(ActionKind kind, bool fenced_step) {
  if (fenced_step) {
    // protocol.md §4.4: re-read immediately before each disruptive step.
    if (!read_group(true)) return false;
    Verdict v = coordinator_.fence(*doc_, ps_.local, p_.clock.mono());
    if (!v.ok) {
      count(&MetricCounters::fences);
      p_.log.warn("fence", {{"step", to_string(kind)}, {"reason", v.reason}});
      return false;
    }
  }
  start_job(kind);
  return true;
}

void Daemon::start_job(ActionKind kind) {
  Local& l = ps_.local;
  Target t{l.target, l.previous_version, plan_.manifest};
  std::function<Status()> work;
  {
    // A job's progress text is its own: a fast prepare's last words must not
    // become the message of a later step (a rollback's release said "running
    // the prepare command" instead of why the health check failed).
    std::lock_guard lock(progress_mu_);
    job_progress_ = {};
  }
  shown_progress_.clear();
  switch (kind) {
    case ActionKind::prepare: {
      reported_percent_ = -1;
      work = [this, t] {
        return p_.upgrader.prepare(t, [this](const JobProgress& progress) {
          std::lock_guard lock(progress_mu_);
          job_progress_ = progress;
        });
      };
      break;
    }
    case ActionKind::install:
      l.progress = Progress::install_begun;
      work = [this, t] { return p_.upgrader.install(t); };
      break;
    case ActionKind::restart:
      l.progress = Progress::restart_begun;
      work = [this, t] { return p_.upgrader.restart(t); };
      break;
    case ActionKind::check_health: work = [this, t] { return p_.upgrader.check_health(t); }; break;
    case ActionKind::rollback:
      l.progress = Progress::rollback_begun;
      work = [this, t] { return p_.upgrader.rollback(t); };
      break;
    default: return;
  }
  persist();  // the step is recorded as begun before it begins
  if (kind == ActionKind::install) log_step("install", "begin");
  if (kind == ActionKind::restart) log_step("restart", "begin");
  if (kind == ActionKind::rollback) log_step("rollback", "begin");
  if (kind == ActionKind::install) report_management_status(MgmtStatus::initiated);
  if (kind == ActionKind::rollback) report_management_status(MgmtStatus::rollback_started);
  p_.log.info("step", {{"step", to_string(kind)}, {"target", l.target}, {"epoch", std::to_string(l.epoch)}});
  l.job_running = true;
  l.step_running = kind == ActionKind::install || kind == ActionKind::restart || kind == ActionKind::rollback;
  job_target_ = l.target;
  job_.start(kind, std::move(work), [this] { p_.waiter.wake(); });
}

void Daemon::finish_job() {
  auto done = job_.take();
  if (!done) return;
  auto [kind, result] = *done;
  Local& l = ps_.local;
  l.job_running = false;
  l.step_running = false;
  if (!result && result.error().code == Errc::cancelled) return;  // stopping: the step stays begun
  if (kind == ActionKind::install) log_step("install", "end");
  if (kind == ActionKind::restart) log_step("restart", "end");
  if (kind == ActionKind::rollback) log_step("rollback", "end");
  std::string err = result ? "" : result.error().describe();
  p_.log.log(result ? Level::info : Level::error, "step-done",
             {{"step", to_string(kind)}, {"ok", result ? "true" : "false"}, {"error", err}});
  if (kind == ActionKind::install) count_step(StepMetric::install, result.has_value());
  if (kind == ActionKind::restart) count_step(StepMetric::restart, result.has_value());
  if (kind == ActionKind::rollback) count_step(StepMetric::rollback, result.has_value());
  if (kind == ActionKind::prepare && !result) count(&MetricCounters::download_failures);
  if (kind == ActionKind::prepare && job_target_ != l.target) {
    p_.log.info("prepare-outdated", {{"prepared", job_target_}, {"target", l.target}});
    return;  // prepared for a target the plan has since replaced
  }
  switch (kind) {
    case ActionKind::prepare:
      if (result) {
        l.prepared = true;
        report_management_status(MgmtStatus::downloaded);
      } else if (result.error().code == Errc::verification) {
        l.verification_failed = true;
        l.message = "artifact failed verification: " + err;
      } else {
        l.message = "prepare failed: " + err;
        retry_prepare_ = p_.clock.mono() + full_jitter(3, Mono{1000}, Mono{60'000}, rng_) + Mono{1000};
        report_management_status(MgmtStatus::download_failed, l.message);
      }
      break;
    case ActionKind::install:
      if (result) {
        l.progress = Progress::installed;
      } else {
        l.progress = Progress::failed;
        l.message = "install of " + l.target + " failed: " + err;
      }
      break;
    case ActionKind::restart:
      if (result) {
        l.progress = Progress::restarted;
      } else {
        l.progress = Progress::failed;
        l.message = "restart at " + l.target + " failed: " + err;
      }
      break;
    case ActionKind::check_health: {
      auto v = p_.upgrader.running_version();
      count_step(StepMetric::health, result && v && *v == l.target);
      if (result && v && *v == l.target) {
        l.progress = Progress::healthy;
      } else {
        l.progress = Progress::failed;
        l.message =
            !result ? "health check of " + l.target + " failed: " + err
                    : "agent reports version " + (v ? *v : v.error().describe()) + ", expected " + l.target;
      }
      break;
    }
    case ActionKind::rollback:
      if (result) {
        l.progress = Progress::rolled_back;
        if (auto v = p_.upgrader.running_version()) l.version = *v;
      } else {
        l.progress = Progress::rollback_failed;
        l.message += "; rollback to " + l.previous_version + " failed: " + err;
      }
      break;
    default: break;
  }
  persist();
  force_read_ = true;  // decide on a fresh document
}

// ---- a node in no group upgrades at once (no lease to take) -----------------------

void Daemon::ungrouped_tick() {
  if (!job_.idle()) return;
  for (int step = 0; step < kMaxDecisionsPerPass; ++step) {
    AloneAction a = Coordinator::decide_alone(ps_.local);
    if (a.next) {
      ps_.local = std::move(*a.next);
      persist();
      if (a.report) report_management_status(*a.report, a.report_error);
      if (a.released)
        p_.log.info("release", {{"state", to_string(ps_.local.state)},
                                {"version", ps_.local.version},
                                {"msg", ps_.local.message}});
      if (a.stop) return;
      continue;
    }
    if (a.kind == ActionKind::prepare) {
      if (p_.clock.mono() >= retry_prepare_) start_job(a.kind);
      return;
    }
    if (a.kind != ActionKind::none) {
      start_job(a.kind);
      return;
    }
    // In a group on a hub that cannot coordinate it (beside anax): say what is missing.
    std::string why = a.reason;
    if (!ps_.group.empty() && !unsupported_reason_.empty())
      why = unsupported_reason_ + "; " +
            (a.wait == WaitReason::halted ? why
             : plan_.reason.empty()       ? "up to date at " + ps_.local.version
                                          : plan_.reason);
    status(why);
    return;
  }
}

}  // namespace agentd
