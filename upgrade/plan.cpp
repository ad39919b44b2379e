#include "plan.h"

#include <algorithm>
#include <cctype>

namespace agentd {

namespace {
// Splits "1.2.3-rc1" into numeric parts and the suffix after '-'.
void split_version(const std::string& v, std::vector<long long>* parts, std::string* suffix) {
  std::string core = v, rest;
  auto dash = v.find('-');
  if (dash != std::string::npos) {
    core = v.substr(0, dash);
    rest = v.substr(dash + 1);
  }
  std::size_t i = 0;
  while (i <= core.size()) {
    auto dot = core.find('.', i);
    std::string part = core.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
    long long n = 0;
    for (char c : part) n = std::isdigit(static_cast<unsigned char>(c)) ? n * 10 + (c - '0') : n;
    parts->push_back(n);
    if (dot == std::string::npos) break;
    i = dot + 1;
  }
  *suffix = rest;
}

bool is_exact_version(const std::string& v) {
  if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0]))) return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+' || c == '_';
  });
}
}  // namespace

int compare_versions(const std::string& a, const std::string& b) {
  std::vector<long long> pa, pb;
  std::string sa, sb;
  split_version(a, &pa, &sa);
  split_version(b, &pb, &sb);
  std::size_t n = std::max(pa.size(), pb.size());
  pa.resize(n, 0);
  pb.resize(n, 0);
  for (std::size_t i = 0; i < n; ++i)
    if (pa[i] != pb[i]) return pa[i] < pb[i] ? -1 : 1;
  if (sa == sb) return 0;
  if (sa.empty()) return 1;
  if (sb.empty()) return -1;
  return sa < sb ? -1 : 1;
}

Result<Plan> choose_target(const NodeRecord& node, const std::vector<ManagementPolicy>& policies,
                           const std::vector<std::string>& published, const std::string& running, Wall now,
                           const ManifestFetcher& fetch_manifest) {
  Plan best;
  std::vector<std::string> skipped;
  std::vector<ManagementPolicy> sorted = policies;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  for (const auto& p : sorted) {
    if (!p.enabled || p.agent_upgrade.manifest.empty()) continue;
    if (!p.patterns.empty()) {
      if (std::find(p.patterns.begin(), p.patterns.end(), node.pattern) == p.patterns.end()) continue;
    } else if (!p.constraints.empty()) {
      skipped.push_back(p.id + ": constraint expressions are not evaluated yet");
      continue;
    }
    if (p.start != "now" && !p.start.empty()) {
      Wall start;
      if (!parse_time(p.start, &start)) {
        skipped.push_back(p.id + ": unsupported start '" + p.start + "'");
        continue;
      }
      if (start > now) {
        skipped.push_back(p.id + ": starts at " + p.start);
        continue;
      }
    }
    auto manifest = fetch_manifest(p.agent_upgrade.manifest);
    if (!manifest) {
      skipped.push_back(p.id + ": manifest " + p.agent_upgrade.manifest + ": " + manifest.error().describe());
      continue;
    }
    std::string v = manifest->software.version;
    if (v == "latest") {
      if (published.empty()) {
        skipped.push_back(p.id + ": 'latest' but no agent versions are published");
        continue;
      }
      v = *std::max_element(published.begin(), published.end(),
                            [](const auto& a, const auto& b) { return compare_versions(a, b) < 0; });
    } else if (v.empty()) {
      continue;  // the manifest upgrades certificates/configuration only
    } else if (!is_exact_version(v)) {
      skipped.push_back(p.id + ": version '" + v + "' is not supported (ranges come later)");
      continue;
    }
    int cmp = running.empty() ? 1 : compare_versions(v, running);
    if (cmp < 0 && !p.agent_upgrade.allow_downgrade) {
      skipped.push_back(p.id + ": " + v + " would be a downgrade");
      continue;
    }
    if (best.version.empty() || compare_versions(v, best.version) > 0) {
      best.version = v;
      best.policy = p.id;
      best.manifest = p.agent_upgrade.manifest;
    }
  }
  if (!best.version.empty()) {
    best.reason = "policy " + best.policy + " names " + best.version;
  } else {
    best.reason = "no applicable policy names an agent version";
  }
  for (const auto& s : skipped) best.reason += "; skipped " + s;
  return best;
}

}  // namespace agentd
