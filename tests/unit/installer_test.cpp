// The Installer with the node's real package tools in isolated roots: install,
// upgrade, a real downgrade (rollback), a failing postinst and the recovery
// from it, and inspect's refusals (another package, a corrupted .rpm, a tarball
// member leaving the archive). The detached runner is a synchronous stand-in
// that keeps the run directory as upgrade/detached.h describes.
#include "upgrade/installer.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "agentd/files.h"
#include "harness/harness.h"
#include "harness/packages.h"
#include "support/temp_dir.h"
#include "support/tools.h"

using namespace agentd;
using namespace agentd::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Runs the command synchronously and records started / output.log / exit-status
// in the run directory; a run directory with an exit status is a finished run.
class SyncDetachedRunner final : public DetachedRunner {
 public:
  Result<DetachedResult> run(const DetachedSpec& spec) override {
    specs.push_back(spec);
    if (dry) return DetachedResult{0, false, false, "", ""};
    fs::create_directories(spec.dir);
    DetachedResult out;
    out.output_path = spec.dir + "/output.log";
    if (fs::exists(spec.dir + "/exit-status")) {
      out.resumed = true;
      out.exit_code = std::stoi(harness::read_file(spec.dir + "/exit-status"));
      out.timed_out = out.exit_code == 124;
      out.output_tail = tail(harness::read_file(out.output_path));
      return out;
    }
    ++started;
    if (auto st = write_file_atomic(spec.dir + "/started", "sync\n"); !st) return std::unexpected(st.error());
    ProcessSpec ps;
    ps.argv = spec.argv;
    ps.env = spec.env;
    ps.timeout = spec.timeout;
    ps.max_output = 256 * 1024;
    auto r = runner_->run(ps);
    if (!r) return std::unexpected(r.error());
    out.timed_out = r->timed_out;
    out.exit_code = r->timed_out ? 124 : r->exit_code;
    out.output_tail = tail(r->output);
    if (auto st = write_file_atomic(out.output_path, r->output); !st) return std::unexpected(st.error());
    if (auto st = write_file_atomic(spec.dir + "/exit-status", std::to_string(out.exit_code) + "\n"); !st)
      return std::unexpected(st.error());
    return out;
  }

  std::vector<DetachedSpec> specs;
  int started = 0;
  bool dry = false;  // record the spec only, run nothing

 private:
  static std::string tail(const std::string& s) { return s.size() > 2048 ? s.substr(s.size() - 2048) : s; }
  std::unique_ptr<ProcessRunner> runner_ = make_process_runner([] { return false; });
};

PackageSpec horizon(const std::string& version, const std::string& name = "horizon") {
  PackageSpec s;
  s.name = name;
  s.version = version;
  s.files["usr/bin/horizon-version"] = "#!/bin/sh\necho " + version + "\n";
  s.files["etc/horizon/release"] = version + "\n";
  return s;
}

Result<std::string> build(PackageKind kind, const PackageSpec& spec, const std::string& dir) {
  switch (kind) {
    case PackageKind::deb: return build_deb(spec, dir);
    case PackageKind::rpm: return build_rpm(spec, dir);
    case PackageKind::tarball: break;
  }
  return build_tarball(spec, dir);
}

std::string built(PackageKind kind, const PackageSpec& spec, const std::string& dir) {
  auto r = build(kind, spec, dir);
  REQUIRE_MESSAGE(r.has_value(), r.error().message);
  return *r;
}

// What installed_version reports for a spec version.
std::string reported(PackageKind kind, const std::string& version) {
  return kind == PackageKind::rpm ? version + "-1" : version;
}

// The kind's tools; a test without them fails (support/tools.h).
bool tools_present(PackageKind kind) {
  switch (kind) {
    case PackageKind::rpm: return require_tools({"rpm", "rpmbuild"}, true);
    case PackageKind::deb: return require_tools({"dpkg", "dpkg-deb"}, true);
    case PackageKind::tarball: break;
  }
  return true;
}

