// The package upgrader end to end: real agentd processes install real .deb (and
// .rpm) packages with the real dpkg (rpm) into each member's isolated root,
// from signed manifests on the stand-in: a rollout, a failing postinst and a
// sick agent rolled back (protocol.md §4.5: the group halts), a tampered
// download (failed before any lease, §4.2), and kill -9 at every step of a
// member's cycle, each resumed by the restarted agentd (§4.2, §4.4).
#include <algorithm>
#include <filesystem>
#include <optional>

#include "common.h"
#include "harness/package_rollout.h"
#include "support/tools.h"
#include "upgrade/pipeline.h"

using namespace agentd;
using namespace agentd::it;

namespace fs = std::filesystem;

namespace {

constexpr auto kPackageTimeout = 60s;

// dpkg, dpkg-deb and a static shell for the maintainer scripts in the roots.
bool have_deb_tools() {
  return testing::require_tools({"dpkg", "dpkg-deb"}, true);
}

// Every member's entry is succeeded at `version` and every root holds `installed`.
bool package_rollout_done(PackageRollout& p, const std::string& version, const std::string& installed) {
  try {
    GroupDocument doc = p.rollout().group();
    for (const auto& m : doc.members) {
      const Entry* e = doc.entry(m);
      if (!e || e->state != State::succeeded || e->version != version) return false;
    }
    if (doc.members.size() != p.size()) return false;
  } catch (const std::runtime_error&) {
    return false;  // the hub is busy or restarting
  }
  return p.all_installed(installed);
}

void require_package_done(PackageRollout& p, const std::string& version, const std::string& installed,
                          std::chrono::seconds timeout = kPackageTimeout) {
  Rollout& r = p.rollout();
  std::string exited;
  bool done = poll_until(
      deadline_in(timeout),
      [&] {
        exited = exited_member(r);
        return !exited.empty() || package_rollout_done(p, version, installed);
      },
      200ms);
  done = done && exited.empty();
  if (!done) {
    std::string roots;
    for (auto& m : r.members()) roots += m->node() + "=" + p.installed(*m) + " ";
    FAIL_CHECK("rollout to " << version << " did not finish" << (exited.empty() ? "" : "; exited: " + exited)
                             << "; installed: " << roots << "\n"
                             << r.diagnostics());
  }
  REQUIRE(done);
}

// Installs a member logged in its steps log (invariant I3's input).
int logged_installs(Member& m) {
  return static_cast<int>(grep_lines(m.steps_path(), "\"step\":\"install\",\"phase\":\"begin\"").size());
}

// Stops every agentd with SIGTERM; each must exit by itself with status 0.
void stop_all_cleanly(PackageRollout& p) {
  for (auto& m : p.rollout().members()) {
    Process* proc = m->process();
    if (!proc || !proc->running()) continue;
    m->stop();
    auto st = proc->exit_status();
    REQUIRE(st.has_value());
    CHECK_MESSAGE((st->code == 0 && st->signal == 0),
                  m->node() << " exited with code " << st->code << ", signal " << st->signal);
  }
  for (auto& m : p.rollout().members()) CHECK_FALSE(m->running());
}

// For `how_long`, nothing about the halted group moves: no member but
// `except` logs an install, and no lease is taken.
void group_stays_halted(PackageRollout& p, const std::string& except, std::chrono::milliseconds how_long) {
  Rollout& r = p.rollout();
  std::string why;
  bool moved = poll_until(
      deadline_in(how_long),
      [&] {
        for (auto& m : r.members())
          if (m->node() != except && logged_installs(*m) > 0) {
            why = m->node() + " logged an install";
            return true;
          }
        try {
          auto holders = lease_holders(r.group());
          if (!holders.empty()) {
            why = holders.front() + " holds a lease";
            return true;
          }
        } catch (const std::runtime_error&) {
        }
        return false;
      },
      100ms);
  CHECK_MESSAGE(!moved, why << "\n" << r.diagnostics());
}

std::uintmax_t size_of(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : n;
}

// The .part file of `m`'s download of `version` (the pipeline's fetch).
std::string part_path(Member& m, const std::string& version, const std::string& package_file) {
  return PackageRollout::download_dir(m, version) + "/" + fs::path(package_file).filename().string() +
         ".part";
}

// A package the pipeline keeps: `which` is "current" (installed last) or
// "previous" (what a rollback reinstalls), upgrade/pipeline.h.
std::string kept(Member& m, const std::string& which, const std::string& file) {
  return m.state_dir() + "/" + which + "/horizon/" + file;
}

// The run directories of `m`'s installs (runs/install-<attempt>).
std::vector<std::string> install_runs(Member& m) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(m.state_dir() + "/runs", ec))
    if (e.path().filename().string().rfind("install-", 0) == 0) out.push_back(e.path().string());
  return out;
}

