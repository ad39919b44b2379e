#include "upgrade/installer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "agentd/files.h"

namespace agentd {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kTailBytes = 800;  // of a failed command's output, in its error
constexpr std::chrono::milliseconds kQueryTimeout{120'000};
constexpr std::size_t kMaxVersionBytes = 4096;

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    lines.emplace_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// ProcessRunner merges stderr into the output: our query formats tag each line
// so that the package tools' warnings (e.g. rpm's NOKEY) are never taken for data.
std::map<std::string, std::string> tagged_lines(std::string_view output, std::string_view tag) {
  std::map<std::string, std::string> out;
  for (const auto& line : split_lines(output)) {
    if (!starts_with(line, tag)) continue;
    std::string_view rest = std::string_view(line).substr(tag.size());
    std::size_t eq = rest.find('=');
    if (eq == std::string_view::npos) continue;
    out[std::string(rest.substr(0, eq))] = std::string(rest.substr(eq + 1));
  }
  return out;
}

// A package name or version as the tools print it: one printable word.
bool plain_word(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

Status install_outcome(const std::string& tool, const Result<DetachedResult>& r,
                       std::chrono::milliseconds timeout) {
  if (!r) return std::unexpected(r.error());
  if (r->exit_code == 0 && !r->timed_out) return {};
  std::string tail = output_tail(r->output_tail, kTailBytes);
  std::string what = r->timed_out ? tool + " timed out after " + seconds_text(timeout) + " s"
                                  : tool + " exited with status " + std::to_string(r->exit_code);
  return fail(Errc::process, tail.empty() ? what + ", no output" : what + ": " + tail);
}

// The run's whole output when it is readable, else the tail the runner kept.
std::string whole_output(const DetachedResult& r) {
  if (r.output_path.empty()) return r.output_tail;
  auto text = read_file(r.output_path, 16 * 1024 * 1024);
  return text ? *text : r.output_tail;
}

// "/" or an absolute path without a trailing slash.
std::string normal_root(const std::string& root) {
  if (root.empty()) return "/";
  std::error_code ec;
  fs::path p = fs::absolute(root, ec);
  if (ec) p = root;
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

std::string under_root(const std::string& root, const std::string& rel) {
  return root == "/" ? "/" + rel : root + "/" + rel;
}

class PackageInstaller : public Installer {
 public:
  PackageInstaller(InstallerOptions options, ProcessRunner& runner, DetachedRunner& detached)
      : options_(std::move(options)), runner_(runner), detached_(detached) {
    options_.root = normal_root(options_.root);
  }

  PackageKind kind() const override { return options_.kind; }

 protected:
  bool isolated() const { return options_.root != "/"; }

  Result<ProcessResult> query(std::vector<std::string> argv) {
    ProcessSpec spec;
    spec.argv = std::move(argv);
    spec.timeout = kQueryTimeout;
    auto r = runner_.run(spec);
    if (r && r->timed_out) {
      return fail(Errc::process, spec.argv[0] + " timed out after " + seconds_text(kQueryTimeout) + " s");
    }
    return r;
  }

  Status check_name(const std::string& file, const PackageInfo& info) const {
    if (info.name != options_.package) {
      return fail(Errc::verification, file + " holds package '" + info.name + "', not the agent's package '" +
                                          options_.package + "'");
    }
    if (!plain_word(info.version))
      return fail(Errc::verification, file + ": unusable version '" + info.version + "'");
    return {};
  }

  Result<DetachedResult> run_detached(std::vector<std::string> argv,
                                      std::vector<std::pair<std::string, std::string>> env,
                                      const std::string& run_id, const std::string& run_dir) {
    DetachedSpec spec;
    spec.id = run_id;
    spec.argv = std::move(argv);
    spec.env = std::move(env);
    spec.dir = run_dir;
    spec.timeout = options_.timeout;
    return detached_.run(spec);
  }

  Status run_install(const std::string& tool, std::vector<std::string> argv,
                     std::vector<std::pair<std::string, std::string>> env, const std::string& run_id,
                     const std::string& run_dir) {
    return install_outcome(tool, run_detached(std::move(argv), std::move(env), run_id, run_dir),
                           options_.timeout);
  }

  InstallerOptions options_;
  ProcessRunner& runner_;
  DetachedRunner& detached_;
};

// ------------------------------------------------------------------ deb

const char* dpkg_status_word(char c) {
  switch (c) {
    case 'n': return "not-installed";
    case 'c': return "config-files";
    case 'H': return "half-installed";
    case 'U': return "unpacked";
    case 'F': return "half-configured";
    case 'W': return "triggers-awaited";
    case 't': return "triggers-pending";
    case 'i': return "installed";
    default: return "unknown";
  }
}

class DebInstaller final : public PackageInstaller {
 public:
  using PackageInstaller::PackageInstaller;

  Result<std::string> installed_version() override {
    std::vector<std::string> argv{"dpkg-query"};
    if (isolated()) argv.push_back("--root=" + options_.root);
    argv.insert(argv.end(), {"-W", "-f=agentd:version=${Version}\nagentd:status=${db:Status-Abbrev}\n",
                             options_.package});
    auto r = query(std::move(argv));
    if (!r) return std::unexpected(r.error());
    if (r->exit_code == 1 && r->output.find("no packages found") != std::string::npos) {
      return fail(Errc::not_found, options_.package + " is not installed");
    }
    if (r->exit_code != 0) {
      return fail(Errc::process, "dpkg-query exited with status " + std::to_string(r->exit_code) + ": " +
                                     output_tail(r->output, kTailBytes));
    }
    auto fields = tagged_lines(r->output, "agentd:");
    std::string version(trim_space(fields["version"]));
    // ${db:Status-Abbrev} is want, state and error flag: "ii " when cleanly installed.
    const std::string& abbrev = fields["status"];
    char state = abbrev.size() > 1 ? abbrev[1] : '?';
    bool reinst_required = abbrev.size() > 2 && abbrev[2] != ' ';
    if (state == 'i' && !reinst_required && !version.empty()) return version;
    if (state == 'n' || state == '?' || version.empty()) {
      return fail(Errc::not_found, options_.package + " is not installed");
    }
    // Half-installed or half-configured (a failed maintainer script): not a
    // version that runs, but the message says what dpkg holds.
    return fail(Errc::not_found, options_.package + " " + version + " is not cleanly installed (dpkg state " +
                                     std::string(trim_space(abbrev)) + ": " + dpkg_status_word(state) +
                                     (reinst_required ? ", reinstall required" : "") + ")");
  }

  Result<PackageInfo> inspect(const std::string& file) override {
    auto r = query({"dpkg-deb", "-f", file, "Package", "Version", "Architecture"});
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0) {
      return fail(Errc::verification,
                  file + " is not a readable .deb: " + output_tail(r->output, kTailBytes));
    }
    PackageInfo info;
    for (const auto& line : split_lines(r->output)) {
      std::string_view l = line;
      if (starts_with(l, "Package:")) info.name = trim_space(l.substr(8));
      if (starts_with(l, "Version:")) info.version = trim_space(l.substr(8));
      if (starts_with(l, "Architecture:")) info.arch = trim_space(l.substr(13));
    }
    if (auto st = check_name(file, info); !st) return std::unexpected(st.error());
    return info;
  }

  Status install(const std::string& file, const std::string& run_id, const std::string& run_dir) override {
    // dpkg --root chroots into the root for maintainer scripts; confold keeps
    // the node's edited configuration files without asking.
    std::vector<std::string> argv{"dpkg"};
    if (isolated()) argv.push_back("--root=" + options_.root);
    argv.insert(argv.end(), {"--force-confold", "--force-downgrade", "-i", file});
    return run_install("dpkg", std::move(argv), {{"DEBIAN_FRONTEND", "noninteractive"}}, run_id, run_dir);
  }
};

// ------------------------------------------------------------------ rpm

class RpmInstaller final : public PackageInstaller {
 public:
  using PackageInstaller::PackageInstaller;

  Result<std::string> installed_version() override {
    auto argv = rpm_argv();
    argv.insert(argv.end(), {"-q", "--qf", "agentd:version=%{VERSION}-%{RELEASE}\\n", options_.package});
    auto r = query(std::move(argv));
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0 && r->output.find("is not installed") != std::string::npos) {
      return fail(Errc::not_found, options_.package + " is not installed");
    }
    if (r->exit_code != 0) {
      return fail(Errc::process, "rpm -q exited with status " + std::to_string(r->exit_code) + ": " +
                                     output_tail(r->output, kTailBytes));
    }
    std::vector<std::string> versions;
    for (const auto& line : split_lines(r->output)) {
      if (starts_with(line, "agentd:version=")) versions.emplace_back(trim_space(line.substr(15)));
    }
    if (versions.size() == 1 && !versions[0].empty()) return versions[0];
    if (versions.empty())
      return fail(Errc::process, "rpm -q printed no version: " + output_tail(r->output, kTailBytes));
    // An interrupted rpm -U leaves both versions in the database.
    std::string all;
    for (const auto& v : versions) all += (all.empty() ? "" : ", ") + v;
    return fail(Errc::not_found, options_.package + " is not cleanly installed (rpm holds " + all + ")");
  }

  Result<PackageInfo> inspect(const std::string& file) override {
    // Digests and signatures as rpm checks them by default (keys of the root's database).
    auto check = rpm_argv();
    check.insert(check.end(), {"-K", file});
    auto k = query(std::move(check));
    if (!k) return std::unexpected(k.error());
    if (k->exit_code != 0) {
      return fail(Errc::verification, "rpm -K " + file + " failed: " + output_tail(k->output, kTailBytes));
    }
    auto argv = rpm_argv();
    argv.insert(
        argv.end(),
        {"-qp", "--qf", "agentd:name=%{NAME}\\nagentd:version=%{VERSION}-%{RELEASE}\\nagentd:arch=%{ARCH}\\n",
         file});
    auto r = query(std::move(argv));
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0) {
      return fail(Errc::verification,
                  file + " is not a readable .rpm: " + output_tail(r->output, kTailBytes));
    }
    auto fields = tagged_lines(r->output, "agentd:");
    PackageInfo info{fields["name"], fields["version"], fields["arch"]};
    if (auto st = check_name(file, info); !st) return std::unexpected(st.error());
    return info;
  }

  Status install(const std::string& file, const std::string& run_id, const std::string& run_dir) override {
    // -U with --oldpackage also downgrades (rollback); --replacepkgs reinstalls
    // the same version. Signatures stay checked: never --nosignature/--nodigest.
    auto argv = rpm_argv();
    argv.insert(argv.end(), {"-U", "--oldpackage", "--replacepkgs", file});
    auto r = run_detached(std::move(argv), {}, run_id, run_dir);
    if (auto st = install_outcome("rpm", r, options_.timeout); !st) return st;
    // rpm exits 0 when the new package's %post fails (only a warning): the
    // agent is then installed but not configured, which is a failed install.
    std::string output = whole_output(*r);
    for (const auto& line : split_lines(output)) {
      bool post = line.find("%post(") != std::string::npos || line.find("%posttrans(") != std::string::npos;
      if (post && line.find("scriptlet failed") != std::string::npos) {
        return fail(Errc::process,
                    "rpm: " + std::string(trim_space(line)) + ": " + output_tail(output, kTailBytes));
      }
    }
    return {};
  }

 private:
  std::vector<std::string> rpm_argv() const {
    std::vector<std::string> argv{"rpm"};
    if (isolated()) argv.insert(argv.end(), {"--root", options_.root});
    return argv;
  }
};

// ------------------------------------------------------------------ tarball

// A member name from `tar -t` that stays inside the unpack directory. GNU tar
// escapes unusual characters with '\', so a backslash means a name we refuse.
bool safe_member(std::string_view name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string_view::npos) return false;
  while (!name.empty()) {
    std::size_t slash = name.find('/');
    std::string_view part = name.substr(0, slash);
    if (part == "..") return false;
    if (slash == std::string_view::npos) break;
    name.remove_prefix(slash + 1);
  }
  return true;
}

