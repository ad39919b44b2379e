// Open Horizon's agent bundle (horizon-agent-linux-deb-arm64.tar.gz): a tar.gz
// of the agent's packages, one per package system and architecture. agentd
// takes the agent's own package out of it (upgrade/pipeline.h).
#pragma once

#include <chrono>
#include <string>

#include "agentd/process.h"
#include "agentd/result.h"
#include "upgrade/installer.h"

namespace agentd {

// What to take out of a bundle: the package of `package` for `kind` and `arch`.
struct BundleWant {
  PackageKind kind = PackageKind::deb;
  std::string package;
  std::string arch;  // Debian name (rpm_arch gives rpm's)
};

struct BundleMember {
  std::string member;  // as the archive lists it ("./horizon_2.1.0_arm64.deb")
  std::string plain;   // its plain file name ("horizon_2.1.0_arm64.deb")
};

// The one member of `listing` (tar -t output, one name a line) that is the
// wanted package: `<package>_*_<arch>.deb` / `_all.deb`, or
// `<package>-*.<rpmarch>.rpm` / `.noarch.rpm`, at the top of the archive and
// with a safe plain name. Errc::verification naming `bundle` otherwise.
Result<BundleMember> find_bundle_member(const std::string& listing, const BundleWant& want,
                                        const std::string& bundle);

// The agent's own package out of `bundle` (already verified against the signed
// manifest): only that one member is extracted, by its plain name, into `dir`,
// and it must be a plain file. Returns its plain name.
Result<std::string> unpack_bundle(ProcessRunner& runner, std::chrono::milliseconds timeout,
                                  const BundleWant& want, const std::string& bundle, const std::string& dir);

}  // namespace agentd
