// A hub without the coordination extension cannot give safety: a grouped node
// refuses to upgrade and says why; a node in no group upgrades (protocol.md §3).
#include "common.h"

using namespace agentd;
using namespace agentd::it;

namespace {

void grouped_node_refuses(const std::string& mode) {
  RolloutOptions o;
  o.members = 2;
  o.hub.mode = mode;
  Rollout r(o);
  Member& loner = r.add_node("n3");  // in no group
  r.start_all();

  bool upgraded = poll_until(deadline_in(kRolloutTimeout), [&] { return loner.version() == "2.0.0"; });
  CHECK_MESSAGE(upgraded, r.diagnostics());
  for (int i = 0; i < 2; ++i) {
    Member& m = r.member(i);
    // It says why, in its log and in its management status (what `hzn` shows).
    std::optional<ManagementStatus> st;
    bool said = poll_until(deadline_in(20s), [&] {
      st = r.hub().get_management_status("o", m.node(), r.options().nmp);
      return !grep_lines(m.log_path(), "event=unsupported-hub").empty() && st &&
             st->error_message.find("refusing to upgrade") != std::string::npos;
    });
    CHECK_MESSAGE(said, r.diagnostics());
    if (st) MESSAGE(m.node() << " management status: " << st->status << ": " << st->error_message);
    CHECK(m.running());
    CHECK(m.version() == "1.0.0");
    CHECK(m.agent_calls("install") == 0);
  }
  check_invariants(r, true);
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("hub without ETags: a grouped node refuses to upgrade, an ungrouped node upgrades") {
    grouped_node_refuses("no-etag");
  }
  TEST_CASE("hub without the coordination extension: a grouped node refuses, an ungrouped node upgrades") {
    grouped_node_refuses("no-coordination");
  }
}
