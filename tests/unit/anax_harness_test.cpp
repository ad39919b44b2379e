// The anax stand-in run by the harness (tests/harness): real processes, with no
// agentd started, so anax's own machinery upgrades the group, as on a stock node.
#include <doctest/doctest.h>

#include <string>

#include "harness/harness.h"

using namespace agentd::harness;

TEST_SUITE("anax") {
  TEST_CASE("anax harness: stock anax stand-ins upgrade their group through the agbot lock, one at a time") {
    RolloutOptions o;
    o.members = 3;
    o.anax = true;
    o.hub.agbot_interval_seconds = "0.4";
    Rollout rollout(o);
    bool done = poll_until(deadline_in(60s), [&] {
      for (std::size_t i = 0; i < rollout.size(); ++i)
        if (rollout.anax(i).status("o/upgrade-agents") != "successful") return false;
      return rollout.hub().agbot_locks().empty();
    });
    REQUIRE_MESSAGE(done, rollout.diagnostics());
    for (std::size_t i = 0; i < rollout.size(); ++i) {
      CHECK(rollout.member(i).version() == "2.0.0");
      CHECK(rollout.member(i).agent_calls("install") == 1);
      CHECK(rollout.anax(i).executor_runs() == 1);
      CHECK(rollout.anax(i).recorded_version() == "2.0.0");
      auto st = rollout.hub().get_management_status("o", rollout.member(i).node(), "upgrade-agents");
      REQUIRE(st.has_value());
      CHECK(st->status == "successful");
    }
    // One holder at a time: grants and releases alternate.
    auto events = rollout.hub().agbot_lock_events();
    REQUIRE(events.size() == 6);
    for (std::size_t i = 0; i < events.size(); ++i) {
      CHECK(events[i].op == (i % 2 == 0 ? "grant" : "release"));
      if (i % 2 == 1) {
        CHECK(events[i].node == events[i - 1].node);
        CHECK(events[i].reason == "status successful");
      }
    }
    CHECK(read_file(rollout.member(0).horizon_path())
              .find("HZN_AGENT_PORT=" + std::to_string(rollout.anax(0).port())) != std::string::npos);
  }

  TEST_CASE(
      "anax harness: the stand-in survives kill -9 with its records and port; no cron file, no executor") {
    RolloutOptions o;
    o.members = 1;
    o.group = "";
    o.anax = true;
    o.anax_options.cron_file = false;
    Rollout rollout(o);
    Anax& a = rollout.anax("n1");
    REQUIRE(poll_until(deadline_in(20s), [&] { return a.status("o/upgrade-agents") == "downloaded"; }));
    int port = a.port();
    a.kill9();
    a.restart();
    CHECK(a.port() == port);
    CHECK(a.status("o/upgrade-agents") == "downloaded");
    CHECK(a.executor_runs() == 0);
    a.set_cron_file(true);
    CHECK(poll_until(deadline_in(20s), [&] { return a.status("o/upgrade-agents") == "successful"; }));
    CHECK(a.executor_runs() == 1);
    CHECK(rollout.member(0).version() == "2.0.0");
  }
}
