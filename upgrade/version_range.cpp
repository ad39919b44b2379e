#include "version_range.h"

#include <cctype>

#include "plan.h"

namespace agentd {

bool is_version_string(const std::string& v) {
  if (v.empty()) return false;
  std::size_t dash = v.find('-');
  std::string core = v.substr(0, dash);
  int parts = 0;
  std::size_t i = 0;
  while (true) {
    std::size_t dot = core.find('.', i);
    std::string part = core.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
    if (part.empty()) return false;
    for (char c : part)
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    if (++parts > 3) return false;
    if (dot == std::string::npos) break;
    i = dot + 1;
  }
  if (dash == std::string::npos) return true;
  for (std::size_t k = dash + 1; k < v.size(); ++k) {
    unsigned char c = static_cast<unsigned char>(v[k]);
    if (!std::isalnum(c) && c != '-' && c != '.') return false;
  }
  return true;
}

namespace {
bool is_bound(const std::string& v) {
  return v == kInfinity || is_version_string(v);
}
}  // namespace

bool VersionRange::contains(const std::string& version) const {
  if (!is_version_string(version)) return false;
  int lo = compare_versions(version, start);
  if (lo < 0 || (lo == 0 && !start_inclusive)) return false;
  if (end == kInfinity) return true;
  int hi = compare_versions(version, end);
  return hi < 0 || (hi == 0 && end_inclusive);
}

std::string VersionRange::to_string() const {
  return (start_inclusive ? "[" : "(") + start + "," + end + (end_inclusive ? "]" : ")");
}

bool is_version_range_expression(const std::string& expr) {
  if (expr.size() < 2) return false;
  char l = expr.front(), r = expr.back();
  return (l == '[' || l == '(') && (r == ']' || r == ')') && expr.find(',') != std::string::npos;
}

Result<VersionRange> parse_version_range(const std::string& expr) {
  auto bad = [&](const std::string& why) {
    return fail(Errc::parse, "version range '" + expr + "': " + why);
  };
  if (expr.empty()) return bad("empty");
  if (expr.find_first_of(" \t\r\n") != std::string::npos) return bad("whitespace is not permitted");
  VersionRange r;
  char l = expr.front();
  if (l != '[' && l != '(' && expr.find(',') == std::string::npos) {
    // A single version is the open range from it (anax Version_Expression_Factory).
    if (!is_version_string(expr)) return bad("not a version");
    r.start = expr;
    return r;
  }
  if (l != '[' && l != '(') return bad("does not begin with '[' or '('");
  char rb = expr.back();
  if (expr.size() < 2 || (rb != ']' && rb != ')')) return bad("does not end with ']' or ')'");
  std::string inner = expr.substr(1, expr.size() - 2);
  std::size_t comma = inner.find(',');
  if (comma == std::string::npos || inner.find(',', comma + 1) != std::string::npos)
    return bad("needs exactly two versions separated by ','");
  r.start = inner.substr(0, comma);
  r.end = inner.substr(comma + 1);
  if (!is_version_string(r.start)) return bad("'" + r.start + "' is not a version");
  if (!is_bound(r.end)) return bad("'" + r.end + "' is not a version or INFINITY");
  r.start_inclusive = l == '[';
  r.end_inclusive = rb == ']' && r.end != kInfinity;
  return r;
}

std::optional<std::string> highest_in_range(const VersionRange& range,
                                            const std::vector<std::string>& published) {
  std::optional<std::string> best;
  for (const auto& v : published)
    if (range.contains(v) && (!best || compare_versions(v, *best) > 0)) best = v;
  return best;
}

}  // namespace agentd
