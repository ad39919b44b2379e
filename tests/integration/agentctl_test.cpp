// agentctl's credentials: from a private file or the environment; on the
// command line they are visible to every user (ps), so agentctl warns.
#include <cjson/cJSON.h>

#include "agentd/json.h"
#include "common.h"

using namespace agentd;
using namespace agentd::it;

TEST_SUITE("integration") {
  TEST_CASE(
      "agentctl: --user-auth-file is read quietly; --user-auth works with a warning; an open file is "
      "refused") {
    Rollout r;
    auto quiet = r.agentctl({"status", "g"});
    REQUIRE_MESSAGE(quiet.status.code == 0, quiet.output);
    CHECK(quiet.output.find("warning") == std::string::npos);

    auto shown = run_command({AGENTCTL_BIN, "--exchange-url", r.hub().exchange_url(), "--org",
                              r.options().org, "--user-auth", "admin:adminpw", "status", "g"},
                             {}, r.dir().file("agentctl-shown.out"));
    CHECK_MESSAGE(shown.status.code == 0, shown.output);
    CHECK(shown.output.find("agentctl: warning: --user-auth shows the password") != std::string::npos);

    const std::string open_file = r.dir().file("open-auth");
    write_file(open_file, "admin:adminpw\n", 0644);
    auto refused = run_command({AGENTCTL_BIN, "--exchange-url", r.hub().exchange_url(), "--org",
                                r.options().org, "--user-auth-file", open_file, "status", "g"},
                               {}, r.dir().file("agentctl-open.out"));
    CHECK(refused.status.code == 2);
    CHECK_MESSAGE(refused.output.find("--user-auth-file: " + open_file + ": mode 0644") != std::string::npos,
                  refused.output);
  }
}

TEST_SUITE("integration") {
  TEST_CASE(
      "agentctl status --watch: a line per change through a rollout; --json as documented; SIGINT ends it") {
    RolloutOptions o;
    o.members = 2;
    Rollout r(o);
    for (auto& m : r.members()) m->install_delay(0.5);
    // Output to a file: not a terminal, so one line per change.
    Process watch(r.agentctl_argv({"status", "g", "--watch", "--interval", "0.5"}), {},
                  r.dir().file("watch.out"));
    r.start_all();
    require_done(r, "2.0.0");
    // Each member's way through the rollout, as the watch saw it.
    bool seen = poll_until(deadline_in(10s), [&] {
      return grep_lines(watch.output_file(), " n1 succeeded 2.0.0 epoch").size() == 1 &&
             grep_lines(watch.output_file(), " n2 succeeded 2.0.0 epoch").size() == 1;
    });
    const std::string out = watch.output();
    CHECK_MESSAGE(seen, out);
    for (const char* node : {"n1", "n2"}) {
      CHECK_MESSAGE(
          out.find(std::string(" ") + node + " upgrading 1.0.0 -> 2.0.0 epoch ") != std::string::npos, out);
    }
    CHECK(out.find(" halted: no\n") != std::string::npos);
    CHECK(out.find("group g settings: maxConcurrent=1") != std::string::npos);
    // Quiet revisions (heartbeats) print nothing: far fewer lines than reads.
    CHECK(grep_lines(watch.output_file(), " n1 ").size() < 15);
    watch.signal(SIGINT);
    auto ended = watch.wait(deadline_in(10s));
    REQUIRE(ended.has_value());
    CHECK_MESSAGE(ended->code == 0, watch.output());

    auto json = r.agentctl({"status", "g", "--json"});
    REQUIRE_MESSAGE(json.status.code == 0, json.output);
    auto doc = json::parse(json.output, "status --json");
    REQUIRE_MESSAGE(doc, json.output);
    CHECK(*json::get_string(doc->get(), "group") == "g");
    CHECK_FALSE(*json::get_bool(doc->get(), "halted"));
    auto members = json::get_array(doc->get(), "members");
    REQUIRE(members);
    CHECK(cJSON_GetArraySize(*members) == 2);
    const cJSON* first = cJSON_GetArrayItem(*members, 0);
    CHECK(*json::get_string(first, "node") == "n1");
    CHECK(*json::get_string(first, "state") == "succeeded");
    CHECK(*json::get_string(first, "version") == "2.0.0");
    auto raw = r.agentctl({"status", "g", "--raw"});
    CHECK(raw.output.find("\"nodeGroups\"") != std::string::npos);
  }
}
