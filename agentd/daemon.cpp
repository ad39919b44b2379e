#include "daemon.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "files.h"
#include "json.h"
#include "upgrade/pipeline.h"
#include "upgrade/version_floor.h"

namespace agentd {

// ---- Job ----------------------------------------------------------------------

Job::~Job() {
  join();
}

void Job::join() {
  if (thread_.joinable()) thread_.join();
}

void Job::start(ActionKind kind, std::function<Status()> work, std::function<void()> wake) {
  join();
  kind_ = kind;
  done_.store(false);
  thread_ = std::thread([this, work = std::move(work), wake = std::move(wake)] {
    result_ = work();
    done_.store(true);
    wake();
  });
}

std::optional<std::pair<ActionKind, Status>> Job::take() {
  if (!thread_.joinable() || !done_.load()) return std::nullopt;
  thread_.join();
  return std::make_pair(kind_, result_);
}

// ---- Daemon -------------------------------------------------------------------

namespace {
Timing timing_from(const Config& c) {
  return Timing{c.lease_duration, c.heartbeat, c.idle_heartbeat, c.fast_poll, c.poll};
}
// Node record and policies are re-read without a change notice only this many
// idle heartbeats apart.
constexpr int kSafetyReads = 6;

// Raised only when the state file cannot be written: no transition may proceed
// unrecorded (protocol.md §4.2), so the pass ends and agentd is degraded until
// the file can be written again.
struct PersistError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

Daemon::Daemon(DaemonParts parts)
    : p_(parts),
      coordinator_(parts.config.node_id, timing_from(parts.config)),
      rng_(parts.seed != 0 ? parts.seed : std::random_device{}()),
      metrics_file_(parts.metrics ? parts.config.metrics_dir : "", parts.log) {}

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

void Daemon::status(const std::string& text) {
  if (text == last_status_) return;
  last_status_ = text;
  p_.notifier.notify("STATUS=" + text);
  p_.log.debug("status", {{"msg", text}});
}

void Daemon::report_management_status(MgmtStatus st, const std::string& error) {
  if (ps_.policy.empty() || (st == last_mgmt_status_ && error.empty())) return;
  last_mgmt_status_ = st;
  // The latest status is the one that counts; it is kept until it is taken.
  ps_.report_status = to_string(st);
  ps_.report_policy = ps_.policy;
  ps_.report_error = error;
  ps_.report_version = ps_.local.target;
  persist();
  send_report();
}

void Daemon::send_report() {
  if (ps_.report_status.empty()) return;
  const std::string& st = ps_.report_status;
  ManagementStatus ms;
  if (scheduled_time_.empty()) scheduled_time_ = format_time(p_.clock.wall());
  ms.scheduled_time = scheduled_time_;
  ms.status = st;
  ms.error_message = ps_.report_error;
  ms.software_version = ps_.report_version;
  // The state file keeps the wire string; one it does not know carries no times.
  const auto known = mgmt_status_from_string(st);
  if (known == MgmtStatus::initiated) ms.start_time = format_time(p_.clock.wall());
  if (known && ends_job(*known)) ms.end_time = format_time(p_.clock.wall());
  if (auto r = p_.status.report(ps_.report_policy, ms); !r) {
    // Every job ends in a final status, or anax's record and the agbot's group
    // lock stay active (anax-coexistence.md §3.2): try again, a little later each time.
    p_.log.warn("management-status-failed",
                {{"policy", ps_.report_policy}, {"status", st}, {"error", r.error().describe()}});
    next_report_ = p_.clock.mono() + full_jitter(3, Mono{2000}, Mono{30'000}, rng_) + Mono{1000};
    return;
  }
  p_.log.info("management-status", {{"policy", ps_.report_policy}, {"status", st}});
  ps_.report_status.clear();
  ps_.report_policy.clear();
  ps_.report_error.clear();
  ps_.report_version.clear();
  persist();
}

// A policy this node cannot evaluate (a constraint outside the language, an
// unreadable start, a version that cannot be resolved) says so in its own
// management status, once per distinct error: the operator sees it in the
// Exchange without logging in (issue: "an error reported in the policy's status").
void Daemon::report_policy_errors(const std::map<std::string, std::string>& errors) {
  for (const auto& [policy, why] : errors) {
    auto it = reported_policy_errors_.find(policy);
    if (it != reported_policy_errors_.end() && it->second == why) continue;
    auto slash = policy.find('/');
    if (slash != std::string::npos && policy.substr(0, slash) != p_.config.org)
      continue;  // status lives in our org
    ManagementStatus ms;
    ms.scheduled_time = format_time(p_.clock.wall());
    ms.status = to_string(MgmtStatus::precheck_failed);
    ms.error_message = why;
    if (auto r = p_.status.report(policy, ms); !r) {
      p_.log.warn("management-status-failed", {{"policy", policy}, {"error", r.error().describe()}});
      continue;
    }
    p_.log.warn("policy-not-evaluated", {{"policy", policy}, {"error", why}});
    reported_policy_errors_[policy] = why;
  }
}

void Daemon::note_job() {
  if (const char* ended = agentd::note_job(ps_.local, !job_.idle(), job_.in_step(), p_.clock.mono()))
    log_step(ended, "end");  // begun by an earlier process; its timeout has ended it
}

void Daemon::log_step(const char* step, const char* phase) {
  auto o = json::object();
  json::set(
      o.get(), "tUs",
      static_cast<std::int64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(p_.clock.wall().time_since_epoch()).count()));
  json::set(o.get(), "node", p_.config.node_id);
  json::set(o.get(), "group", ps_.group);
  json::set(o.get(), "step", step);
  json::set(o.get(), "phase", phase);
  json::set(o.get(), "epoch", ps_.local.epoch);
  json::set(o.get(), "version", ps_.local.target);
  if (auto s = append_line(p_.steps_log, json::print(o.get())); !s)
    p_.log.warn("steps-log-failed", {{"error", s.error().describe()}});
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

// The group's part of the metrics, from each fresh document: a conflict later in
// the pass drops the copy, not what it showed.
void Daemon::observe_group_for_metrics(Mono now) {
  if (!p_.metrics || !doc_) return;
  const Local& l = ps_.local;
  group_gauges_.members = static_cast<std::int64_t>(doc_->members.size());
  group_gauges_.rollout_active = Coordinator::rollout_active(*doc_);
  group_gauges_.members_unhealthy = 0;
  // protocol.md §4.1: health is judged only during a rollout, after watching it long enough.
  if (group_gauges_.rollout_active && coordinator_.judging(now))
    for (const std::string& m : doc_->members) {
      const Entry* e = doc_->entry(m);
      if (m != p_.config.node_id && (!e || !coordinator_.healthy(m, *e, now)))
        ++group_gauges_.members_unhealthy;
    }
  auto halt = l.target.empty() ? std::nullopt : Coordinator::halted_for(*doc_, l.target);
  if (halt && !group_gauges_.halted) {
    count(&MetricCounters::halts_seen);
    p_.log.warn("halt-seen", {{"group", ps_.group}, {"target", l.target}, {"msg", *halt}});
  }
  group_gauges_.halted = halt.has_value();
}

void Daemon::update_metrics() {
  if (!p_.metrics || !metrics_file_.enabled()) return;
  const Local& l = ps_.local;
  const Mono now = p_.clock.mono();
  const auto unix_seconds = [](Wall t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
  };
  MetricValues v;
  MemberGauges& g = v.member;
  if (ps_.group.empty()) group_gauges_ = MemberGauges{};
  g = group_gauges_;
  // A node in no group halts only itself (ungrouped_tick).
  if (ps_.group.empty()) g.halted = is_halting(l.state) && l.failed_target == l.target && !l.target.empty();
  g.group = ps_.group;
  g.version = l.version;
  g.target = l.target;
  g.state = l.state;
  g.progress = l.progress;
  g.lease_held = !ps_.group.empty() && holds_lease(l.state) && !l.leaseless;
  g.epoch = l.epoch;
  if (Wall acquired; g.lease_held && parse_time(l.acquire_time, &acquired))
    g.lease_acquired_seconds = unix_seconds(acquired);
  g.lease_duration_seconds = std::chrono::duration<double>(p_.config.lease_duration).count();
  g.hub_coordinates = ps_.group.empty() ? std::nullopt : hub_coordinates_;
  if (l.state == State::succeeded && metrics_state_ && *metrics_state_ != State::succeeded)
    last_success_seconds_ = unix_seconds(p_.clock.wall());
  metrics_state_ = l.state;
  g.last_success_seconds = last_success_seconds_;
  v.counters = p_.metrics->counters();
  // Counters alone are written at most once per heartbeat during a rollout, once
  // per idle heartbeat otherwise: a quiet member rewrites its file rarely.
  const Mono counters_every =
      g.rollout_active || is_active(l.state) ? p_.config.heartbeat : p_.config.idle_heartbeat;
  metrics_file_.update(v, now, counters_every, p_.config.idle_heartbeat);
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

// A running prepare's progress goes into our entry's message (sent with the
// next heartbeat), sd_notify STATUS= and, every tenth of the download, the
// node management status (whose only free-text field is errorMessage).
void Daemon::show_progress() {
  if (job_.idle()) return;
  JobProgress p;
  {
    std::lock_guard lock(progress_mu_);
    p = job_progress_;
  }
  if (p.text.empty() || p.text == shown_progress_) return;
  shown_progress_ = p.text;
  ps_.local.message = p.text;
  status(p.text);
  if (p.total > 0) {
    int percent = static_cast<int>(p.done * 100 / p.total);
    if (percent / 10 != reported_percent_ / 10) {
      reported_percent_ = percent;
      last_mgmt_status_.reset();
      report_management_status(MgmtStatus::download_started, p.text);
    }
  }
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

// ---- hub polling ---------------------------------------------------------------

void Daemon::poll_changes() {
  Mono now = p_.clock.mono();
  next_changes_ = now + p_.config.changes_interval;
  if (change_id_ == 0) {
    auto max = p_.hub.max_change_id();
    if (!max) {
      p_.log.warn("changes-failed", {{"error", max.error().describe()}});
      return;
    }
    change_id_ = *max + 1;
  }
  // POST /changes is also the node heartbeat, as for the real agent (exchange-api.md §3.2).
  auto r = p_.hub.changes(change_id_, 1000);
  if (!r) {
    p_.log.warn("changes-failed", {{"error", r.error().describe()}});
    return;
  }
  for (const auto& c : r->changes) {
    if (c.resource == "node" && c.id == p_.config.node_id) next_node_ = now;  // membership may have changed
    if (c.resource == "mgmtpolicy" || c.resource == "agentfileversion") next_plan_ = now;
    if (c.resource == "nodepolicies" && c.id == p_.config.node_id)
      next_plan_ = now;  // constraints may match now
    if (c.resource == "agentupgrade" && c.id == p_.config.node_id)
      next_read_ = now;  // protocol.md §3 notices
  }
  const std::int64_t before = change_id_;
  change_id_ = std::max(change_id_, r->most_recent_change_id + 1);
  // More rows are waiting: fetch them at once, but only while the feed moves
  // forward; a hub repeating hitMaxRecords at one id waits for the interval.
  if (r->hit_max_records && change_id_ > before) next_changes_ = now;
}

void Daemon::refresh_node() {
  Mono now = p_.clock.mono();
  // The changes feed tells us when the node record changes (exchange-api.md §6);
  // this read is only the safety net, so it is rare (protocol.md §1 goal 6).
  next_node_ = now + kSafetyReads * p_.config.idle_heartbeat;
  auto n = p_.hub.get_node();
  if (!n) {
    Level lvl = n.error().transient() ? Level::warn : Level::error;
    p_.log.log(lvl, "node-read-failed", {{"error", n.error().describe()}});
    status("cannot read this node from the Exchange: " + n.error().describe());
    next_node_ = now + std::max(p_.config.poll, Mono{1000});
    return;
  }
  if (n->ha_group != ps_.group) {
    p_.log.info("group-changed", {{"from", ps_.group}, {"to", n->ha_group}});
    ps_.group = n->ha_group;
    coordinator_.reset();
    doc_.reset();
    written_revision_ = 0;
    force_read_ = true;
    persist();
  }
  node_ = std::move(*n);
}

void Daemon::refresh_plan() {
  Mono now = p_.clock.mono();
  next_plan_ = now + kSafetyReads * p_.config.idle_heartbeat;  // mgmtpolicy/agentfileversion rows say when
  auto policies = p_.hub.list_management_policies();
  if (!policies) {
    p_.log.warn("policies-read-failed", {{"error", policies.error().describe()}});
    next_plan_ = now + std::max(p_.config.poll, Mono{1000});
    return;
  }
  auto published = p_.hub.agent_software_versions();
  std::vector<std::string> versions = published ? *published : std::vector<std::string>{};
  // The package system may name the running version with a revision or release
  // ("2.0.0-1" for the published "2.0.0"): the plan and our entry use the agent's name.
  if (std::string named = agent_version_of(ps_.local.version, versions); named != ps_.local.version) {
    p_.log.info("running-version", {{"package", ps_.local.version}, {"agent", named}});
    ps_.local.version = named;
    persist();
  }
  // Policies that select nodes by constraints need the node policy's
  // properties; a failed read keeps the last ones (or none: those policies are
  // then reported as not evaluated, plan.h).
  if (auto np = p_.hub.get_node_policy()) {
    node_properties_ = *np ? std::move(*np) : std::optional<Properties>(Properties{});
  } else {
    p_.log.warn("node-policy-read-failed", {{"error", np.error().describe()}});
  }
  auto downgrade = downgrade_rule();
  if (!downgrade) return;
  auto plan = choose_target(
      *node_, node_properties_, *policies, versions, ps_.local.version, p_.clock.wall(),
      [this](const std::string& ref) { return p_.hub.get_manifest(ref); },
      [this](std::int64_t n) { return std::uniform_int_distribution<std::int64_t>(0, n - 1)(rng_); },
      *downgrade);
  if (!plan) {
    p_.log.warn("plan-failed", {{"error", plan.error().describe()}});
    return;
  }
  apply_plan(*plan);
}

// Anti-rollback (upgrade/version_floor.h): what runs raises the floor; a damaged
// floor plans nothing (nullopt, said in the status).
std::optional<DowngradeRule> Daemon::downgrade_rule() {
  const VersionFloor floor(version_floor_path(p_.config.state_dir, p_.config.agent_package));
  if (auto s = floor.raise(ps_.local.version); !s)
    p_.log.warn("version-floor-failed", {{"error", s.error().describe()}});
  auto floor_version = floor.load();
  if (!floor_version) {
    p_.log.error("version-floor-unreadable", {{"error", floor_version.error().describe()}});
    status("no upgrade planned: " + floor_version.error().message);
    return std::nullopt;
  }
  return DowngradeRule{*floor_version, p_.config.allow_downgrade};
}

bool Daemon::read_group(bool force) {
  Mono now = p_.clock.mono();
  if (!force && !force_read_ && now < next_read_) return doc_.has_value();
  std::optional<std::int64_t> known;
  if (doc_) known = doc_->revision;
  auto r = p_.store.read(ps_.group, known);
  if (!r) {
    const Error& e = r.error();
    next_read_ = now + std::max(p_.config.poll, Mono{500});
    if (e.code == Errc::unsupported) {
      // A hub that cannot coordinate stays so for a while: look again with a
      // growing pause (issue: ~20 requests/min while refusing), up to the idle
      // heartbeat. The changes feed still tells us at once when the node changes.
      Mono pause = std::min(p_.config.poll * (Mono::rep{1} << std::min(unsupported_reads_, 10)),
                            std::max(p_.config.idle_heartbeat, p_.config.poll));
      ++unsupported_reads_;
      next_read_ = now + pause;
      force_read_ = false;
      // A 403 is also what a member removed from the group gets: look at the node too.
      next_node_ = std::min(next_node_, now + pause);
      // protocol.md §3: without the extension there is no safe lease; never fall back.
      std::string why =
          "refusing to upgrade: the hub cannot coordinate group " + ps_.group + ": " + e.message;
      hub_coordinates_ = false;
      if (p_.anax)
        why = "the hub cannot coordinate group " + ps_.group + " (" + e.message +
              "): the agbot's lock serialises the group; agentd checks health and rolls back, but "
              "halting the group after a failure, minAvailable and fencing need the hub's coordination "
              "extension";
      if (why != unsupported_reason_) {
        unsupported_reason_ = why;
        p_.log.log(p_.anax ? Level::warn : Level::error, "unsupported-hub",
                   {{"group", ps_.group}, {"error", e.describe()}});
        if (!p_.anax) report_management_status(MgmtStatus::ha_node_waiting, why);
      }
      status(why);
    } else if (e.code == Errc::not_found) {
      p_.log.warn("group-missing", {{"group", ps_.group}});
      next_node_ = now;
    } else {
      p_.log.warn("group-read-failed", {{"group", ps_.group}, {"error", e.describe()}});
      status("cannot read group " + ps_.group + ": " + e.describe());
    }
    doc_.reset();
    return false;
  }
  doc_read_at_ = now;
  unsupported_reason_.clear();
  unsupported_reads_ = 0;
  if (p_.anax && hub_coordinates_ != true) next_node_ = now;  // anax's waiting job may be ready now
  hub_coordinates_ = true;
  force_read_ = false;
  if (!r->not_modified) doc_ = std::move(r->document);
  if (!doc_) {  // 304 without a cached document cannot happen with a correct hub
    force_read_ = true;
    return false;
  }
  coordinator_.observe(*doc_, now);
  note_job();
  observe_group_for_metrics(now);
  next_read_ = now + coordinator_.poll_interval(*doc_, ps_.local, now);
  return true;
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

// What a landed write of ours calls for (agentd/member.h does the bookkeeping):
// the management status, and the next heartbeat's jitter (drawn after every write).
void Daemon::report(const Landed& effects) {
  ps_.local.heartbeat_jitter_permille =
      std::uniform_int_distribution<int>(0, kMaxHeartbeatJitterPermille)(rng_);
  for (const auto& r : effects.reports) report_management_status(r.status, r.error);
}

// The plan's target becomes ours unless an upgrade is in flight (shared by both
// sources of a plan: the Exchange's policies, or anax's job).
void Daemon::apply_plan(const Plan& plan) {
  Mono now = p_.clock.mono();
  if (plan.version != plan_.version || plan.reason != plan_.reason)
    p_.log.info("plan", {{"target", plan.version}, {"reason", plan.reason}});
  report_policy_errors(plan.policy_errors);
  // The startWindow delay is drawn once per target (exchange-api.md §4.1).
  if (plan.version != plan_.version || plan.policy != plan_.policy) not_before_ = plan.not_before;
  plan_ = plan;
  Wall wall = p_.clock.wall();
  if (!plan_.version.empty() && plan_.version != ps_.local.target && wall < not_before_) {
    next_plan_ = std::min(next_plan_, now + std::chrono::duration_cast<Mono>(not_before_ - wall) + Mono{1});
    return;
  }
  // A release in flight keeps its target; a new plan applies from the next cycle.
  if (!holds_lease(ps_.local.state) && ps_.local.progress == Progress::none &&
      ps_.local.target != plan_.version) {
    ps_.local.target = plan_.version;
    ps_.local.prepared = false;  // what was prepared was for another target
    ps_.local.verification_failed = false;
    ps_.policy = plan_.policy;
    last_mgmt_status_.reset();
    persist();
    if (!plan_.version.empty() && plan_.version != ps_.local.version)
      report_management_status(MgmtStatus::waiting);
  }
}

// Beside anax: the node (its group) and the job, from anax's local API, free of
// hub traffic (anax-coexistence.md §2). False while anax cannot say.
bool Daemon::refresh_from_anax() {
  Mono now = p_.clock.mono();
  next_node_ = now + p_.config.poll;
  auto n = p_.anax->node();
  if (!n) {
    p_.log.warn("anax-unavailable", {{"error", n.error().describe()}});
    status("waiting for the agent's local API: " + n.error().describe());
    return node_.has_value();
  }
  NodeRecord rec;
  rec.id = p_.config.node_id;
  rec.ha_group = n->ha_group;
  if (rec.ha_group != ps_.group) {
    p_.log.info("group-changed", {{"from", ps_.group}, {"to", rec.ha_group}});
    ps_.group = rec.ha_group;
    coordinator_.reset();
    doc_.reset();
    written_revision_ = 0;
    force_read_ = true;
    hub_coordinates_.reset();  // until a read says
    persist();
  }
  node_ = std::move(rec);
  auto jobs = p_.anax->jobs();
  if (!jobs) {
    p_.log.warn("anax-jobs-failed", {{"error", jobs.error().describe()}});
    return true;
  }
  // Until a read of the group shows the hub coordinates it, only a job the agbot
  // let anax run counts.
  auto downgrade = downgrade_rule();
  if (!downgrade) return true;
  Plan plan =
      plan_from_anax(*jobs, ps_.policy, hub_coordinates_.value_or(false), ps_.local.version, *downgrade);
  if (plan.version != plan_.version) force_read_ = true;  // a new job: look at the group now
  apply_plan(plan);
  return true;
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
