// What the daemon reads (part of Daemon, daemon.h): the changes feed, the node
// record, the policies and the plan they make, or beside anax the node and its
// job from anax's local API; and the group document (protocol.md §3).
#include <algorithm>

#include "daemon.h"
#include "upgrade/version_floor.h"

namespace agentd {

namespace {
// Node record and policies are re-read without a change notice only this many
// idle heartbeats apart.
constexpr int kSafetyReads = 6;
}  // namespace

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

}  // namespace agentd
