// Which agent version this node should run, from the node management policies
// that apply to it (exchange-api.md §4, §5), as anax decides it
// (nodemanagement/node_management_worker.go VerifyCompatible,
// download/download_worker.go findBestMatchingVersion): enabled policies whose
// patterns hold the node's pattern, or, for a node without a pattern, whose
// constraints the node's policy properties satisfy (upgrade/constraints.h);
// `start` "now" or RFC 3339 with a random delay in [0, startWindow); the
// manifest's softwareUpgrade.version "latest", exact, or a range resolved
// against the published agent versions (upgrade/version_range.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agentd/anax.h"
#include "agentd/clock.h"
#include "agentd/exchange_types.h"
#include "agentd/result.h"
#include "upgrade/constraints.h"

namespace agentd {

struct Plan {
  std::string version;   // "" = nothing to do
  std::string policy;    // "org/name" of the policy that named it
  std::string manifest;  // its manifest reference
  std::string reason;    // why this target (or why none), for status and logs
  // Not before this time: the policy's start ("now": the evaluation time, on our
  // own clock) plus a uniform random delay in [0, startWindow) seconds
  // (anax SetScheduledStartTime). Meaningful only when version is set.
  Wall not_before{};
  // Policy id -> why it could not be evaluated (a constraint the language does
  // not accept, an unreadable start, a version form that cannot be resolved):
  // errors for that policy's management status, not reasons to stop.
  std::map<std::string, std::string> policy_errors;
};

// A package system's version names an agent version: "2.0.0" is the package
// version "2.0.0", "2.0.0-1" (a Debian revision or an rpm release) or
// "1:2.0.0-1" (with an epoch).
bool package_version_matches(const std::string& package_version, const std::string& agent_version);

// The agent version the installed package stands for, among the published
// ones: the installed version itself when it is published, else the one
// published version it matches (package_version_matches), else unchanged.
std::string agent_version_of(const std::string& installed, const std::vector<std::string>& published);

// Anti-rollback (upgrade/version_floor.h): a version below what runs or below
// the floor needs both the policy's allowDowngrade and the node's own consent.
struct DowngradeRule {
  std::string floor;             // the highest version this node installed or ran; "" = none known
  bool allowed_locally = false;  // AGENTD_ALLOW_DOWNGRADE
};

using ManifestFetcher = std::function<Result<Manifest>(const std::string& manifest_ref)>;

// A uniform random integer in [0, n) for n > 0 (the startWindow delay).
using RandomBelow = std::function<std::int64_t(std::int64_t n)>;

// Chooses the highest target among applicable policies; a policy whose manifest
// cannot be read or names a version that cannot be resolved is skipped with its
// reason in Plan::reason. Downgrades (below `running` or below the rule's
// floor) only with allowDowngrade and the rule's local consent. Pure: time and
// randomness come in as arguments.
// node_properties: the node policy's management properties (top level merged
// with "management", anax NodePolicy.GetManagementPolicy, which carries the
// built-in openhorizon.* properties); nullopt while the node policy is not
// known, and then policies selecting by constraints are skipped as such.
// The node's own management constraints (which anax also checks against the
// policy's properties) are not evaluated yet. A manifest version "1.2.3" is
// exact, as in anax; only "[a,b)" forms are ranges.
Result<Plan> choose_target(const NodeRecord& node, const std::optional<Properties>& node_properties,
                           const std::vector<ManagementPolicy>& policies,
                           const std::vector<std::string>& published_versions, const std::string& running,
                           Wall now, const ManifestFetcher& fetch_manifest, const RandomBelow& random_below,
                           const DowngradeRule& downgrade = {});

// As above without node properties and without a startWindow delay
// (not_before = the start).
Result<Plan> choose_target(const NodeRecord& node, const std::vector<ManagementPolicy>& policies,
                           const std::vector<std::string>& published_versions, const std::string& running,
                           Wall now, const ManifestFetcher& fetch_manifest,
                           const DowngradeRule& downgrade = {});

// Beside anax (anax-coexistence.md §3): the target is anax's own job. A job in
// `initiated` or `rollback started` for `in_flight` (the policy of our upgrade in
// progress) stays ours; otherwise the earliest scheduled job whose files anax has
// downloaded: `downloaded`, or also `ha node waiting` when the hub coordinates
// the group (agentd's lease is then the group's lock, and anax's wait for the
// agbot's must not set the pace). On a hub without the coordination extension
// only `downloaded` counts: the agbot's lock is the group's lock. A ready job that
// would move the node below `running` or the floor without the job's
// allowDowngrade and the node's consent is not taken: it is in policy_errors, for
// a final status that frees the agbot's lock.
Plan plan_from_anax(const std::vector<AnaxJob>& jobs, const std::string& in_flight, bool hub_coordinates,
                    const std::string& running = "", const DowngradeRule& downgrade = {});

// Why `version` may not be installed over `running` (or below the floor): "" when it may.
std::string refused_downgrade(const std::string& version, const std::string& running, bool policy_allows,
                              const DowngradeRule& downgrade);

}  // namespace agentd
