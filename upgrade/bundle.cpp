#include "upgrade/bundle.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "upgrade/pipeline.h"
#include "upgrade/verify.h"

namespace agentd {

Result<BundleMember> find_bundle_member(const std::string& listing, const BundleWant& want,
                                        const std::string& bundle) {
  const bool rpm = want.kind == PackageKind::rpm;
  std::vector<std::string> endings =
      rpm ? std::vector<std::string>{"." + rpm_arch(want.arch) + ".rpm", ".noarch.rpm"}
          : std::vector<std::string>{"_" + want.arch + ".deb", "_all.deb"};
  const std::string prefix = want.package + (rpm ? "-" : "_");
  std::string member, plain;
  std::size_t start = 0;
  const std::string& text = listing;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? text.size() : nl + 1;
    std::string base = line.starts_with("./") ? line.substr(2) : line;
    if (base.find('/') != std::string::npos || !base.starts_with(prefix)) continue;
    // "horizon-cli_..." starts with "horizon" too: the next part must be the version.
    char after = base.size() > prefix.size() ? base[prefix.size()] : '\0';
    if (after < '0' || after > '9') continue;
    if (std::none_of(endings.begin(), endings.end(), [&](const std::string& e) { return base.ends_with(e); }))
      continue;
    if (!member.empty())
      return fail(Errc::verification, bundle + " holds more than one " + want.package + " package");
    member = line;
    plain = base;
  }
  if (member.empty())
    return fail(Errc::verification, bundle + " holds no " + want.package + " package for " + want.arch);
  if (!safe_file_name(plain))
    return fail(Errc::verification, bundle + ": unsafe member name '" + plain + "'");
  return BundleMember{member, plain};
}

Result<std::string> unpack_bundle(ProcessRunner& runner, std::chrono::milliseconds timeout,
                                  const BundleWant& want, const std::string& bundle, const std::string& dir) {
  ProcessSpec list;
  list.argv = {"tar", "-tzf", bundle};
  list.timeout = timeout;
  list.max_output = 1024 * 1024;
  auto l = runner.run(list);
  if (!l) return std::unexpected(l.error());
  if (l->exit_code != 0)
    return fail(Errc::verification, bundle + " is not a readable tar.gz: " + output_tail(l->output, 300));
  auto found = find_bundle_member(l->output, want, bundle);
  if (!found) return std::unexpected(found.error());
  const std::string& member = found->member;
  const std::string& plain = found->plain;
  ProcessSpec extract;
  extract.argv = {"tar", "-xzf", bundle, "-C", dir, "--no-same-owner", "--no-same-permissions", "--", member};
  extract.timeout = timeout;
  auto x = runner.run(extract);
  if (!x) return std::unexpected(x.error());
  if (x->exit_code != 0)
    return fail(Errc::io, "extracting " + plain + " from " + bundle + ": " + output_tail(x->output, 300));
  // Only a plain file may stand for the package: a symlink or hard link
  // member would make us hash and install some other file.
  const std::string extracted = dir + "/" + plain;
  struct stat st {};
  if (::lstat(extracted.c_str(), &st) != 0)
    return fail(Errc::io, "cannot stat " + extracted + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
    (void)::unlink(extracted.c_str());
    return fail(Errc::verification, bundle + ": member " + member + " is not a regular file (" +
                                        (S_ISLNK(st.st_mode)   ? "a symlink"
                                         : S_ISREG(st.st_mode) ? "a hard link"
                                                               : "not a file") +
                                        "); refusing it");
  }
  return plain;
}

}  // namespace agentd
