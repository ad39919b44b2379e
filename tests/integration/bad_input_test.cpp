// Bad local input stops agentd before it touches anything, with a distinct exit
// status and the file named (architecture.md "Configuration"); bad credentials
// are reported and retried without writing anything.
#include <filesystem>
#include <sstream>

#include "common.h"

using namespace agentd;
using namespace agentd::it;

namespace {

ExitStatus exit_of(Rollout& r, Member& m) {
  auto st = m.wait_exit(deadline_in(10s));
  REQUIRE_MESSAGE(st.has_value(), "agentd did not exit\n" << r.diagnostics());
  return *st;
}

int line_of(const std::string& path, const std::string& prefix) {
  int n = 0;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.rfind(prefix, 0) == 0) return n;
  }
  return -1;
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("an unreadable or world-readable token file: exit 4 naming the file") {
    RolloutOptions o;
    o.members = 1;
    Rollout r(o);
    Member& m = r.member(0);
    SUBCASE("missing") {
      std::filesystem::remove(m.token_path());
    }
    SUBCASE("readable by others") {
      m.write_token("tok-n1", 0644);
    }
    m.start();
    ExitStatus st = exit_of(r, m);
    CHECK(st.code == 4);
    CHECK_MESSAGE(m.log().find(m.token_path()) != std::string::npos, m.log());
    CHECK(grep_lines(r.hub().write_log_path(), "\"actor\":\"o/n1\"").empty());
    check_invariants(r, true);
  }

  TEST_CASE("a bad configuration value: exit 3 with file:line: key") {
    RolloutOptions o;
    o.members = 1;
    Rollout r(o);
    Member& m = r.member(0);
    m.options().heartbeat_seconds = "soon";
    m.write_config();
    int line = line_of(m.config_path(), "AGENTD_HEARTBEAT_SECONDS=");
    REQUIRE(line > 0);
    m.start();
    ExitStatus st = exit_of(r, m);
    CHECK(st.code == 3);
    std::string where = m.config_path() + ":" + std::to_string(line);
    CHECK_MESSAGE(m.log().find(where) != std::string::npos, "expected " << where << " in:\n" << m.log());
    CHECK(m.log().find("AGENTD_HEARTBEAT_SECONDS") != std::string::npos);
    check_invariants(r, true);
  }

  TEST_CASE("401 from the hub (wrong token): a clear error, agentd keeps retrying, nothing is written") {
    RolloutOptions o;
    o.members = 2;
    Rollout r(o);
    Member& m = r.member(0);
    m.write_token("not-the-token");
    m.start();
    bool reported = poll_until(deadline_in(15s), [&] {
      std::string log = m.log();
      return log.find("401") != std::string::npos || log.find("unauthorized") != std::string::npos;
    });
    CHECK_MESSAGE(reported, m.log());
    // Still running a while later, still retrying, and the hub has nothing from it.
    std::size_t size_before = m.log().size();
    bool died = poll_until(deadline_in(3s), [&] { return !m.running(); });
    CHECK_MESSAGE(!died, m.log());
    CHECK(m.log().size() > size_before);  // it tried again
    CHECK(grep_lines(r.hub().write_log_path(), "\"actor\":\"o/n1\"").empty());
    CHECK_FALSE(r.group().entries.contains("n1"));
    CHECK(m.agent_calls("install") == 0);
    check_invariants(r, true);
  }
}

TEST_SUITE("integration") {
  TEST_CASE(
      "plain http:// to another machine: refused, or with the insecure setting warned by --check-config "
      "and at start; a state directory others can write: exit 5") {
    TempDir dir;
    write_file(dir.file("token"), "tok\n", 0600);
    write_file(dir.file("horizon"),
               "HZN_EXCHANGE_URL=http://hub.example.com/v1\nHZN_ORG_ID=o\nHZN_DEVICE_ID=n1\n");
    write_file(dir.file("agentd.conf"), "AGENTD_TOKEN_FILE=" + dir.file("token") + "\n");
    const std::vector<std::string> base{AGENTD_BIN, "--config", dir.file("agentd.conf"), "--horizon-file",
                                        dir.file("horizon")};
    auto with = [&](std::vector<std::string> extra) {
      std::vector<std::string> argv = base;
      argv.insert(argv.end(), extra.begin(), extra.end());
      return argv;
    };
    auto refused = run_command(with({"--check-config"}), {}, dir.file("refused.out"));
    CHECK(refused.status.code == 3);
    CHECK_MESSAGE(refused.output.find("is plain http:// to another machine") != std::string::npos,
                  refused.output);

    write_file(dir.file("agentd.conf"),
               "AGENTD_TOKEN_FILE=" + dir.file("token") + "\nAGENTD_ALLOW_INSECURE_HTTP=true\n");
    auto warned = run_command(with({"--check-config"}), {}, dir.file("warned.out"));
    CHECK(warned.status.code == 0);
    CHECK_MESSAGE(
        warned.output.find("agentd: warning: HZN_EXCHANGE_URL=http://hub.example.com/v1: plain http://") !=
            std::string::npos,
        warned.output);

    // The same warning at start, before the state directory is refused.
    const std::string state = dir.file("state");
    std::filesystem::create_directory(state);
    std::filesystem::permissions(state, std::filesystem::perms::all);
    auto open_dir = run_command(with({"--state-dir", state}), {}, dir.file("open-dir.out"));
    CHECK(open_dir.status.code == 5);
    CHECK_MESSAGE(open_dir.output.find("has mode 0777") != std::string::npos, open_dir.output);
    CHECK_MESSAGE(open_dir.output.find("event=insecure-setting") != std::string::npos, open_dir.output);
  }
}
