// Real packages for tests and the demo: small .deb, .rpm and tarball builds of
// an agent package, isolated install roots for dpkg and rpm, and signing keys.
// Built with the system's own tools (dpkg-deb, rpmbuild, tar), so what agentd
// installs in a test is what a package system installs on a device.
#pragma once

#include <map>
#include <string>

#include "agentd/result.h"

namespace agentd::testing {

struct PackageSpec {
  std::string name = "horizon";
  std::string version;         // e.g. "2.0.0" (deb Version; rpm Version with Release 1 -> "2.0.0-1")
  std::string arch = "amd64";  // Debian name; rpm gets the matching name (x86_64, aarch64, armv7hl)
  // Files to install: path relative to the root ("usr/bin/horizon-version") ->
  // content. A content starting with "#!" is installed executable (0755), else 0644.
  std::map<std::string, std::string> files;
  std::string preinst;   // shell script body run before unpacking ("" = none); deb preinst, rpm %pre
  std::string postinst;  // shell script body run after unpacking ("" = none); deb postinst, rpm %post
};

// Builds `<out_dir>/<name>_<version>_<arch>.deb` with dpkg-deb; returns its path.
Result<std::string> build_deb(const PackageSpec& spec, const std::string& out_dir);
// Builds `<out_dir>/<name>-<version>-1.<rpmarch>.rpm` with rpmbuild; returns its path.
// Errc::unsupported when rpmbuild is not installed.
Result<std::string> build_rpm(const PackageSpec& spec, const std::string& out_dir);
// Builds `<out_dir>/<name>-<version>.tar.gz` holding NAME, VERSION, install.sh
// (copies `files` under $AGENTD_INSTALL_ROOT, runs postinst) and the files.
Result<std::string> build_tarball(const PackageSpec& spec, const std::string& out_dir);

// An empty dpkg root (var/lib/dpkg/{status,available,info,updates,triggers})
// for `dpkg --root`; with /bin/sh (a static busybox copy, when
// /bin/busybox is static) so maintainer scripts can run in the chroot.
Status make_dpkg_root(const std::string& root);
// An empty rpm root (`rpm --root ROOT --initdb`), with /bin/sh as above.
Status make_rpm_root(const std::string& root);
// True when /bin/busybox is a static binary (maintainer scripts can run in the roots above).
bool have_static_shell();
// True when the tool is in PATH.
bool have_tool(const std::string& name);

// A generated signing key (PEM text) for tests and the demo.
struct SigningKey {
  std::string private_pem;
  std::string public_pem;  // SubjectPublicKeyInfo, what /etc/agentd/trusted.d/ holds
};
SigningKey make_ed25519_key();
// Raw Ed25519 signature of `data`; base64 of it is what a CSS object's metadata carries.
std::string sign(const SigningKey& key, const std::string& data);
std::string base64(const std::string& bytes);

}  // namespace agentd::testing