// The node's management status for the rollout's NMP once it is one of
// `wanted` (agentd reports it after its entry's write lands), or the last one
// seen at the deadline (nullopt: none).
std::optional<ManagementStatus> wait_management_status(Rollout& r, const std::string& node,
                                                       const std::vector<std::string>& wanted) {
  std::optional<ManagementStatus> last;
  poll_until(
      deadline_in(20s),
      [&] {
        last = r.hub().get_management_status(r.options().org, node, r.options().nmp);
        return last && std::find(wanted.begin(), wanted.end(), last->status) != wanted.end();
      },
      100ms);
  return last;
}

// Checks the group halted on `failer`'s rolledback entry: its root is back at
// 1.0.0, no one else installed, every other root is untouched.
void check_rolled_back_and_halted(PackageRollout& p, const std::string& failer, const std::string& reason) {
  Rollout& r = p.rollout();
  GroupDocument doc = r.group();
  const Entry* e = doc.entry(failer);
  REQUIRE(e != nullptr);
  CHECK(e->state == State::rolledback);
  CHECK(e->version == "1.0.0");
  CHECK_MESSAGE(e->message.find(reason) != std::string::npos, "message: " << e->message);
  CHECK(p.installed(r.member(failer)) == "1.0.0 ii");
  CHECK(logged_installs(r.member(failer)) == 1);
  auto ms = wait_management_status(r, failer, {"rollback successful"});
  REQUIRE(ms.has_value());
  CHECK(ms->status == "rollback successful");
  CHECK_MESSAGE(ms->error_message.find(reason) != std::string::npos, "errorMessage: " << ms->error_message);

  group_stays_halted(p, failer, 3s);
  for (auto& m : r.members()) {
    if (m->node() == failer) continue;
    CHECK_MESSAGE(logged_installs(*m) == 0, m->node());
    CHECK_MESSAGE(p.installed(*m) == "1.0.0 ii", m->node());
  }
}

// The first member to take the lease for the published target, once it fails
// and is rolled back; "" when none did within the timeout.
std::string wait_for_rolledback(PackageRollout& p) {
  std::string failer;
  p.rollout().wait_group(
      [&](const GroupDocument& doc) {
        for (const auto& [node, e] : doc.entries)
          if (e.state == State::rolledback || e.state == State::failed) failer = node;
        return !failer.empty();
      },
      deadline_in(kPackageTimeout));
  return failer;
}

}  // namespace