// A link target that resolves inside the archive (relative, no "..").
bool safe_link_target(std::string_view target) {
  return !target.empty() && safe_member(target);
}

std::string without_dot_slash(std::string name) {
  while (starts_with(name, "./")) name.erase(0, 2);
  return name;
}

class TarballInstaller final : public PackageInstaller {
 public:
  using PackageInstaller::PackageInstaller;

  Result<std::string> installed_version() override {
    auto text = read_file(version_file(), kMaxVersionBytes);
    if (!text) {
      if (text.error().code == Errc::not_found)
        return fail(Errc::not_found, options_.package + " is not installed");
      return std::unexpected(text.error());
    }
    std::string v(trim_space(*text));
    if (v.empty())
      return fail(Errc::not_found, options_.package + " is not installed (empty " + version_file() + ")");
    return v;
  }

  Result<PackageInfo> inspect(const std::string& file) override {
    auto names = list(file);
    if (!names) return std::unexpected(names.error());
    PackageInfo info;
    for (const char* member : {"NAME", "VERSION"}) {
      auto r = query({"tar", "-xzOf", file, names->at(member)});
      if (!r) return std::unexpected(r.error());
      if (r->exit_code != 0) {
        return fail(Errc::verification, "cannot read " + std::string(member) + " from " + file + ": " +
                                            output_tail(r->output, kTailBytes));
      }
      (member == std::string("NAME") ? info.name : info.version) = trim_space(r->output);
    }
    if (auto st = check_name(file, info); !st) return std::unexpected(st.error());
    return info;
  }

