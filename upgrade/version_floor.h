// Anti-rollback, as update frameworks do it (TUF, Mender): the highest agent
// version this node ever installed or ran, persisted in the state directory, so
// that a hub replaying an old, validly signed manifest cannot move the node
// back. Going below it needs the node's own consent (AGENTD_ALLOW_DOWNGRADE);
// the rollback to the kept previous package after a failed upgrade is not
// judged by it.
#pragma once

#include <string>

#include "agentd/result.h"

namespace agentd {

// The version a floor compares: an epoch ("1:") is dropped; anything that is
// not a plain version (digits first, then [0-9A-Za-z.+_-], at most 64
// characters) is "" (not recorded).
std::string floor_version_of(const std::string& version);

// The file's text ("2.31.0\n") to the version; Errc::parse for anything else.
Result<std::string> parse_version_floor(const std::string& text);

// The floor of one agent package lives in STATE_DIR/version-floor-PACKAGE:
// versions of different packages do not compare.
std::string version_floor_path(const std::string& state_dir, const std::string& package);

class VersionFloor {
 public:
  explicit VersionFloor(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  // "" while no version was ever recorded; a damaged file is an error (the
  // caller refuses to guess: it would lose the protection).
  Result<std::string> load() const;
  // Records `version` when it is above the floor (compare_package_versions); a version
  // that floor_version_of rejects is ignored.
  Status raise(const std::string& version) const;
  // Errc::verification when `target` is below the floor and downgrades are
  // not allowed locally; the message names both and the setting.
  Status check(const std::string& target, bool allow_downgrade) const;

 private:
  std::string path_;
};

}  // namespace agentd
