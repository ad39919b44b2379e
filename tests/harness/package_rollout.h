// A rollout with the package upgrader (AGENTD_UPGRADE_METHOD=packages): every
// member has its own isolated dpkg (or rpm) root holding version 1.0.0 of a real
// `horizon` package, pins the publisher's public key, and checks the agent's
// health with the package's own usr/bin/horizon-health. The publisher builds
// later versions with the system's tools and releases them as the hub expects
// (exchange-api.md §5): the package in org IBM, a signed manifest in the org,
// AgentFileVersion and the node management policy.
// Set-up failures throw std::runtime_error, as in harness.h.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "harness/harness.h"
#include "harness/packages.h"

namespace agentd::harness {

// How a test build of the agent package behaves. Paths named "in the root" are
// seen from inside the member's root (maintainer scripts run chrooted there).
struct AgentPackage {
  std::string version;
  bool sick = false;              // usr/bin/horizon-health exits 1
  bool failing_postinst = false;  // the postinst exits 1
  // usr/bin/horizon-health creates <root>/tmp/health-started, then waits until
  // <root>/tmp/healthy exists (it runs on the host, and finds the root from its own path).
  bool health_waits = false;
  // The preinst appends a line to /tmp/preinst-runs, creates /tmp/preinst-started
  // and waits until /tmp/go exists (all in the root).
  bool preinst_waits = false;
  // usr/share/horizon/padding.bin of this many incompressible bytes, for a large package.
  std::size_t padding_bytes = 0;
  // The postinst takes this long (sleep), like a real agent's configuration step.
  double install_seconds = 0;
};

// This machine's Debian architecture (`dpkg --print-architecture`), the build's without dpkg.
std::string machine_arch();

struct PackageRolloutOptions {
  int members = 3;
  std::string group = "g";             // "" = the members are in no group
  std::string package_system = "deb";  // deb | rpm
  MemberOptions member;                // its `extra` lines come after the package settings (and win)
  // Every member beside an anax stand-in (AGENTD_ANAX=on) whose version is the
  // root's usr/share/horizon/VERSION and whose cron executor, when armed, installs
  // anax's bundle into the root with the package system. A release is then also
  // published as anax's bundle, horizon-agent-linux-{deb|rpm}-ARCH.tar.gz.
  bool beside_anax = false;
  AnaxOptions anax;  // package_type, arch, version_file and install_command are set here
};

class PackageRollout {
 public:
  // The hub, org, nodes n1..nN and the group (nothing published), and every
  // member's root with 1.0.0 installed; members are configured, not started.
  explicit PackageRollout(PackageRolloutOptions options = {});
  // Lets every waiting maintainer script and health check finish (they run
  // detached from agentd and would otherwise outlive the test), then stops everything.
  ~PackageRollout();
  PackageRollout(const PackageRollout&) = delete;
  PackageRollout& operator=(const PackageRollout&) = delete;

  Rollout& rollout() { return *rollout_; }
  Hub& hub() { return rollout_->hub(); }
  Member& member(std::size_t i) { return rollout_->member(i); }
  Member& member(const std::string& node) { return rollout_->member(node); }
  std::size_t size() const { return members_; }
  const std::string& arch() const { return arch_; }
  const testing::SigningKey& key() const { return key_; }
  const std::string& package_system() const { return options_.package_system; }

  // Builds the package (.deb or .rpm by package_system) in a directory of its
  // own and returns its path; its file name is what the package system names it.
  std::string build(const AgentPackage& package);
  // Releases `version` with `package_file`: the file as IBM/agent_software_files-<version>/<name>
  // (beside anax also in its bundle, listed after it),
  // the manifest "agent-<version>" in the org with its SHA-256 and size, signed
  // with key(); AgentFileVersion; the NMP created or pointed at the new manifest.
  void publish(const std::string& version, const std::string& package_file);
  // The data of the released package object, replaced (e.g. damaged) in place; metadata as before.
  void replace_package_data(const std::string& version, const std::string& package_file,
                            const std::string& data);

  static std::string root(const Member& m) { return m.dir() + "/root"; }
  // <state>/downloads/<version>, where the pipeline fetches into.
  static std::string download_dir(Member& m, const std::string& version) {
    return m.state_dir() + "/downloads/" + version;
  }
  // deb: "${Version} ${db:Status-Abbrev}" trimmed, e.g. "2.0.0 ii"; rpm:
  // "VERSION-RELEASE", e.g. "2.0.0-1"; "" when the package is not installed.
  std::string installed(const Member& m);
  // installed(m) == want for every member.
  bool all_installed(const std::string& want);
  // Creates <root>/<rel> in every member's root (e.g. "tmp/go", "tmp/healthy").
  void touch_in_roots(const std::string& rel);

 private:
  void set_up_member(Member& m, const std::string& v1_package);
  std::string package_file_name(const std::string& version) const;
  std::string bundle_file_name() const;

  PackageRolloutOptions options_;
  std::size_t members_ = 0;
  std::string arch_;
  testing::SigningKey key_;
  std::unique_ptr<Rollout> rollout_;
  bool nmp_created_ = false;
  int builds_ = 0;
};

}  // namespace agentd::harness
