#include "plan.h"

#include <algorithm>
#include <cctype>

#include "version_range.h"

namespace agentd {

namespace {
bool is_exact_version(const std::string& v) {
  if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0]))) return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' || c == '_';
  });
}

// anax VerifyCompatible for a pattern: the node's "org/pattern" or its bare name.
bool pattern_matches(const std::vector<std::string>& patterns, const std::string& node_pattern) {
  if (std::find(patterns.begin(), patterns.end(), node_pattern) != patterns.end()) return true;
  auto slash = node_pattern.find('/');
  if (slash == std::string::npos) return false;
  return std::find(patterns.begin(), patterns.end(), node_pattern.substr(slash + 1)) != patterns.end();
}
}  // namespace

bool package_version_matches(const std::string& package_version, const std::string& agent) {
  std::string package = package_version;
  if (auto colon = package.find(':'); colon != std::string::npos && colon < 4)
    package = package.substr(colon + 1);
  if (package == agent) return true;
  return !agent.empty() && package.size() > agent.size() + 1 && package.starts_with(agent) &&
         package[agent.size()] == '-' && package.find('-', agent.size() + 1) == std::string::npos;
}

std::string agent_version_of(const std::string& installed, const std::vector<std::string>& published) {
  if (std::find(published.begin(), published.end(), installed) != published.end()) return installed;
  const std::string* match = nullptr;
  for (const std::string& v : published) {
    if (!package_version_matches(installed, v)) continue;
    if (match != nullptr && *match != v) return installed;  // ambiguous: leave it as the package says
    match = &v;
  }
  return match != nullptr ? *match : installed;
}

std::string refused_downgrade(const std::string& version, const std::string& running, bool policy_allows,
                              const DowngradeRule& downgrade) {
  const bool below_running = !running.empty() && compare_package_versions(version, running) < 0;
  const bool below_floor = !downgrade.floor.empty() && compare_package_versions(version, downgrade.floor) < 0;
  if (!below_running && !below_floor) return "";
  if (!policy_allows) return version + " would be a downgrade";
  // The hub's allowDowngrade alone cannot move the node back: an old signed
  // manifest would otherwise be a rollback attack.
  if (!downgrade.allowed_locally)
    return version + " is below " + (below_floor ? downgrade.floor : running) +
           ", the highest version this node installed or ran; this node does not allow downgrades "
           "(AGENTD_ALLOW_DOWNGRADE)";
  return "";
}

