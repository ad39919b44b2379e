// Open Horizon version ranges (OSGi style, as anax semanticversion/version.go):
// "[1.0.0,2.0.0)", "(1.0,INFINITY)", or a bare version "1.2.3" meaning
// "[1.2.3,INFINITY)". Versions are "x", "x.y" or "x.y.z" with an optional
// "-prerelease"; no whitespace anywhere.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "agentd/result.h"

namespace agentd {

inline constexpr const char* kInfinity = "INFINITY";

// anax IsVersionString without "INFINITY": 1-3 dot-separated digit runs, then an
// optional "-" and [0-9A-Za-z.-].
bool is_version_string(const std::string& v);

struct VersionRange {
  std::string start;
  bool start_inclusive = true;
  std::string end = kInfinity;  // kInfinity: no upper bound
  bool end_inclusive = false;

  // False for anything that is not a version string.
  bool contains(const std::string& version) const;
  std::string to_string() const;  // "[1.0.0,2.0.0)"
};

// Errc::parse naming the expression for anything else.
Result<VersionRange> parse_version_range(const std::string& expr);

// True for a bracketed "[a,b)" form (anax IsVersionExpression); a bare version is not.
bool is_version_range_expression(const std::string& expr);

// The highest of `published` inside `range`, ignoring entries that are not
// version strings (as anax findBestMatchingVersion); nullopt when none is.
std::optional<std::string> highest_in_range(const VersionRange& range,
                                            const std::vector<std::string>& published);

}  // namespace agentd
