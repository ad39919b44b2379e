// The lease holder dies mid-install (kill -9): its lease expires by itself, the
// others wait while it is unhealthy, and either it comes back and finishes, or an
// admin removes it and the rest finish (protocol.md §1 goals 2 and 3).
#include "common.h"

using namespace agentd;
using namespace agentd::it;

namespace {

// Starts every member with a slow install and kills the first holder mid-install.
// Returns the holder; the others' installs are fast again.
std::string kill_holder_mid_install(Rollout& r) {
  for (auto& m : r.members()) m->install_delay(4);
  r.start_all();
  std::string holder = wait_for_holder(r);
  REQUIRE_MESSAGE(!holder.empty(), r.diagnostics());
  Member& h = r.member(holder);
  bool installing = poll_until(deadline_in(20s), [&] { return h.agent_calls("install") > 0; });
  REQUIRE_MESSAGE(installing, r.diagnostics());
  for (auto& m : r.members())
    if (m->node() != holder) m->install_delay(0);
  h.kill9();
  return holder;
}

// For `how_long`, nobody but `holder` starts an install or holds a lease.
void others_stay_put(Rollout& r, const std::string& holder, std::chrono::seconds how_long) {
  std::string why;
  bool moved = poll_until(
      deadline_in(how_long),
      [&] {
        if (installs_except(r, holder) > 0) {
          why = "another member installed";
          return true;
        }
        try {
          for (const auto& n : lease_holders(r.group()))
            if (n != holder) {
              why = n + " holds a lease";
              return true;
            }
        } catch (const std::runtime_error&) {
        }
        return false;
      },
      100ms);
  CHECK_MESSAGE(!moved, why << "\n" << r.diagnostics());
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("kill -9 of the holder mid-install: the others wait, it resumes after restart") {
    Rollout r;
    std::string holder = kill_holder_mid_install(r);
    // The lease (3 s) runs out by itself, and still no one moves while the holder
    // is unhealthy (minAvailable: all others healthy).
    others_stay_put(r, holder, 8s);
    check_invariants(r, false);

    Member& h = r.member(holder);
    h.install_delay(0);
    h.start();
    require_done(r, "2.0.0");
    CHECK(grep_lines(h.log_path(), "event=resumed").size() >= 1);
    check_invariants(r, true);
  }

  TEST_CASE("the dead holder never comes back: an admin removes it and the rollout finishes") {
    Rollout r;
    std::string holder = kill_holder_mid_install(r);
    others_stay_put(r, holder, 5s);

    auto removed = r.agentctl({"remove", "g", holder});
    REQUIRE_MESSAGE(removed.status.code == 0, removed.output);

    bool done = r.wait_group(
        [&](const GroupDocument& doc) {
          if (doc.is_member(holder) || doc.members.size() != 4) return false;
          for (const auto& m : doc.members) {
            const Entry* e = doc.entry(m);
            if (!e || e->state != State::succeeded || e->version != "2.0.0") return false;
          }
          return true;
        },
        deadline_in(kRolloutTimeout));
    CHECK_MESSAGE(done, r.diagnostics());
    for (auto& m : r.members())
      if (m->node() != holder) CHECK_MESSAGE(m->version() == "2.0.0", m->node());
    check_invariants(r, true);
  }
}