  Status install(const std::string& file, const std::string& run_id, const std::string& run_dir) override {
    std::string unpacked = run_dir + "/unpacked";
    std::error_code ec;
    // Unpack only for a run that has not started: an earlier agentd's run
    // (running or finished) is picked up by the DetachedRunner as it is. A run
    // that started but lost its unpacked tree (and has no result) is started
    // again by the runner, so it needs the tree again.
    bool fresh = !fs::exists(run_dir + "/started", ec);
    bool lost = !fs::exists(run_dir + "/exit-status", ec) && !fs::exists(unpacked + "/install.sh", ec);
    if (fresh || lost) {
      if (auto st = unpack(file, run_dir, unpacked); !st) return st;
    }
    auto name = read_file(unpacked + "/NAME", kMaxVersionBytes);
    auto version = read_file(unpacked + "/VERSION", kMaxVersionBytes);
    if (!name) return std::unexpected(name.error());
    if (!version) return std::unexpected(version.error());
    PackageInfo info{std::string(trim_space(*name)), std::string(trim_space(*version)), ""};
    if (auto st = check_name(file, info); !st) return st;

    auto st = run_install(
        "install.sh", {"/bin/sh", "-c", "cd \"$1\" && exec /bin/sh install.sh", "sh", unpacked},
        {{"AGENTD_INSTALL_ROOT", options_.root}, {"AGENTD_PACKAGE_VERSION", info.version}}, run_id, run_dir);
    if (!st) return st;
    fs::create_directories(fs::path(version_file()).parent_path(), ec);
    if (ec)
      return fail(Errc::io,
                  "create " + fs::path(version_file()).parent_path().string() + ": " + ec.message());
    return write_file_atomic(version_file(), info.version + "\n", 0644);
  }

