// agentctl's credentials: from a private file or the environment; on the
// command line they are visible to every user (ps), so agentctl warns.
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