Status make_root(PackageKind kind, const std::string& root) {
  switch (kind) {
    case PackageKind::deb: return make_dpkg_root(root);
    case PackageKind::rpm: return make_rpm_root(root);
    case PackageKind::tarball: break;
  }
  fs::create_directories(root);
  return {};
}

struct Fixture {
  explicit Fixture(PackageKind k) : kind(k) {
    root = tmp.file("root");
    InstallerOptions o;
    o.kind = kind;
    o.root = root;
    o.timeout = 60s;
    installer = make_installer(o, *runner, detached);
  }
  Status install(const std::string& file) {
    ++runs;
    std::string id = std::string(to_string(kind)) + "-" + std::to_string(runs);
    return installer->install(file, id, tmp.file("runs/" + id));
  }
  std::string installed_file() const { return harness::read_file(root + "/usr/bin/horizon-version"); }

  PackageKind kind;
  TempDir tmp;
  std::string root;
  std::unique_ptr<ProcessRunner> runner = make_process_runner([] { return false; });
  SyncDetachedRunner detached;
  std::unique_ptr<Installer> installer;
  int runs = 0;
};

// Install v1, upgrade to v2, downgrade to v1, fail in v3's postinst, restore v1.
void upgrade_and_roll_back(PackageKind kind) {
  if (!tools_present(kind)) return;
  Fixture f(kind);
  REQUIRE(make_root(kind, f.root).has_value());
  CHECK(f.installer->kind() == kind);

  PackageSpec v1 = horizon("1.0.0");
  v1.postinst = "echo configured 1.0.0 > /tmp/postinst-ran";
  PackageSpec v2 = horizon("2.0.0");
  PackageSpec v3 = horizon("3.0.0");
  v3.postinst = "echo postinst of 3.0.0 refuses to configure\nexit 1";
  if (kind == PackageKind::tarball) {
    v1.postinst = "echo configured 1.0.0 > \"$AGENTD_INSTALL_ROOT/tmp/postinst-ran\"";
  }
  std::string p1 = built(kind, v1, f.tmp.path());
  std::string p2 = built(kind, v2, f.tmp.path());
  std::string p3 = built(kind, v3, f.tmp.path());

  auto none = f.installer->installed_version();
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().code == Errc::not_found);

  auto info = f.installer->inspect(p2);
  REQUIRE_MESSAGE(info.has_value(), info.error().message);
  CHECK(info->name == "horizon");
  CHECK(info->version == reported(kind, "2.0.0"));
  CHECK(info->arch == (kind == PackageKind::deb ? "amd64" : kind == PackageKind::rpm ? "x86_64" : ""));

  fs::create_directories(f.root + "/tmp");
  auto st = f.install(p1);
  REQUIRE_MESSAGE(st.has_value(), st.error().message);
  CHECK(f.installer->installed_version().value_or("?") == reported(kind, "1.0.0"));
  CHECK(f.installed_file() == "#!/bin/sh\necho 1.0.0\n");
  CHECK(harness::read_file(f.root + "/tmp/postinst-ran") == "configured 1.0.0\n");

  st = f.install(p2);
  REQUIRE_MESSAGE(st.has_value(), st.error().message);
  CHECK(f.installer->installed_version().value_or("?") == reported(kind, "2.0.0"));
  CHECK(f.installed_file() == "#!/bin/sh\necho 2.0.0\n");
  CHECK(harness::read_file(f.root + "/etc/horizon/release") == "2.0.0\n");

  // A real downgrade: the older package replaces the newer one.
  st = f.install(p1);
  REQUIRE_MESSAGE(st.has_value(), st.error().message);
  CHECK(f.installer->installed_version().value_or("?") == reported(kind, "1.0.0"));
  CHECK(f.installed_file() == "#!/bin/sh\necho 1.0.0\n");
  CHECK(harness::read_file(f.root + "/etc/horizon/release") == "1.0.0\n");

  // A failing postinst: the error carries the tool's status and the output's tail.
  st = f.install(p3);
  REQUIRE_FALSE(st.has_value());
  CHECK(st.error().code == Errc::process);
  INFO(st.error().message);
  const char* tool = kind == PackageKind::deb ? "dpkg" : kind == PackageKind::rpm ? "rpm" : "install.sh";
  if (kind == PackageKind::rpm) {
    // rpm itself exits 0 after a failing %post; its warning is the failure.
    CHECK(st.error().message.find(
              "rpm: warning: %post(horizon-3.0.0-1.x86_64) scriptlet failed, exit status 1") == 0);
  } else {
    CHECK(st.error().message.find(std::string(tool) + " exited with status 1: ") == 0);
  }
  CHECK(st.error().message.find("postinst of 3.0.0 refuses to configure") != std::string::npos);
  CHECK(st.error().message.find('\n') == std::string::npos);
  auto after = f.installer->installed_version();
  if (kind == PackageKind::deb) {
    // dpkg keeps the unpacked 3.0.0 as half-configured: not a usable version.
    REQUIRE_FALSE(after.has_value());
    CHECK(after.error().code == Errc::not_found);
    CHECK(after.error().message.find("3.0.0") != std::string::npos);
    CHECK(after.error().message.find("half-configured") != std::string::npos);
  } else if (kind == PackageKind::rpm) {
    // rpm keeps 3.0.0 installed after a failing %post.
    CHECK(after.value_or("?") == "3.0.0-1");
  } else {
    // install.sh copied the files, but agentd records only a successful install.
    CHECK(after.value_or("?") == "1.0.0");
  }
  CHECK(f.installed_file() == "#!/bin/sh\necho 3.0.0\n");

  // The rollback: reinstalling 1.0.0 restores a clean state.
  st = f.install(p1);
  REQUIRE_MESSAGE(st.has_value(), st.error().message);
  CHECK(f.installer->installed_version().value_or("?") == reported(kind, "1.0.0"));
  CHECK(f.installed_file() == "#!/bin/sh\necho 1.0.0\n");

  // Every install ran once, through the detached runner, in its own run directory.
  CHECK(f.detached.started == 5);
  REQUIRE(f.detached.specs.size() == 5);
  CHECK(f.detached.specs[0].id == std::string(to_string(kind)) + "-1");
  CHECK(f.detached.specs[0].dir == f.tmp.file("runs/" + std::string(to_string(kind)) + "-1"));
  CHECK(f.detached.specs[0].timeout == 60s);
}