 private:
  std::string version_file() const {
    return under_root(options_.root, "var/lib/agentd/tarball-" + options_.package + ".version");
  }

  // The archive's member names (as stored) by their normalized name, after
  // checking that every member stays inside the unpack directory.
  Result<std::map<std::string, std::string>> list(const std::string& file) {
    // -P lists names as stored without the "Removing leading `/'" warning that
    // would otherwise land among the names (the output merges stderr).
    auto plain = query({"tar", "-P", "-tzf", file});
    if (!plain) return std::unexpected(plain.error());
    if (plain->exit_code != 0) {
      return fail(Errc::verification,
                  file + " is not a readable .tar.gz: " + output_tail(plain->output, kTailBytes));
    }
    auto verbose = query({"tar", "-P", "-tvzf", file});
    if (!verbose) return std::unexpected(verbose.error());
    auto names = split_lines(plain->output);
    auto lines = split_lines(verbose->output);
    if (verbose->exit_code != 0 || names.size() != lines.size()) {
      return fail(Errc::verification,
                  file + ": inconsistent tar listing: " + output_tail(verbose->output, kTailBytes));
    }
    std::map<std::string, std::string> members;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const std::string& stored = names[i];
      if (!safe_member(stored))
        return fail(Errc::verification, file + ": member '" + stored + "' leaves the archive");
      if (auto st = check_type(file, stored, lines[i]); !st) return std::unexpected(st.error());
      std::string name = without_dot_slash(stored);
      while (!name.empty() && name.back() == '/') name.pop_back();
      if (name.empty() || name == ".") continue;
      if (!members.emplace(name, stored).second) {
        return fail(Errc::verification, file + ": member '" + name + "' appears twice");
      }
    }
    for (const char* required : {"NAME", "VERSION", "install.sh"}) {
      auto it = members.find(required);
      if (it == members.end()) return fail(Errc::verification, file + " has no " + std::string(required));
      std::size_t i = 0;
      while (i < names.size() && names[i] != it->second) ++i;
      if (lines[i].empty() || lines[i][0] != '-') {
        return fail(Errc::verification, file + ": " + std::string(required) + " is not a regular file");
      }
    }
    return members;
  }

  // From `tar -tv`: regular files and directories, and links whose target stays inside.
  static Status check_type(const std::string& file, const std::string& name, const std::string& line) {
    char type = line.empty() ? '?' : line[0];
    std::string_view l = line;
    if (type == '-' || type == 'd') {
      if (l.size() > name.size() && l.substr(l.size() - name.size() - 1) == " " + name) return {};
      return fail(Errc::verification, file + ": unexpected tar listing line: " + line);
    }
    std::string_view target;
    std::string arrow = " " + name + (type == 'l' ? " -> " : " link to ");
    std::size_t at = l.find(arrow);
    if ((type == 'l' || type == 'h') && at != std::string_view::npos) target = l.substr(at + arrow.size());
    if (safe_link_target(target)) return {};
    return fail(Errc::verification,
                file + ": member '" + name + "' is not a plain file, directory or inside link");
  }

  Status unpack(const std::string& file, const std::string& run_dir, const std::string& unpacked) {
    auto info = inspect(file);
    if (!info) return std::unexpected(info.error());
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    if (ec) return fail(Errc::io, "create " + run_dir + ": " + ec.message());
    ::chmod(run_dir.c_str(), 0700);
    fs::remove_all(unpacked, ec);
    fs::create_directories(unpacked, ec);
    if (ec) return fail(Errc::io, "create " + unpacked + ": " + ec.message());
    auto r = query({"tar", "-xzf", file, "--no-same-owner", "-C", unpacked});
    if (!r) return std::unexpected(r.error());
    if (r->exit_code != 0) {
      return fail(Errc::process, "tar exited with status " + std::to_string(r->exit_code) + " unpacking " +
                                     file + ": " + output_tail(r->output, kTailBytes));
    }
    return {};
  }
};

}  // namespace

