// Installing the agent's package with the node's own package system (issue:
// deb, rpm, or a tarball with an install script), outside agentd's cgroup
// (upgrade/detached.h). The same call installs a newer version and, for a
// rollback, reinstalls an older one (a real downgrade of the package).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "agentd/process.h"
#include "agentd/result.h"
#include "upgrade/detached.h"

namespace agentd {

enum class PackageKind { deb, rpm, tarball };

const char* to_string(PackageKind k);
// "deb", "rpm", "tarball"; anything else is Errc::config.
Result<PackageKind> package_kind_from_string(const std::string& s);
// deb when dpkg is in PATH, else rpm when rpm is, else tarball.
PackageKind detect_package_kind();
// The file suffix of the kind: ".deb", ".rpm", ".tar.gz".
const char* package_suffix(PackageKind k);

struct PackageInfo {
  std::string name;     // Package / %{NAME}; a tarball's NAME file
  std::string version;  // Version / %{VERSION}-%{RELEASE}; a tarball's VERSION file
  std::string arch;     // Architecture / %{ARCH}; "" for a tarball
};

struct InstallerOptions {
  PackageKind kind = PackageKind::deb;
  std::string package = "horizon";  // the agent's package name
  // Install root: "/" normally. Another directory installs into that tree
  // (dpkg --root, rpm --root; a tarball's install.sh gets AGENTD_INSTALL_ROOT):
  // for image builds and for tests in isolated roots.
  std::string root = "/";
  std::chrono::milliseconds timeout{1'800'000};  // per install
};

// A tarball is a .tar.gz whose top level holds NAME, VERSION and install.sh
// (run as `/bin/sh install.sh` from the unpacked directory, with
// AGENTD_INSTALL_ROOT, AGENTD_PACKAGE_VERSION in its environment); it installs
// and, for a rollback, reinstalls. Its installed version is recorded by agentd
// in <root>/var/lib/agentd/tarball-<package>.version after a successful install.
class Installer {
 public:
  virtual ~Installer() = default;
  virtual PackageKind kind() const = 0;
  // The installed version of the agent package; Errc::not_found when it is not
  // installed, and also when it is not cleanly installed (dpkg: half-installed or
  // half-configured after a failed maintainer script; rpm: two versions in the
  // database after an interrupted -U), with the state in the message.
  virtual Result<std::string> installed_version() = 0;
  // Reads a package file without installing it (dpkg-deb -f, rpm -qp after
  // rpm -K: digests and signatures checked, a tar listing). Errc::verification
  // when the file is not a package of this kind, names another package than
  // options.package, or (tarball) has a member with an absolute path or "..".
  virtual Result<PackageInfo> inspect(const std::string& file) = 0;
  // Installs `file` (upgrade or downgrade) through the DetachedRunner, in run
  // directory `run_dir` with run id `run_id`: calling again with the same run
  // directory after an agentd restart picks up the running or finished install
  // instead of starting a second one. Errc::process with the exit status and the
  // output's tail when the package system failed (rpm: also when the package's
  // %post or %posttrans failed, which rpm itself only warns about). Callers
  // inspect() the file first; a tarball is inspected again before it is unpacked.
  virtual Status install(const std::string& file, const std::string& run_id, const std::string& run_dir) = 0;
};

// `runner` (for inspect and installed_version) and `detached` must outlive the Installer.
std::unique_ptr<Installer> make_installer(InstallerOptions options, ProcessRunner& runner,
                                          DetachedRunner& detached);

}  // namespace agentd
