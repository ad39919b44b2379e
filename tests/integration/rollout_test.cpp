// A rollout across a healthy group, and a group whose membership changes mid-rollout.
#include "common.h"

using namespace agentd;
using namespace agentd::it;

TEST_SUITE("integration") {
  TEST_CASE("a 5-member rollout completes, one member at a time") {
    Rollout r;
    r.start_all();
    require_done(r, "2.0.0");
    for (auto& m : r.members()) CHECK_MESSAGE(m->agent_calls("install") == 1, m->node());
    // One member at a time in every logged state, and one acquisition per member.
    LeaseStats stats = lease_stats(r);
    CHECK(stats.most_at_once == 1);
    CHECK(stats.acquisitions == 5);
    check_invariants(r, true);
  }

  TEST_CASE("a node joins mid-rollout and takes part; a node leaves") {
    RolloutOptions o;
    o.members = 4;
    Rollout r(o);
    for (auto& m : r.members()) m->install_delay(0.5);
    r.start_all();
    // Once the first member is done, n5 joins and n4 (still on the old version) leaves.
    bool first_done = r.wait_group(
        [](const GroupDocument& doc) {
          for (const auto& [node, e] : doc.entries)
            if (e.state == State::succeeded) return true;
          return false;
        },
        deadline_in(kRolloutTimeout));
    REQUIRE_MESSAGE(first_done, r.diagnostics());

    Member& n5 = r.add_node("n5");
    r.hub().add_member("o", "g", "n5", r.admin());
    n5.start();

    Member& n4 = r.member("n4");
    auto removed = r.agentctl({"remove", "g", "n4"});
    REQUIRE_MESSAGE(removed.status.code == 0, removed.output);

    // Everyone still in the group ends at the target, n5 included.
    bool done = r.wait_group(
        [](const GroupDocument& doc) {
          if (doc.is_member("n4") || !doc.is_member("n5")) return false;
          for (const auto& m : doc.members) {
            const Entry* e = doc.entry(m);
            if (!e || e->state != State::succeeded || e->version != "2.0.0") return false;
          }
          return true;
        },
        deadline_in(kRolloutTimeout));
    CHECK_MESSAGE(done, r.diagnostics());
    CHECK(n5.version() == "2.0.0");
    CHECK(n5.agent_calls("install") == 1);
    // n4 is out of the group: it has no entry any more (protocol.md §3).
    CHECK_FALSE(r.group().entries.contains("n4"));
    MESSAGE("n4 after leaving runs " << n4.version());
    check_invariants(r, true);
  }
}