const char* to_string(PackageKind k) {
  switch (k) {
    case PackageKind::deb: return "deb";
    case PackageKind::rpm: return "rpm";
    case PackageKind::tarball: return "tarball";
  }
  return "unknown";
}

Result<PackageKind> package_kind_from_string(const std::string& s) {
  if (s == "deb") return PackageKind::deb;
  if (s == "rpm") return PackageKind::rpm;
  if (s == "tarball") return PackageKind::tarball;
  return fail(Errc::config, "unknown package kind '" + s + "' (deb, rpm or tarball)");
}

const char* package_suffix(PackageKind k) {
  switch (k) {
    case PackageKind::deb: return ".deb";
    case PackageKind::rpm: return ".rpm";
    case PackageKind::tarball: return ".tar.gz";
  }
  return "";
}

namespace {
bool in_path(const char* tool) {
  const char* path = ::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::size_t start = 0;
  for (;;) {
    std::size_t end = dirs.find(':', start);
    std::string dir = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + tool;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0) return true;
    if (end == std::string::npos) return false;
    start = end + 1;
  }
}
}  // namespace

PackageKind detect_package_kind() {
  if (in_path("dpkg")) return PackageKind::deb;
  if (in_path("rpm")) return PackageKind::rpm;
  return PackageKind::tarball;
}

std::unique_ptr<Installer> make_installer(InstallerOptions options, ProcessRunner& runner,
                                          DetachedRunner& detached) {
  switch (options.kind) {
    case PackageKind::deb: return std::make_unique<DebInstaller>(std::move(options), runner, detached);
    case PackageKind::rpm: return std::make_unique<RpmInstaller>(std::move(options), runner, detached);
    case PackageKind::tarball: break;
  }
  return std::make_unique<TarballInstaller>(std::move(options), runner, detached);
}

}  // namespace agentd
