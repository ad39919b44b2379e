#include "upgrade/version_floor.h"

#include <algorithm>
#include <cctype>

#include "agentd/files.h"
#include "upgrade/version_range.h"

namespace agentd {

namespace {
constexpr std::size_t kMaxFloorBytes = 256;
constexpr std::size_t kMaxVersionLength = 64;
}  // namespace

std::string version_floor_path(const std::string& state_dir, const std::string& package) {
  return state_dir + "/version-floor-" + package;
}

std::string floor_version_of(const std::string& version) {
  std::string v = version;
  if (auto colon = v.find(':'); colon != std::string::npos && colon > 0 && colon < 4 &&
                                std::all_of(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(colon),
                                            [](unsigned char c) { return std::isdigit(c); }))
    v = v.substr(colon + 1);
  if (v.empty() || v.size() > kMaxVersionLength || !std::isdigit(static_cast<unsigned char>(v[0]))) return {};
  bool plain = std::all_of(v.begin(), v.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == '+' || c == '_';
  });
  return plain ? v : std::string();
}

Result<std::string> parse_version_floor(const std::string& text) {
  std::string v = text;
  if (v.ends_with('\n')) v.pop_back();
  if (v.empty() || floor_version_of(v) != v)
    return fail(Errc::parse, "the version floor is not a version: '" + v.substr(0, kMaxVersionLength) + "'");
  return v;
}

Result<std::string> VersionFloor::load() const {
  auto text = read_file(path_, kMaxFloorBytes);
  if (!text) {
    if (text.error().code == Errc::not_found) return std::string();
    return std::unexpected(text.error());
  }
  auto v = parse_version_floor(*text);
  if (!v) return fail(Errc::parse, path_ + ": " + v.error().message + " (remove the file to start afresh)");
  return v;
}

Status VersionFloor::raise(const std::string& version) const {
  const std::string v = floor_version_of(version);
  if (v.empty()) return {};
  auto current = load();
  if (!current) return std::unexpected(current.error());
  if (!current->empty() && compare_package_versions(v, *current) <= 0) return {};
  return write_file_atomic(path_, v + "\n", 0600);
}

Status VersionFloor::check(const std::string& target, bool allow_downgrade) const {
  auto floor = load();
  if (!floor) return std::unexpected(floor.error());
  if (floor->empty() || compare_package_versions(target, *floor) >= 0 || allow_downgrade) return {};
  return fail(Errc::verification, "version " + target + " is below " + *floor +
                                      ", the highest version this node ever installed or ran (" + path_ +
                                      "): refusing the downgrade (AGENTD_ALLOW_DOWNGRADE is off)");
}

}  // namespace agentd
