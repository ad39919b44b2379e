// agentd beside anax with real packages (anax-coexistence.md §3): each member's
// dpkg root holds horizon 1.0.0, an anax stand-in beside it downloads the
// release's bundle (horizon-agent-linux-deb-ARCH.tar.gz) and records its version
// from the root's usr/share/horizon/VERSION. agentd installs the package from the
// bundle anax downloaded, never a second copy, and reports through anax. Its cron
// executor, when armed, installs the bundle with dpkg: a run is a second upgrader.
#include <filesystem>

#include "check/invariants.h"
#include "common.h"
#include "harness/package_rollout.h"

using namespace agentd;
using namespace agentd::it;

namespace {

constexpr auto kTimeout = 90s;

PackageRolloutOptions beside_anax(int members = 3) {
  PackageRolloutOptions o;
  o.members = members;
  o.beside_anax = true;
  o.anax.interval_seconds = "0.3";
  o.anax.cron_interval_seconds = "0.3";
  o.anax.cron_file = false;  // as agentd's package leaves it (systemd/cron-guard.sh)
  return o;
}

// Every root holds `installed` and every anax record of the job is `status`.
void require_done_beside_anax(PackageRollout& p, const std::string& installed, const std::string& status) {
  Rollout& r = p.rollout();
  bool done = poll_until(
      deadline_in(kTimeout),
      [&] {
        if (!p.all_installed(installed)) return false;
        for (std::size_t i = 0; i < r.size(); ++i)
          if (r.anax(i).status(job_key(r)).value_or("") != status) return false;
        return true;
      },
      200ms);
  REQUIRE_MESSAGE(done, anax_statuses(r) << "\n" << r.diagnostics());
}

// What must hold at the end of every rollout beside anax: one upgrader (anax's
// executor never ran), one download per node (anax's; agentd fetched no release
// file), anax's own version current, the agbot's lock free.
void check_beside_anax(PackageRollout& p, const std::string& version) {
  Rollout& r = p.rollout();
  auto stats = r.hub().stats();
  for (std::size_t i = 0; i < r.size(); ++i) {
    const std::string caller = r.options().org + "/" + r.member(i).node();
    CAPTURE(caller);
    CHECK(r.anax(i).executor_runs() == 0);
    CHECK(r.anax(i).recorded_version() == version);
    CHECK(stats[caller].file_reads == 0);
    CHECK(stats[caller + "#anax"].file_reads == 1);
    CHECK(r.anax(i).downloads(version) == 1);
  }
  bool freed = poll_until(deadline_in(15s), [&] { return r.hub().agbot_locks().empty(); });
  CHECK_MESSAGE(freed, "the agbot's group lock is still held");
}

void stop_all(PackageRollout& p) {
  p.touch_in_roots("tmp/go");
  p.touch_in_roots("tmp/healthy");
  p.rollout().stop_all();
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE(
      "beside anax with real packages: the bundle anax downloaded is installed, one download per node") {
    REQUIRE(testing::have_tool("dpkg"));
    PackageRollout p(beside_anax());
    Rollout& r = p.rollout();
    p.publish("2.0.0", p.build({.version = "2.0.0"}));
    r.start_all();
    require_done_beside_anax(p, "2.0.0 ii", "successful");
    check_beside_anax(p, "2.0.0");
    for (auto& m : r.members()) {
      CAPTURE(m->node());
      // The bundle (copied from anax's job directory, not fetched), verified against
      // the signed manifest, then the package in it.
      CHECK(!grep_lines(m->log_path(), "event=downloaded file=horizon-agent-linux-deb-" + p.arch()).empty());
      CHECK(!grep_lines(m->log_path(), "event=prepared target=2.0.0 file=horizon_2.0.0_" + p.arch()).empty());
    }
    CHECK(lease_stats(r).most_at_once == 1);
    check_invariants(r, true);
    stop_all(p);
  }

  TEST_CASE(
      "a stock node with real packages: anax's armed executor installs the bundle (the stand-in's control)") {
    // No agentd: what the tests above rule out is what anax's cron executor does.
    REQUIRE(testing::have_tool("dpkg"));
    PackageRolloutOptions o = beside_anax(1);
    o.group = "";
    o.anax.cron_file = true;
    PackageRollout p(o);
    Rollout& r = p.rollout();
    p.publish("2.0.0", p.build({.version = "2.0.0"}));
    require_done_beside_anax(p, "2.0.0 ii", "successful");
    CHECK(r.anax(0).executor_runs() == 1);
    CHECK(r.anax(0).recorded_version() == "2.0.0");
  }

  TEST_CASE("beside anax with real packages: agentd or anax killed at each step; every job ends successful") {
    // anax-coexistence.md §3.2: whatever dies, every job agentd took ends in a final
    // status, anax's version is current and the agbot's lock is freed. The first
    // holder's install (dpkg's preinst) or health check waits until the process
    // named below was killed and restarted.
    REQUIRE(testing::have_tool("dpkg"));
    struct Kill {
      const char* step;  // "install" | "health"
      bool agentd;
      bool anax;
    };
    Kill kill{};
    SUBCASE("agentd during the install") {
      kill = {"install", true, false};
    }
    SUBCASE("anax during the install") {
      kill = {"install", false, true};
    }
    SUBCASE("agentd and anax during the install") {
      kill = {"install", true, true};
    }
    SUBCASE("agentd during the health check") {
      kill = {"health", true, false};
    }
    SUBCASE("anax during the health check, back after agentd's report failed") {
      kill = {"health", false, true};
    }
    CAPTURE(kill.step);
    CAPTURE(kill.agentd);
    CAPTURE(kill.anax);
    const bool at_install = std::string(kill.step) == "install";

    PackageRollout p(beside_anax());
    Rollout& r = p.rollout();
    p.publish("2.0.0",
              p.build({.version = "2.0.0", .health_waits = !at_install, .preinst_waits = at_install}));
    r.start_all();
    std::string holder = wait_for_holder(r, kTimeout);
    REQUIRE_MESSAGE(!holder.empty(), r.diagnostics());
    for (auto& m : r.members())
      if (m->node() != holder) {
        write_file(PackageRollout::root(*m) + "/tmp/go", "");
        write_file(PackageRollout::root(*m) + "/tmp/healthy", "");
      }
    const std::string root = PackageRollout::root(r.member(holder));
    const std::string started = root + (at_install ? "/tmp/preinst-started" : "/tmp/health-started");
    REQUIRE_MESSAGE(poll_until(deadline_in(kTimeout), [&] { return file_exists(started); }), r.diagnostics());
    CHECK(r.anax(holder).status(job_key(r)).value_or("") == "initiated");

    if (kill.agentd) r.member(holder).kill9();
    if (kill.anax) r.anax(holder).kill9();
    // The step goes on without them (dpkg and the health check run detached).
    write_file(root + (at_install ? "/tmp/go" : "/tmp/healthy"), "");
    if (!kill.agentd) {
      // agentd alone finishes the step; its final report cannot reach anax yet.
      REQUIRE_MESSAGE(poll_until(deadline_in(kTimeout),
                                 [&] {
                                   const GroupDocument d = r.group();  // entry() points into it
                                   auto e = d.entry(holder);
                                   return e && e->state == State::succeeded;
                                 }),
                      r.diagnostics());
      // ... which it tries (and logs) right after its release.
      CHECK(poll_until(deadline_in(30s), [&] {
        return !grep_lines(r.member(holder).log_path(), "event=management-status-failed").empty();
      }));
    }
    if (kill.anax) r.anax(holder).restart();
    if (kill.agentd) r.member(holder).start();

    require_done_beside_anax(p, "2.0.0 ii", "successful");
    check_beside_anax(p, "2.0.0");
    CHECK(lease_stats(r).most_at_once == 1);
    check_invariants(r, true);
    stop_all(p);
  }
}
