// Versions and version ranges from manifests, policies and the published list
// (upgrade/version_range.h, upgrade/plan.h). Input: two lines. Comparison must
// be an order: antisymmetric, and a range holds only version strings.
#include <cstdlib>

#include "fuzz_common.h"
#include "upgrade/plan.h"
#include "upgrade/version_floor.h"
#include "upgrade/version_range.h"

using namespace agentd;

namespace {
int sign(int v) {
  return (v > 0) - (v < 0);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split(fuzz::bytes(data, size), '\n', 2);
  const std::string& a = parts[0];
  const std::string b = parts.size() > 1 ? parts[1] : std::string();
  if (sign(compare_package_versions(a, b)) != -sign(compare_package_versions(b, a))) std::abort();
  if (compare_package_versions(a, a) != 0) std::abort();
  // compare_versions answers exactly for versions and INFINITY, and then agrees.
  auto ab = compare_versions(a, b);
  const bool versions = (is_version_string(a) || a == kInfinity) && (is_version_string(b) || b == kInfinity);
  if (ab.has_value() != versions) std::abort();
  if (ab && *ab != compare_package_versions(a, b)) std::abort();
  if (is_version_range_expression(a) && !parse_version_range(a)) std::abort();
  (void)package_version_matches(a, b);
  (void)agent_version_of(a, {b, "2.31.0"});
  (void)floor_version_of(a);
  auto range = parse_version_range(a);
  if (range) {
    if (range->contains(b) && !is_version_string(b)) std::abort();
    (void)range->to_string();
    (void)highest_in_range(*range, {b, "1.0.0", "2.31.0"});
  }
  return 0;
}
