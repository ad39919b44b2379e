// Which agent version this node should run, from the node management policies
// that apply to it (exchange-api.md §4, §5). This first cut handles enabled
// policies selected by pattern or without constraints, `start` now/RFC 3339, and
// manifests naming an exact version or "latest"; constraint expressions, version
// ranges and startWindow come with the full upgrade pipeline.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agentd/clock.h"
#include "agentd/exchange.h"
#include "agentd/result.h"

namespace agentd {

struct Plan {
  std::string version;   // "" = nothing to do
  std::string policy;    // "org/name" of the policy that named it
  std::string manifest;  // its manifest reference
  std::string reason;    // why this target (or why none), for status and logs
};

// Negative, zero, positive like strcmp: dotted numeric parts compared as numbers,
// a "-suffix" sorts before the bare version (1.2.0-rc1 < 1.2.0).
int compare_versions(const std::string& a, const std::string& b);

using ManifestFetcher = std::function<Result<Manifest>(const std::string& manifest_ref)>;

// Chooses the highest target among applicable policies; a policy whose manifest
// cannot be read or names an unsupported version form is skipped with its reason
// in Plan::reason. Downgrades only with allowDowngrade.
Result<Plan> choose_target(const NodeRecord& node, const std::vector<ManagementPolicy>& policies,
                           const std::vector<std::string>& published_versions, const std::string& running,
                           Wall now, const ManifestFetcher& fetch_manifest);

}  // namespace agentd
