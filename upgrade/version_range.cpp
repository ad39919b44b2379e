#include "version_range.h"

#include <algorithm>
#include <cctype>
#include <vector>

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
    for (char c : part) {
      // Saturate: a 30-digit part must not overflow (it still sorts above smaller ones).
      if (std::isdigit(static_cast<unsigned char>(c)))
        n = n > 100'000'000'000'000'000LL ? n : n * 10 + (c - '0');
    }
    parts->push_back(n);
    if (dot == std::string::npos) break;
    i = dot + 1;
  }
  *suffix = rest;
}

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// Semantic Versioning pre-release order, as anax ComparePrereleases:
// dot-separated identifiers, numeric ones numerically and below alphanumeric ones.
int compare_prereleases(const std::string& a, const std::string& b) {
  if (a == b) return 0;
  if (a.empty()) return 1;
  if (b.empty()) return -1;
  std::size_t i = 0, j = 0;
  while (true) {
    std::size_t da = a.find('.', i), db = b.find('.', j);
    std::string x = a.substr(i, da == std::string::npos ? std::string::npos : da - i);
    std::string y = b.substr(j, db == std::string::npos ? std::string::npos : db - j);
    if (x != y) {
      bool nx = all_digits(x), ny = all_digits(y);
      if (nx && ny) {
        std::string tx = x.substr(std::min(x.find_first_not_of('0'), x.size()));
        std::string ty = y.substr(std::min(y.find_first_not_of('0'), y.size()));
        if (tx.size() != ty.size()) return tx.size() < ty.size() ? -1 : 1;
        if (tx != ty) return tx < ty ? -1 : 1;
      } else if (nx != ny) {
        return nx ? -1 : 1;
      } else {
        return x < y ? -1 : 1;
      }
    }
    if (da == std::string::npos || db == std::string::npos) {
      if (da == db) return 0;
      return da == std::string::npos ? -1 : 1;  // more identifiers sort higher
    }
    i = da + 1;
    j = db + 1;
  }
}

bool is_bound(const std::string& v) {
  return v == kInfinity || is_version_string(v);
}
}  // namespace

int compare_package_versions(const std::string& a, const std::string& b) {
  if (a == kInfinity || b == kInfinity) return (a == kInfinity) - (b == kInfinity);
  std::vector<long long> pa, pb;
  std::string sa, sb;
  split_version(a, &pa, &sa);
  split_version(b, &pb, &sb);
  std::size_t n = std::max(pa.size(), pb.size());
  pa.resize(n, 0);
  pb.resize(n, 0);
  for (std::size_t i = 0; i < n; ++i)
    if (pa[i] != pb[i]) return pa[i] < pb[i] ? -1 : 1;
  return compare_prereleases(sa, sb);
}

Result<int> compare_versions(const std::string& a, const std::string& b) {
  for (const std::string* v : {&a, &b})
    if (!is_bound(*v)) return fail(Errc::parse, "'" + v->substr(0, 64) + "' is not a version");
  return compare_package_versions(a, b);
}

bool VersionRange::contains(const std::string& version) const {
  if (!is_version_string(version)) return false;
  auto lo = compare_versions(version, start);
  if (!lo || *lo < 0 || (*lo == 0 && !start_inclusive)) return false;
  auto hi = compare_versions(version, end);
  return hi && (*hi < 0 || (*hi == 0 && end_inclusive));
}

std::string VersionRange::to_string() const {
  return (start_inclusive ? "[" : "(") + start + "," + end + (end_inclusive ? "]" : ")");
}

bool is_version_range_expression(const std::string& expr) {
  // anax IsVersionExpression also requires both ends to be versions; it lets one
  // bracket be any character, which its own parser then refuses: this agrees with
  // the parser.
  return !expr.empty() && (expr.front() == '[' || expr.front() == '(') &&
         parse_version_range(expr).has_value();
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
    if (range.contains(v) && (!best || compare_versions(v, *best).value_or(0) > 0)) best = v;
  return best;
}

}  // namespace agentd
