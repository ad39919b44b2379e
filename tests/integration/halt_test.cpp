// One bad upgrade halts the group for that target until an admin resumes
// (protocol.md §1 goal 4, §4.5, §6).
#include "common.h"

using namespace agentd;
using namespace agentd::it;

TEST_SUITE("integration") {
  TEST_CASE("a failed health check halts the group with the reason; agentctl resume lets it continue") {
    Rollout r;
    for (auto& m : r.members()) m->fail_health(true);
    r.start_all();

    // The first holder fails its health check, rolls back and halts the group.
    std::string failed = wait_for_halting(r);
    REQUIRE_MESSAGE(!failed.empty(), r.diagnostics());
    Member& f = r.member(failed);

    GroupDocument doc = r.group();
    const Entry* e = doc.entry(failed);
    REQUIRE(e != nullptr);
    CHECK_MESSAGE(e->message.find("health") != std::string::npos, e->message);
    CHECK(e->target_version == "2.0.0");
    // Rolled back: the fake agent runs the old version again.
    CHECK(poll_until(deadline_in(10s), [&] { return f.version() == "1.0.0"; }));
    CHECK(f.agent_calls("rollback") >= 1);
    // The management status follows the entry (exchange-api.md §4.3 strings).
    std::optional<ManagementStatus> mgmt;
    poll_until(deadline_in(10s), [&] {
      mgmt = r.hub().get_management_status("o", failed, r.options().nmp);
      return mgmt && (mgmt->status == "rollback successful" || mgmt->status == "failed");
    });
    REQUIRE(mgmt.has_value());
    CHECK_MESSAGE((mgmt->status == "rollback successful" || mgmt->status == "failed"), mgmt->status);
    CHECK_MESSAGE(mgmt->error_message.find("health") != std::string::npos, mgmt->error_message);

    // Halted: nobody else installs 2.0.0, and the halt is a valid end state (I4).
    bool moved = poll_until(deadline_in(5s), [&] { return installs_except(r, failed) > 0; });
    CHECK_MESSAGE(!moved, r.diagnostics());
    check_invariants(r, true);

    // The admin fixes the cause and resumes: the rollout continues, the failed member included.
    for (auto& m : r.members()) m->fail_health(false);
    auto resumed = r.agentctl({"resume", "g", failed});
    REQUIRE_MESSAGE(resumed.status.code == 0, resumed.output);
    require_done(r, "2.0.0");
    check_invariants(r, true);
  }
}