void inspect_refuses_another_package(PackageKind kind) {
  if (kind == PackageKind::rpm && !require_tools({"rpmbuild"})) return;
  Fixture f(kind);
  std::string other = built(kind, horizon("1.0.0", "not-horizon"), f.tmp.path());
  auto r = f.installer->inspect(other);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::verification);
  CHECK(r.error().message.find("not-horizon") != std::string::npos);

  std::string junk = f.tmp.write(std::string("junk") + package_suffix(kind), "this is not a package\n");
  auto j = f.installer->inspect(junk);
  REQUIRE_FALSE(j.has_value());
  CHECK(j.error().code == Errc::verification);
}

}  // namespace

TEST_SUITE("installer") {
  TEST_CASE("package kinds: names, suffixes, detection") {
    CHECK(std::string(to_string(PackageKind::deb)) == "deb");
    CHECK(std::string(to_string(PackageKind::rpm)) == "rpm");
    CHECK(std::string(to_string(PackageKind::tarball)) == "tarball");
    for (auto k : {PackageKind::deb, PackageKind::rpm, PackageKind::tarball}) {
      CHECK(package_kind_from_string(to_string(k)).value() == k);
    }
    auto bad = package_kind_from_string("apk");
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::config);
    CHECK_FALSE(package_kind_from_string("").has_value());
    CHECK(std::string(package_suffix(PackageKind::deb)) == ".deb");
    CHECK(std::string(package_suffix(PackageKind::rpm)) == ".rpm");
    CHECK(std::string(package_suffix(PackageKind::tarball)) == ".tar.gz");
    PackageKind expected = have_tool("dpkg")  ? PackageKind::deb
                           : have_tool("rpm") ? PackageKind::rpm
                                              : PackageKind::tarball;
    CHECK(detect_package_kind() == expected);
  }

  TEST_CASE("deb: install, upgrade, downgrade, failing postinst, rollback") {
    upgrade_and_roll_back(PackageKind::deb);
  }
  TEST_CASE("rpm: install, upgrade, downgrade, failing %post, rollback") {
    upgrade_and_roll_back(PackageKind::rpm);
  }
  TEST_CASE("tarball: install, upgrade, downgrade, failing postinst, rollback") {
    upgrade_and_roll_back(PackageKind::tarball);
  }

  TEST_CASE("inspect refuses another package's file and a file that is no package") {
    SUBCASE("deb") {
      inspect_refuses_another_package(PackageKind::deb);
    }
    SUBCASE("rpm") {
      inspect_refuses_another_package(PackageKind::rpm);
    }
    SUBCASE("tarball") {
      inspect_refuses_another_package(PackageKind::tarball);
    }
  }

  TEST_CASE("deb: installed_version reads the isolated root's database, not the host's") {
    Fixture f(PackageKind::deb);
    REQUIRE(make_dpkg_root(f.root).has_value());
    InstallerOptions o;
    o.kind = PackageKind::deb;
    o.package = "dpkg";  // installed on the host, not in the root
    o.root = f.root;
    auto inst = make_installer(o, *f.runner, f.detached);
    auto v = inst->installed_version();
    REQUIRE_FALSE(v.has_value());
    CHECK(v.error().code == Errc::not_found);
  }

  TEST_CASE("rpm: a corrupted package fails rpm -K and is refused") {
    if (!require_tools({"rpm", "rpmbuild"})) return;
    Fixture f(PackageKind::rpm);
    std::string good = built(PackageKind::rpm, horizon("2.0.0"), f.tmp.path());
    REQUIRE(f.installer->inspect(good).has_value());
    std::string data = harness::read_file(good);
    REQUIRE(data.size() > 200);
    data[data.size() - 50] = static_cast<char>(data[data.size() - 50] ^ 0xff);  // in the payload
    std::string bad = f.tmp.write("corrupt.rpm", data);
    auto r = f.installer->inspect(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::verification);
    CHECK(r.error().message.find("rpm -K") != std::string::npos);
  }

  TEST_CASE("tarball: members leaving the archive, odd members and missing files are refused") {
    Fixture f(PackageKind::tarball);
    std::string src = f.tmp.file("src");
    fs::create_directories(src);
    f.tmp.write("src/NAME", "horizon\n");
    f.tmp.write("src/VERSION", "2.0.0\n");
    f.tmp.write("src/install.sh", "echo installing\n");
    f.tmp.write("src/evil", "evil\n");
    fs::create_symlink("/etc", src + "/etc-link");
    fs::create_symlink("files/x", src + "/inside-link");
    auto runner = make_process_runner([] { return false; });
    auto tar = [&](const std::string& out, std::vector<std::string> extra) {
      std::vector<std::string> argv{"tar", "-czf", f.tmp.file(out), "-C", src};
      argv.insert(argv.end(), extra.begin(), extra.end());
      ProcessSpec ps;
      ps.argv = argv;
      auto r = runner->run(ps);
      REQUIRE(r.has_value());
      REQUIRE_MESSAGE(r->exit_code == 0, r->output);
      return f.tmp.file(out);
    };
    auto refused = [&](const std::string& file, const std::string& why) {
      auto r = f.installer->inspect(file);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().code == Errc::verification);
      CHECK_MESSAGE(r.error().message.find(why) != std::string::npos, r.error().message);
    };

    std::string ok = tar("ok.tar.gz", {"NAME", "VERSION", "install.sh", "inside-link"});
    auto info = f.installer->inspect(ok);
    REQUIRE_MESSAGE(info.has_value(), info.error().message);
    CHECK(info->version == "2.0.0");
    // Leading "./" is how `tar -C dir .` stores members; still the same package.
    std::string dotted = tar("dotted.tar.gz", {"./NAME", "./VERSION", "./install.sh"});
    CHECK(f.installer->inspect(dotted).has_value());

    refused(
        tar("dotdot.tar.gz", {"--transform", "s,^evil$,../evil,", "NAME", "VERSION", "install.sh", "evil"}),
        "'../evil' leaves the archive");
    refused(tar("abs.tar.gz",
                {"-P", "--transform", "s,^evil$,/tmp/evil,", "NAME", "VERSION", "install.sh", "evil"}),
            "'/tmp/evil' leaves the archive");
    refused(tar("deep.tar.gz",
                {"--transform", "s,^evil$,files/../../evil,", "NAME", "VERSION", "install.sh", "evil"}),
            "leaves the archive");
    refused(tar("link.tar.gz", {"NAME", "VERSION", "install.sh", "etc-link"}), "'etc-link'");
    refused(tar("noscript.tar.gz", {"NAME", "VERSION"}), "has no install.sh");
    refused(tar("noversion.tar.gz", {"NAME", "install.sh"}), "has no VERSION");
    refused(tar("twice.tar.gz", {"NAME", "VERSION", "install.sh", "./NAME"}), "appears twice");

    // install refuses the same archives before unpacking anything.
    auto st = f.installer->install(f.tmp.file("dotdot.tar.gz"), "t-1", f.tmp.file("runs/t-1"));
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::verification);
    CHECK(f.detached.specs.empty());
    CHECK_FALSE(fs::exists(f.tmp.path() + "/evil"));
  }

  TEST_CASE("tarball: an install over its timeout fails saying so") {
    Fixture f(PackageKind::tarball);
    InstallerOptions o;
    o.kind = PackageKind::tarball;
    o.root = f.root;
    o.timeout = 300ms;
    auto inst = make_installer(o, *f.runner, f.detached);
    PackageSpec slow = horizon("2.0.0");
    slow.postinst = "echo waiting; sleep 30";
    std::string file = built(PackageKind::tarball, slow, f.tmp.path());
    fs::create_directories(f.root);
    auto st = inst->install(file, "slow", f.tmp.file("runs/slow"));
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::process);
    CHECK(st.error().message.find("install.sh timed out after 0.3 s") == 0);
    CHECK_FALSE(inst->installed_version().has_value());
  }

  TEST_CASE("tarball: a finished run is picked up again, not repeated; the version is recorded") {
    Fixture f(PackageKind::tarball);
    fs::create_directories(f.root);
    PackageSpec v2 = horizon("2.0.0");
    v2.postinst = "echo run >> \"$AGENTD_INSTALL_ROOT/runs.txt\"";
    std::string file = built(PackageKind::tarball, v2, f.tmp.path());
    std::string run_dir = f.tmp.file("runs/once");
    REQUIRE(f.installer->install(file, "once", run_dir).has_value());
    CHECK(harness::read_file(f.root + "/var/lib/agentd/tarball-horizon.version") == "2.0.0\n");
    CHECK(f.installer->installed_version().value_or("?") == "2.0.0");
    // An agentd restarted after the install calls again with the same run directory.
    fs::remove(f.root + "/var/lib/agentd/tarball-horizon.version");
    REQUIRE(f.installer->install(file, "once", run_dir).has_value());
    CHECK(f.detached.started == 1);
    CHECK(harness::read_file(f.root + "/runs.txt") == "run\n");
    CHECK(f.installer->installed_version().value_or("?") == "2.0.0");
    REQUIRE(f.detached.specs.size() == 2);
    const auto& spec = f.detached.specs[0];
    REQUIRE(spec.argv.size() == 5);
    CHECK(spec.argv[0] == "/bin/sh");
    CHECK(spec.argv[4] == run_dir + "/unpacked");
    bool root_env = false, version_env = false;
    for (const auto& [k, v] : spec.env) {
      root_env = root_env || (k == "AGENTD_INSTALL_ROOT" && v == f.root);
      version_env = version_env || (k == "AGENTD_PACKAGE_VERSION" && v == "2.0.0");
    }
    CHECK(root_env);
    CHECK(version_env);
  }

  TEST_CASE(
      "deb through the real detached runner (a detached session): install, failing postinst, rollback") {
    if (!tools_present(PackageKind::deb)) return;
    TempDir tmp;
    std::string root = tmp.file("root");
    REQUIRE(make_dpkg_root(root).has_value());
    auto runner = make_process_runner([] { return false; });
    DetachedOptions dopts;
    dopts.use_systemd = false;
    dopts.poll = 20ms;
    auto detached = make_detached_runner(dopts);
    InstallerOptions o;
    o.kind = PackageKind::deb;
    o.root = root;
    o.timeout = 60s;
    auto inst = make_installer(o, *runner, *detached);
    PackageSpec v3 = horizon("3.0.0");
    v3.postinst = "echo postinst of 3.0.0 refuses to configure\nexit 1";
    std::string p1 = built(PackageKind::deb, horizon("1.0.0"), tmp.path());
    std::string p3 = built(PackageKind::deb, v3, tmp.path());

    fs::create_directories(tmp.file("runs"));
    auto st = inst->install(p1, "deb-real-1", tmp.file("runs/1"));
    REQUIRE_MESSAGE(st.has_value(), st.error().message);
    CHECK(inst->installed_version().value_or("?") == "1.0.0");
    st = inst->install(p3, "deb-real-2", tmp.file("runs/2"));
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().message.find("dpkg exited with status 1: ") == 0);
    CHECK(st.error().message.find("refuses to configure") != std::string::npos);
    // Asking again with the same run directory reports the same result without a second dpkg run.
    auto again = inst->install(p3, "deb-real-2", tmp.file("runs/2"));
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().message == st.error().message);
    st = inst->install(p1, "deb-real-3", tmp.file("runs/3"));
    REQUIRE_MESSAGE(st.has_value(), st.error().message);
    CHECK(inst->installed_version().value_or("?") == "1.0.0");
    CHECK(harness::read_file(root + "/usr/bin/horizon-version") == "#!/bin/sh\necho 1.0.0\n");
  }

  TEST_CASE("deb and rpm install commands: root, forcing options, no signature bypass") {
    TempDir tmp;
    auto runner = make_process_runner([] { return false; });
    SyncDetachedRunner detached;
    detached.dry = true;
    for (auto kind : {PackageKind::deb, PackageKind::rpm}) {
      InstallerOptions o;
      o.kind = kind;
      o.root = "/";
      auto inst = make_installer(o, *runner, detached);
      CHECK(inst->install("/nonexistent/pkg", std::string("argv-") + to_string(kind),
                          tmp.file(std::string("runs/") + to_string(kind)))
                .has_value());
    }
    REQUIRE(detached.specs.size() == 2);
    // The host root: no --root, so the commands act on this machine's database.
    CHECK(detached.specs[0].argv ==
          std::vector<std::string>{"dpkg", "--force-confold", "--force-downgrade", "-i", "/nonexistent/pkg"});
    CHECK(detached.specs[0].env ==
          std::vector<std::pair<std::string, std::string>>{{"DEBIAN_FRONTEND", "noninteractive"}});
    CHECK(detached.specs[1].argv ==
          std::vector<std::string>{"rpm", "-U", "--oldpackage", "--replacepkgs", "/nonexistent/pkg"});
  }
}
