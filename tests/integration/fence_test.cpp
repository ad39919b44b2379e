// An admin ends a lease in the middle of a long install (protocol.md §4.4, §6 as
// amended): the install is not undone, and no other member starts its own until
// it has ended.
#include "common.h"

using namespace agentd;
using namespace agentd::it;

TEST_SUITE("integration") {
  TEST_CASE("agentctl force-release during a 4 s install: the next member installs only after it ended") {
    Rollout r;
    for (auto& m : r.members()) m->install_delay(4);
    r.start_all();
    std::string holder;
    bool installing = poll_until(
        deadline_in(kRolloutTimeout),
        [&] {
          for (auto& m : r.members())
            if (m->agent_calls("install") > 0) holder = m->node();
          return !holder.empty();
        },
        50ms);
    REQUIRE_MESSAGE(installing, r.diagnostics());
    auto released = r.agentctl({"force-release", "g", holder});
    REQUIRE_MESSAGE(released.status.code == 0, released.output);

    // The holder says it is fenced and still inside its install: upgrading, no lease.
    bool shown = r.wait_group(
        [&](const GroupDocument& doc) {
          const Entry* e = doc.entry(holder);
          return e && e->state == State::upgrading && !carries_lease(*e) &&
                 e->message.find("still running") != std::string::npos;
        },
        deadline_in(10s));
    CHECK_MESSAGE(shown, r.diagnostics());
    require_done(r, "2.0.0");
    CHECK(!grep_lines(r.member(holder).log_path(), "event=fence").empty());
    CHECK(r.member(holder).agent_calls("install") == 1);  // finished under its next lease, not run again
    // I3 as amended: the members' step logs never show two installs at once.
    check_invariants(r, true);
  }
}
