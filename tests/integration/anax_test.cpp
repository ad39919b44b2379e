// agentd beside anax (anax-coexistence.md, issue "agentd beside the real anax
// agent"): real agentd processes, each beside an anax stand-in (tests/anax) that
// downloads the release, asks the agbot for its group lock and would run its own
// cron executor. Its cron file is taken away as agentd's package does
// (systemd/cron-guard.sh, tested under systemd in tests/systemd/nspawn-test.sh),
// so a run of the executor is a failure here.
#include "check/invariants.h"
#include "common.h"

using namespace agentd;
using namespace agentd::it;

namespace {

RolloutOptions beside_anax(const std::string& hub_mode = "full") {
  RolloutOptions o;
  o.anax = true;
  o.anax_options.cron_file = false;
  o.hub.mode = hub_mode;
  o.member.extra.push_back({"AGENTD_ANAX", "on"});
  return o;
}

bool every_anax_at(Rollout& r, const std::string& status) {
  for (std::size_t i = 0; i < r.size(); ++i)
    if (r.anax(i).status(job_key(r)).value_or("") != status) return false;
  return true;
}

// The members' disruptive steps never overlap (protocol.md §7 I3, from their own
// step logs; on a hub without the extension there is no hub log to judge by).
void check_one_step_at_a_time(Rollout& r) {
  std::vector<check::Step> steps;
  for (auto& m : r.members()) {
    if (!file_exists(m->steps_path())) continue;  // it has taken no step
    auto more = check::read_steps(m->steps_path());
    REQUIRE_MESSAGE(more.has_value(), m->steps_path());
    steps.insert(steps.end(), more->begin(), more->end());
  }
  std::sort(steps.begin(), steps.end(),
            [](const check::Step& a, const check::Step& b) { return a.t_us < b.t_us; });
  std::map<std::string, int> inside;
  int most = 0;
  for (const auto& s : steps) {
    int& n = inside[s.node];
    n = s.end ? 0 : 1;
    int now = 0;
    for (const auto& [node, in] : inside) now += in;
    most = std::max(most, now);
  }
  CHECK_MESSAGE(most == 1, "members inside a disruptive step at once: " << most);
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE(
      "beside anax, with the coordination extension: anax's jobs, one member at a time, all successful") {
    Rollout r(beside_anax());
    r.start_all();
    require_done(r, "2.0.0");
    bool final_status = poll_until(deadline_in(20s), [&] { return every_anax_at(r, "successful"); });
    CHECK_MESSAGE(final_status, anax_statuses(r));
    for (std::size_t i = 0; i < r.size(); ++i) {
      CAPTURE(r.member(i).node());
      CHECK(r.member(i).agent_calls("install") == 1);
      CHECK(r.anax(i).executor_runs() == 0);           // one executor: agentd
      CHECK(r.anax(i).recorded_version() == "2.0.0");  // anax's own version is not stale
    }
    LeaseStats stats = lease_stats(r);
    CHECK(stats.most_at_once == 1);
    CHECK(stats.acquisitions == 5);
    check_invariants(r, true);
    // Every job ended, so the agbot frees whatever lock anax took (its monitor lags).
    bool freed = poll_until(deadline_in(10s), [&] { return r.hub().agbot_locks().empty(); });
    CHECK_MESSAGE(freed, "the agbot's group lock is still held");
  }

  TEST_CASE(
      "beside anax, on a hub without the coordination extension: the agbot's lock serialises the group") {
    Rollout r(beside_anax("no-coordination"));
    r.start_all();
    bool done = r.wait_all_at("2.0.0", deadline_in(kRolloutTimeout));
    REQUIRE_MESSAGE(done, anax_statuses(r) << "\n" << r.diagnostics());
    bool final_status = poll_until(deadline_in(20s), [&] { return every_anax_at(r, "successful"); });
    CHECK_MESSAGE(final_status, anax_statuses(r));
    for (std::size_t i = 0; i < r.size(); ++i) {
      CAPTURE(r.member(i).node());
      CHECK(r.member(i).agent_calls("install") == 1);
      CHECK(r.anax(i).executor_runs() == 0);
    }
    check_one_step_at_a_time(r);
    // The lock went from member to member, and is free at the end.
    int grants = 0;
    for (const auto& e : r.hub().agbot_lock_events())
      if (e.op == "grant") ++grants;
    CHECK(grants == 5);
    bool freed = poll_until(deadline_in(10s), [&] { return r.hub().agbot_locks().empty(); });
    CHECK_MESSAGE(freed, "the agbot's group lock is still held");
    // agentd says what this hub cannot give.
    CHECK(!grep_lines(r.member(0).log_path(), "event=unsupported-hub").empty());
  }

  TEST_CASE("beside anax: a failed health check rolls back, anax's record says so, the group halts") {
    Rollout r(beside_anax());
    for (auto& m : r.members()) m->fail_health(true);
    r.start_all();
    std::string failed = wait_for_halting(r);
    REQUIRE_MESSAGE(!failed.empty(), r.diagnostics());
    bool recorded = poll_until(deadline_in(20s), [&] {
      return r.anax(failed).status(job_key(r)).value_or("") == "rollback successful";
    });
    CHECK_MESSAGE(recorded, anax_statuses(r));
    CHECK(r.member(failed).version() == "1.0.0");
    // Nobody else installs the release that failed.
    bool moved = poll_until(deadline_in(4s), [&] { return installs_except(r, failed) > 0; });
    CHECK_FALSE(moved);
    check_invariants(r, true);
  }

  TEST_CASE(
      "beside anax, on a hub without the coordination extension: a failed health check rolls back and frees "
      "the "
      "agbot's lock") {
    // No group halt on this hub (agentd says so): the failure is reported, anax's
    // job ends `rollback successful`, and the agbot's lock goes to the next member.
    Rollout r(beside_anax("no-coordination"));
    for (auto& m : r.members()) m->fail_health(true);
    r.start_all();
    std::string first;
    bool rolled_back = poll_until(deadline_in(kRolloutTimeout), [&] {
      for (std::size_t i = 0; i < r.size(); ++i)
        if (r.anax(i).status(job_key(r)).value_or("") == "rollback successful") first = r.member(i).node();
      return !first.empty();
    });
    REQUIRE_MESSAGE(rolled_back, anax_statuses(r) << "\n" << r.diagnostics());
    CHECK(r.member(first).version() == "1.0.0");
    auto st = r.hub().get_management_status(r.options().org, first, r.options().nmp);
    REQUIRE(st.has_value());
    CHECK(st->status == "rollback successful");
    CHECK(st->error_message.find("health") != std::string::npos);
    // The lock the failed member held is released, and granted again to another.
    bool passed_on = poll_until(deadline_in(kRolloutTimeout), [&] {
      bool released = false, regranted = false;
      for (const auto& e : r.hub().agbot_lock_events()) {
        if (e.op == "release" && e.node == first) released = true;
        if (released && e.op == "grant" && e.node != first) regranted = true;
      }
      return regranted;
    });
    CHECK_MESSAGE(passed_on, "the agbot's lock did not pass on from " << first);
    CHECK(!grep_lines(r.member(first).log_path(), "event=unsupported-hub").empty());
    for (std::size_t i = 0; i < r.size(); ++i) CHECK(r.anax(i).executor_runs() == 0);
    r.stop_all();
    check_one_step_at_a_time(r);
  }

  TEST_CASE("beside anax: agentd and anax killed at each step of the job; every job still ends successful") {
    // anax-coexistence.md §3.2: every job agentd takes ends in a final status, also
    // after crashes and restarts of either process, so anax's record and the agbot's
    // lock never stay active. Members 1-4 each lose a process at another step.
    Rollout r(beside_anax());
    for (auto& m : r.members()) m->install_delay(1.5);
    r.start_all();
    const std::string key = job_key(r);
    // n1: anax killed and restarted while its job waits for the lease.
    bool waiting = poll_until(deadline_in(kRolloutTimeout), [&] {
      auto st = r.anax("n1").status(key);
      return st && (*st == "ha node waiting" || *st == "downloaded");
    });
    REQUIRE_MESSAGE(waiting, anax_statuses(r));
    r.anax("n1").kill9();
    r.anax("n1").restart();
    // The first member to install: agentd killed mid-install, then anax too.
    std::string holder;
    bool installing = poll_until(deadline_in(kRolloutTimeout), [&] {
      for (auto& m : r.members())
        if (m->agent_calls("install") > 0) holder = m->node();
      return !holder.empty();
    });
    REQUIRE_MESSAGE(installing, r.diagnostics());
    r.member(holder).kill9();
    r.anax(holder).kill9();
    r.anax(holder).restart();
    r.member(holder).start();
    // The next member to report initiated: anax killed right after it took it.
    std::string second;
    bool initiated = poll_until(deadline_in(kRolloutTimeout), [&] {
      for (std::size_t i = 0; i < r.size(); ++i)
        if (r.member(i).node() != holder && r.anax(i).status(key).value_or("") == "initiated")
          second = r.member(i).node();
      return !second.empty();
    });
    REQUIRE_MESSAGE(initiated, anax_statuses(r));
    r.anax(second).kill9();
    // ... and comes back only after agentd tried to report its end.
    poll_until(deadline_in(10s), [&] { return r.member(second).version() == "2.0.0"; });
    r.anax(second).restart();

    require_done(r, "2.0.0");
    bool final_status = poll_until(deadline_in(60s), [&] { return every_anax_at(r, "successful"); });
    CHECK_MESSAGE(final_status, anax_statuses(r));
    for (std::size_t i = 0; i < r.size(); ++i) {
      CAPTURE(r.member(i).node());
      CHECK(r.anax(i).executor_runs() == 0);
      CHECK(r.anax(i).recorded_version() == "2.0.0");
    }
    check_invariants(r, true);
    bool freed = poll_until(deadline_in(10s), [&] { return r.hub().agbot_locks().empty(); });
    CHECK_MESSAGE(freed, "the agbot's group lock is still held");
  }
}