Result<Plan> choose_target(const NodeRecord& node, const std::optional<Properties>& node_properties,
                           const std::vector<ManagementPolicy>& policies,
                           const std::vector<std::string>& published, const std::string& running, Wall now,
                           const ManifestFetcher& fetch_manifest, const RandomBelow& random_below,
                           const DowngradeRule& downgrade) {
  Plan best;
  const ManagementPolicy* chosen = nullptr;
  std::vector<std::string> skipped;
  auto policy_error = [&](const ManagementPolicy& p, const std::string& why) {
    best.policy_errors[p.id] = why;
    skipped.push_back(p.id + ": " + why);
  };
  std::vector<std::string> valid_published;
  for (const auto& v : published)
    if (is_version_string(v)) valid_published.push_back(v);  // as anax: others are ignored

  std::vector<ManagementPolicy> sorted = policies;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (const auto& p : sorted) {
    if (!p.enabled || p.agent_upgrade.manifest.empty()) continue;
    // anax VerifyCompatible: a node with a pattern, or a policy with patterns,
    // matches by pattern only; otherwise the policy's constraints decide.
    if (!node.pattern.empty() || !p.patterns.empty()) {
      if (!pattern_matches(p.patterns, node.pattern)) continue;
    } else if (!p.constraints.empty()) {
      if (!node_properties) {
        skipped.push_back(p.id + ": the node's policy properties are not known yet");
        continue;
      }
      auto ok = evaluate_constraints(p.constraints, *node_properties);
      if (!ok) {
        policy_error(p, ok.error().message);
        continue;
      }
      if (!*ok) continue;  // does not select this node
    }
    Wall start = now;
    if (p.start != "now" && !p.start.empty()) {
      if (!parse_time(p.start, &start)) {
        policy_error(p, "unsupported start '" + p.start + "'");
        continue;
      }
      if (start > now) {
        skipped.push_back(p.id + ": starts at " + p.start);
        continue;
      }
    }
    // "now" starts at our own clock's now, not at the policy's lastUpdated: that is
    // the hub's clock, and correctness must not depend on clocks agreeing
    // (protocol.md goal 5). The daemon draws the delay once per target.
    auto manifest = fetch_manifest(p.agent_upgrade.manifest);
    if (!manifest) {
      skipped.push_back(p.id + ": manifest " + p.agent_upgrade.manifest + ": " + manifest.error().describe());
      continue;
    }
    std::string v = manifest->software.version;
    if (v == "latest") {
      if (valid_published.empty()) {
        skipped.push_back(p.id + ": 'latest' but no agent versions are published");
        continue;
      }
      v = *std::max_element(valid_published.begin(), valid_published.end(), [](const auto& a, const auto& b) {
        return compare_versions(a, b).value_or(0) < 0;
      });
    } else if (v.empty()) {
      continue;  // the manifest upgrades certificates/configuration only
    } else if (v.front() == '[' || v.front() == '(') {
      // A bracket means a range: a malformed one is reported as such.
      auto range = parse_version_range(v);
      if (!range) {
        policy_error(p, range.error().message);
        continue;
      }
      auto found = highest_in_range(*range, valid_published);
      if (!found) {
        skipped.push_back(p.id + ": no published agent version is in " + v);
        continue;
      }
      v = *found;
    } else if (!is_exact_version(v)) {
      policy_error(p, "manifest version '" + v + "' is neither latest, a version nor a version range");
      continue;
    }
    if (std::string why = refused_downgrade(v, running, p.agent_upgrade.allow_downgrade, downgrade);
        !why.empty()) {
      skipped.push_back(p.id + ": " + why);
      continue;
    }
    if (best.version.empty() || compare_package_versions(v, best.version) > 0) {
      best.version = v;
      best.policy = p.id;
      best.manifest = p.agent_upgrade.manifest;
      best.not_before = start;
      chosen = &p;
    }
  }
  if (chosen) {
    best.reason = "policy " + best.policy + " names " + best.version;
    if (chosen->start_window > 0 && random_below) {
      std::int64_t delay = random_below(chosen->start_window);
      delay = std::clamp<std::int64_t>(delay, 0, chosen->start_window - 1);
      best.not_before += std::chrono::seconds{delay};
      // The delay stays out of the reason so that re-planning does not change it.
      best.reason += " within a startWindow of " + std::to_string(chosen->start_window) + "s";
    }
  } else {
    best.reason = "no applicable policy names an agent version";
  }
  for (const auto& s : skipped) best.reason += "; skipped " + s;
  return best;
}

Result<Plan> choose_target(const NodeRecord& node, const std::vector<ManagementPolicy>& policies,
                           const std::vector<std::string>& published, const std::string& running, Wall now,
                           const ManifestFetcher& fetch_manifest, const DowngradeRule& downgrade) {
  return choose_target(node, std::nullopt, policies, published, running, now, fetch_manifest, RandomBelow{},
                       downgrade);
}

Plan plan_from_anax(const std::vector<AnaxJob>& jobs, const std::string& in_flight, bool hub_coordinates,
                    const std::string& running, const DowngradeRule& downgrade) {
  Plan p;
  const AnaxJob* pick = nullptr;
  std::string seen;
  for (const AnaxJob& j : jobs) {
    seen += (seen.empty() ? "" : ", ") + j.policy + " " + j.status;
    if (j.version.empty()) continue;
    const auto status = mgmt_status_from_string(j.status);
    if (j.policy == in_flight &&
        (status == MgmtStatus::initiated || status == MgmtStatus::rollback_started)) {
      pick = &j;
      break;
    }
    bool ready =
        status == MgmtStatus::downloaded || (hub_coordinates && status == MgmtStatus::ha_node_waiting);
    if (!ready) continue;
    // anax's job is not a reason to move back: the same rule as for the hub's policies.
    if (std::string why = refused_downgrade(j.version, running, j.allow_downgrade, downgrade); !why.empty()) {
      p.policy_errors[j.policy] = why;
      continue;
    }
    if (!pick || j.scheduled_time < pick->scheduled_time) pick = &j;
  }
  if (!pick) {
    p.reason = "no job of anax's is ready" + (seen.empty() ? std::string() : " (" + seen + ")");
    return p;
  }
  p.version = pick->version;
  p.policy = pick->policy;
  p.manifest = pick->manifest;
  p.reason = "anax's job " + pick->policy + " is " + pick->status;
  return p;
}

}  // namespace agentd
