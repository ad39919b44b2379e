// What the daemon tells the outside (part of Daemon, daemon.h): sd_notify
// STATUS=, the node management status of the job (exchange-api.md §4.3), the
// errors of policies it cannot evaluate, a running download's progress, the
// steps log (protocol.md §7 I3) and the metrics file.
#include <chrono>

#include "daemon.h"
#include "files.h"
#include "json.h"

namespace agentd {

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

// What a landed write of ours calls for (agentd/member.h does the bookkeeping):
// the management status, and the next heartbeat's jitter (drawn after every write).
void Daemon::report(const Landed& effects) {
  ps_.local.heartbeat_jitter_permille =
      std::uniform_int_distribution<int>(0, kMaxHeartbeatJitterPermille)(rng_);
  for (const auto& r : effects.reports) report_management_status(r.status, r.error);
}

}  // namespace agentd
