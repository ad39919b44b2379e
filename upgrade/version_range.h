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

// True for a bracketed "[a,b)" form whose ends are versions (b may be INFINITY),
// as anax IsVersionExpression; a bare version is not.
bool is_version_range_expression(const std::string& expr);

// anax CompareVersions: negative, zero, positive like strcmp. Dotted numeric
// parts compare as numbers ("2.0" == "2.0.0"), a "-suffix" sorts before the bare
// version (1.2.0-rc1 < 1.2.0), suffixes in Semantic Versioning order
// (rc.2 < rc.11), and INFINITY above every version. Errc::parse unless both are
// version strings or INFINITY.
Result<int> compare_versions(const std::string& a, const std::string& b);

// The same order, total over all strings, for versions that anax's grammar does
// not cover: package versions ("2.0.0-1+deb12u1", "1:2.0.0") and the version
// floor. Digits of each dotted part count, anything else in it is ignored; agrees
// with compare_versions wherever that one answers.
int compare_package_versions(const std::string& a, const std::string& b);

// The highest of `published` inside `range`, ignoring entries that are not
// version strings (as anax findBestMatchingVersion); nullopt when none is.
std::optional<std::string> highest_in_range(const VersionRange& range,
                                            const std::vector<std::string>& published);

}  // namespace agentd