TEST_SUITE("packages") {
  TEST_CASE("a 3-member group installs a signed 2.0.0 .deb, one member at a time") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    for (auto& m : p.rollout().members()) REQUIRE_MESSAGE(p.installed(*m) == "1.0.0 ii", m->node());
    p.publish("2.0.0", p.build({.version = "2.0.0"}));
    p.rollout().start_all();
    require_package_done(p, "2.0.0", "2.0.0 ii");

    Rollout& r = p.rollout();
    for (auto& m : r.members()) {
      CHECK_MESSAGE(logged_installs(*m) == 1, m->node());
      auto ms = wait_management_status(r, m->node(), {"successful"});
      REQUIRE_MESSAGE(ms.has_value(), m->node());
      CHECK_MESSAGE(ms->status == "successful", m->node() << ": " << ms->status << " " << ms->error_message);
      CHECK(ms->software_version == "2.0.0");
      // What agentd installed is kept for the next rollback; the package it replaced is previous/.
      CHECK(file_exists(kept(*m, "current", "horizon_2.0.0_" + p.arch() + ".deb")));
      CHECK(file_exists(kept(*m, "previous", "horizon_1.0.0_" + p.arch() + ".deb")));
      // dpkg's own words are in agentd's log ("Unpacking horizon (2.0.0) over (1.0.0) ...").
      CHECK_MESSAGE(m->log().find("event=package-output step=install line=\"Unpacking horizon (2.0.0)") !=
                        std::string::npos,
                    m->node());
    }
    LeaseStats stats = lease_stats(r);
    CHECK(stats.most_at_once == 1);
    CHECK(stats.acquisitions == 3);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }

  TEST_CASE("a postinst that fails: the holder reinstalls 1.0.0, writes rolledback, and the group halts") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    p.publish("2.0.0", p.build({.version = "2.0.0", .failing_postinst = true}));
    p.rollout().start_all();
    std::string failer = wait_for_rolledback(p);
    REQUIRE_MESSAGE(!failer.empty(), p.rollout().diagnostics());
    check_rolled_back_and_halted(p, failer, "refuses to configure");
    check_invariants(p.rollout(), true);
    stop_all_cleanly(p);
  }

  TEST_CASE("an agent that is not healthy after the install: rolled back to 1.0.0, the group halts") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    p.publish("2.0.0", p.build({.version = "2.0.0", .sick = true}));
    p.rollout().start_all();
    std::string failer = wait_for_rolledback(p);
    REQUIRE_MESSAGE(!failer.empty(), p.rollout().diagnostics());
    check_rolled_back_and_halted(p, failer, "is not healthy");
    check_invariants(p.rollout(), true);
    stop_all_cleanly(p);
  }

  TEST_CASE("a download that fails its SHA-256: failed before any lease, nothing installs anywhere") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    Rollout& r = p.rollout();
    std::string pkg = p.build({.version = "2.0.0"});
    p.publish("2.0.0", pkg);
    // n1 resumes a download whose first bytes are not the package's.
    Member& n1 = r.member("n1");
    write_file(part_path(n1, "2.0.0", pkg), "XXXXXXXX");
    n1.start();
    bool failed = r.wait_group(
        [](const GroupDocument& doc) {
          const Entry* e = doc.entry("n1");
          return e && e->state == State::failed;
        },
        deadline_in(kPackageTimeout));
    REQUIRE_MESSAGE(failed, r.diagnostics());
    const Entry failed_entry = *r.group().entry("n1");
    CHECK_MESSAGE(failed_entry.message.find("verification") != std::string::npos, failed_entry.message);
    CHECK_MESSAGE(failed_entry.message.find("SHA-256") != std::string::npos, failed_entry.message);
    // The damaged file is not kept.
    CHECK_FALSE(
        file_exists(PackageRollout::download_dir(n1, "2.0.0") + "/" + fs::path(pkg).filename().string()));
    CHECK_FALSE(file_exists(PackageRollout::download_dir(n1, "2.0.0") + "/prepared.json"));
    auto ms = wait_management_status(r, "n1", {"failed", "download failed"});
    REQUIRE(ms.has_value());
    CHECK_MESSAGE((ms->status == "failed" || ms->status == "download failed"), ms->status);
    CHECK_MESSAGE(ms->error_message.find("verification") != std::string::npos, ms->error_message);

    // The others join and see the group halted for 2.0.0: they do not even prepare it.
    r.member("n2").start();
    r.member("n3").start();
    bool joined = r.wait_group(
        [&](const GroupDocument& doc) {
          for (const char* n : {"n2", "n3"}) {
            const Entry* e = doc.entry(n);
            if (!e || holds_lease(e->state)) return false;
            if (grep_lines(r.member(n).log_path(), "group halted").empty()) return false;
          }
          return true;
        },
        deadline_in(kPackageTimeout));
    CHECK_MESSAGE(joined, r.diagnostics());
    group_stays_halted(p, "", 3s);
    for (auto& m : r.members()) {
      CHECK_MESSAGE(logged_installs(*m) == 0, m->node());
      CHECK_MESSAGE(p.installed(*m) == "1.0.0 ii", m->node());
    }
    CHECK(r.group().entry("n1")->state == State::failed);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }

  TEST_CASE("kill -9 mid-download: the restarted agentd resumes the download and the rollout completes") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    Rollout& r = p.rollout();
    std::string pkg = p.build({.version = "2.0.0", .padding_bytes = 1 << 20});
    const std::string original = read_file(pkg);
    REQUIRE(original.size() > 1000000);
    p.publish("2.0.0", pkg);

    // n1 alone (the others would wait for it anyway): its download crawls.
    Faults slow;
    slow.body.kind = "slow";
    slow.body.bytes_per_second = 200'000;
    slow.body.path_contains = "agent_software_files-2.0.0";
    r.hub().set_faults(slow);
    Member& n1 = r.member("n1");
    n1.start();
    const std::string part = part_path(n1, "2.0.0", pkg);
    bool downloading = poll_until(
        deadline_in(30s), [&] { return size_of(part) >= 100'000; }, 20ms);
    REQUIRE_MESSAGE(downloading, r.diagnostics());
    n1.kill9();
    const std::uintmax_t have = size_of(part);
    REQUIRE(have < original.size());
    r.hub().set_faults(Faults{});

    // The hub's first `have` bytes change: only a download that continues at
    // byte `have` (a Range request) still matches the signed SHA-256; one that
    // started over would fail verification.
    std::string changed = original;
    for (std::uintmax_t i = 0; i < have; ++i) changed[i] = static_cast<char>(~changed[i]);
    p.replace_package_data("2.0.0", pkg, changed);
    n1.start();
    const std::string prepared = PackageRollout::download_dir(n1, "2.0.0") + "/prepared.json";
    bool ok = poll_until(deadline_in(kPackageTimeout), [&] {
      if (file_exists(prepared)) return true;
      GroupDocument doc = r.group();
      const Entry* e = doc.entry("n1");
      return e && e->state == State::failed;
    });
    REQUIRE_MESSAGE(ok, r.diagnostics());
    REQUIRE_MESSAGE(file_exists(prepared), "the download was not resumed:\n" << r.diagnostics());
    CHECK(grep_lines(n1.log_path(), "resumedFrom=" + std::to_string(have) + " ").size() == 1);
    p.replace_package_data("2.0.0", pkg, original);

    r.member("n2").start();
    r.member("n3").start();
    require_package_done(p, "2.0.0", "2.0.0 ii");
    CHECK(read_file(kept(n1, "current", fs::path(pkg).filename().string())) == original);
    CHECK(lease_stats(r).most_at_once == 1);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }

  TEST_CASE("kill -9 after the download is verified: the restarted agentd goes on from there") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    Rollout& r = p.rollout();
    p.publish("2.0.0", p.build({.version = "2.0.0"}));
    Member& n1 = r.member("n1");
    n1.start();  // alone: it cannot take the lease before the others are up
    const std::string prepared = PackageRollout::download_dir(n1, "2.0.0") + "/prepared.json";
    REQUIRE_MESSAGE(poll_until(
                        deadline_in(kPackageTimeout), [&] { return file_exists(prepared); }, 10ms),
                    r.diagnostics());
    n1.kill9();
    CHECK(logged_installs(n1) == 0);
    n1.start();
    r.member("n2").start();
    r.member("n3").start();
    require_package_done(p, "2.0.0", "2.0.0 ii");
    for (auto& m : r.members()) CHECK_MESSAGE(logged_installs(*m) == 1, m->node());
    CHECK(lease_stats(r).most_at_once == 1);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }

  TEST_CASE("kill -9 during dpkg's install: dpkg finishes detached, the restarted agentd takes its result") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    Rollout& r = p.rollout();
    p.publish("2.0.0", p.build({.version = "2.0.0", .preinst_waits = true}));
    r.start_all();
    std::string holder = wait_for_holder(r, kPackageTimeout);
    REQUIRE_MESSAGE(!holder.empty(), r.diagnostics());
    Member& h = r.member(holder);
    // Only the holder's preinst waits; the others' installs go through later.
    for (auto& m : r.members())
      if (m->node() != holder) write_file(PackageRollout::root(*m) + "/tmp/go", "");
    const std::string root = PackageRollout::root(h);
    REQUIRE_MESSAGE(
        poll_until(deadline_in(kPackageTimeout), [&] { return file_exists(root + "/tmp/preinst-started"); }),
        r.diagnostics());
    h.kill9();
    // dpkg runs on without agentd: let its preinst finish, and wait for its recorded result.
    write_file(root + "/tmp/go", "");
    auto runs = install_runs(h);
    REQUIRE(runs.size() == 1);
    REQUIRE_MESSAGE(poll_until(deadline_in(30s), [&] { return file_exists(runs[0] + "/exit-status"); }),
                    "dpkg did not finish: " << read_file(runs[0] + "/output.log"));
    CHECK(p.installed(h) == "2.0.0 ii");

    h.start();
    require_package_done(p, "2.0.0", "2.0.0 ii");
    CHECK(read_file(root + "/tmp/preinst-runs") == "run\n");  // dpkg ran once
    CHECK(install_runs(h).size() == 1);
    CHECK_FALSE(file_exists(runs[0] + "/output.log.1"));  // never started again
    // The restarted agentd logs the install step again (it takes up the same
    // run), under the lease it held before: the same epoch.
    auto steps = check::read_steps(h.steps_path());
    REQUIRE(steps.has_value());
    std::set<std::int64_t> epochs;
    for (const auto& s : *steps)
      if (s.step == "install") epochs.insert(s.epoch);
    CHECK(epochs.size() == 1);
    CHECK(grep_lines(h.log_path(), "event=resumed").size() >= 1);
    CHECK(lease_stats(r).most_at_once == 1);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }

  TEST_CASE("kill -9 during the health check: the restarted agentd renews its lease first, then succeeds") {
    if (!have_deb_tools()) return;
    PackageRollout p;
    Rollout& r = p.rollout();
    p.publish("2.0.0", p.build({.version = "2.0.0", .health_waits = true}));
    r.start_all();
    std::string holder = wait_for_holder(r, kPackageTimeout);
    REQUIRE_MESSAGE(!holder.empty(), r.diagnostics());
    Member& h = r.member(holder);
    for (auto& m : r.members())
      if (m->node() != holder) write_file(PackageRollout::root(*m) + "/tmp/healthy", "");
    const std::string root = PackageRollout::root(h);
    REQUIRE_MESSAGE(
        poll_until(deadline_in(kPackageTimeout), [&] { return file_exists(root + "/tmp/health-started"); }),
        r.diagnostics());
    h.kill9();
    const Entry before = *r.group().entry(holder);
    REQUIRE(holds_lease(before.state));
    CHECK(p.installed(h) == "2.0.0 ii");
    auto writes_before = check::read_hub_log(r.hub().write_log_path());
    REQUIRE(writes_before.has_value());
    const std::size_t seen = writes_before->size();

    write_file(root + "/tmp/healthy", "");
    h.start();
    require_package_done(p, "2.0.0", "2.0.0 ii");

    // The restarted holder's first write renews the lease it held (§4.4).
    auto writes = check::read_hub_log(r.hub().write_log_path());
    REQUIRE(writes.has_value());
    const check::HubWrite* first = nullptr;
    for (std::size_t i = seen; i < writes->size() && !first; ++i)
      if ((*writes)[i].actor == r.options().org + "/" + holder) first = &(*writes)[i];
    REQUIRE(first != nullptr);
    const Entry& renewed = first->entries.at(holder);
    CHECK_MESSAGE(holds_lease(renewed.state), first->where << ": " << to_string(renewed.state));
    CHECK(renewed.epoch == before.epoch);
    CHECK(renewed.renew_time != before.renew_time);
    CHECK(r.group().entry(holder)->state == State::succeeded);
    CHECK(logged_installs(h) == 1);
    CHECK(lease_stats(r).most_at_once == 1);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }

  TEST_CASE("rpm: one member upgrades 1.0.0-1 to 2.0.0-1 in its rpm root") {
    if (!testing::require_tools({"rpm", "rpmbuild"}, true)) return;
    PackageRolloutOptions o;
    o.members = 1;
    o.package_system = "rpm";
    PackageRollout p(o);
    Rollout& r = p.rollout();
    REQUIRE(p.installed(r.member(0)) == "1.0.0-1");
    // First the version it runs is the target: rpm says 1.0.0-1, the hub 1.0.0,
    // and that is the same version: nothing to do (no reinstall, no lease).
    p.publish("1.0.0", p.build({.version = "1.0.0"}));
    r.start_all();
    REQUIRE(r.wait_group(
        [](const GroupDocument& d) {
          const Entry* e = d.entry("n1");
          return e != nullptr && e->version == "1.0.0";
        },
        deadline_in(20s)));
    CHECK(r.member(0).log().find("event=running-version package=1.0.0-1 agent=1.0.0") != std::string::npos);
    // Before this was fixed, the member prepared, acquired and reinstalled 1.0.0 within a second.
    CHECK_FALSE(poll_until(deadline_in(3s), [&] {
      return logged_installs(r.member(0)) > 0 || r.member(0).log().find("event=acquire") != std::string::npos;
    }));

    std::string pkg = p.build({.version = "2.0.0"});
    CHECK(fs::path(pkg).filename() == "horizon-2.0.0-1." + rpm_arch(p.arch()) + ".rpm");
    p.publish("2.0.0", pkg);
    require_package_done(p, "2.0.0", "2.0.0-1");
    auto ms = wait_management_status(r, "n1", {"successful"});
    REQUIRE(ms.has_value());
    CHECK(ms->status == "successful");
    CHECK(logged_installs(r.member(0)) == 1);
    check_invariants(r, true);
    stop_all_cleanly(p);
  }
}
