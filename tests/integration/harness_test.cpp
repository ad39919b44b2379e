// The harness itself against the real stand-in: set-up helpers, the write log,
// and a restart on the same port that keeps the hub's state.
#include <csignal>

#include "common.h"

using namespace agentd;
using namespace agentd::it;

TEST_SUITE("integration") {
  TEST_CASE("harness: the stand-in starts, is set up, and survives kill -9 with its state and port") {
    RolloutOptions o;
    o.members = 2;
    Rollout r(o);
    Hub& hub = r.hub();
    CHECK(hub.port() > 0);

    GroupDocument doc = r.group();
    CHECK(doc.name == "g");
    CHECK(doc.members == std::vector<std::string>{"n1", "n2"});
    CHECK(doc.entries.empty());
    CHECK(doc.revision > 0);
    CHECK(!grep_lines(hub.write_log_path(), "\"op\":\"group_create\"").empty());

    // A node reads its own record with its token; a wrong token is refused.
    auto own = hub.request("GET", "/v1/orgs/o/nodes/n1", "", Credentials{"o/n1", "tok-n1"});
    CHECK(own.status == 200);
    auto wrong = hub.request("GET", "/v1/orgs/o/nodes/n1", "", Credentials{"o/n1", "nope"});
    CHECK(wrong.status == 401);
    // The published target is readable as agentd reads it.
    auto nmps = hub.request("GET", "/v1/orgs/o/managementpolicies", "", Credentials{"o/n1", "tok-n1"});
    CHECK(nmps.status == 200);
    CHECK(nmps.body.find("o/agent-2.0.0") != std::string::npos);
    auto manifest = hub.request("GET", "/css/api/v1/objects/o/agent_upgrade_manifests/agent-2.0.0/data", "",
                                Credentials{"o/n1", "tok-n1"});
    CHECK(manifest.status == 200);
    CHECK(manifest.body.find("\"2.0.0\"") != std::string::npos);

    Faults f;
    f.drop_after_commit = 2;
    hub.set_faults(f);
    CHECK(hub.request("GET", "/v1/standin/faults").body.find("\"dropAfterCommit\":2") != std::string::npos);
    f.drop_after_commit = 0;
    hub.set_faults(f);

    int port = hub.port();
    hub.kill9();
    CHECK_FALSE(hub.running());
    CHECK(hub.request("GET", "/v1/orgs/o").status == 0);
    hub.restart();
    CHECK(hub.running());
    CHECK(hub.port() == port);
    CHECK(r.group().members == std::vector<std::string>{"n1", "n2"});

    hub.remove_member("o", "g", "n2", r.admin());
    CHECK(r.group().members == std::vector<std::string>{"n1"});
    hub.stop();
    CHECK_FALSE(hub.running());
    check_invariants(r, true);
  }

  TEST_CASE("harness: a process is waited for with a deadline and killed on request") {
    TempDir dir;
    Process p({"/bin/sh", "-c", "echo started; exec sleep 30"}, {{"AGENTD_X", "1"}}, dir.file("out"));
    CHECK(poll_until(deadline_in(5s), [&] { return p.output().find("started") != std::string::npos; }));
    CHECK_FALSE(p.wait(deadline_in(100ms)).has_value());
    ExitStatus st = p.kill9();
    CHECK(st.signal == SIGKILL);
    auto r = run_command({"/bin/sh", "-c", "echo \"${AGENTD_X:-unset} ${HZN_ORG_ID:-unset}\"; exit 3"},
                         {{"AGENTD_X", "set"}}, dir.file("cmd"));
    CHECK(r.status.code == 3);
    CHECK(r.output == "set unset\n");
  }
}
