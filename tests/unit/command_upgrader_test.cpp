#include "upgrade/command_upgrader.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.h"

using namespace agentd;
using namespace std::chrono_literals;
using agentd::testing::TempDir;

namespace {

// Records each spec and answers from a script, for what a real child cannot show.
class FakeRunner final : public ProcessRunner {
 public:
  std::vector<ProcessSpec> specs;
  Result<ProcessResult> answer = ProcessResult{0, 0, false, "1.0.0\n"};
  Result<ProcessResult> run(const ProcessSpec& spec) override {
    specs.push_back(spec);
    return answer;
  }
};

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

const Target kTarget{"2.0.0", "1.0.0", "myorg/agent-2.0.0"};

// Each command appends "step|target|previous|state_dir" to a log in the state dir.
const char* kRecord =
    "printf '%s|%s|%s|%s\\n' \"$AGENTD_STEP\" \"$AGENTD_TARGET_VERSION\" \"$AGENTD_PREVIOUS_VERSION\" "
    "\"$AGENTD_STATE_DIR\" >> \"$AGENTD_STATE_DIR/steps.log\"";

UpgradeCommands recording_commands(const std::string& state_dir) {
  UpgradeCommands c;
  c.version = std::string(kRecord) + "; echo 1.0.0";
  c.prepare = kRecord;
  c.install = kRecord;
  c.restart = kRecord;
  c.health = kRecord;
  c.rollback = kRecord;
  c.timeout = 20s;
  c.state_dir = state_dir;
  return c;
}

}  // namespace

TEST_SUITE("command_upgrader") {
  TEST_CASE("every step runs its command with the step's environment") {
    TempDir dir;
    auto runner = make_process_runner([] { return false; });
    auto up = make_command_upgrader(recording_commands(dir.path()), *runner);
    std::vector<std::string> progress;
    REQUIRE(up->prepare(kTarget, [&](const JobProgress& p) { progress.push_back(p.text); }).has_value());
    REQUIRE(up->install(kTarget).has_value());
    REQUIRE(up->restart(kTarget).has_value());
    REQUIRE(up->check_health(kTarget).has_value());
    REQUIRE(up->rollback(kTarget).has_value());
    auto v = up->running_version();
    REQUIRE(v.has_value());
    CHECK(*v == "1.0.0");
    const std::string& d = dir.path();
    CHECK(read_all(dir.file("steps.log")) == "prepare|2.0.0|1.0.0|" + d + "\n" + "install|2.0.0|1.0.0|" + d +
                                                 "\n" + "restart|2.0.0|1.0.0|" + d + "\n" +
                                                 "health|2.0.0|1.0.0|" + d + "\n" + "rollback|2.0.0|1.0.0|" +
                                                 d + "\n" + "version|||" + d + "\n");
    CHECK(progress.size() == 1);
  }

  TEST_CASE("commands run by /bin/sh -c with the configured timeout; the context replaces inherited values") {
    FakeRunner fake;
    UpgradeCommands c;
    c.version = "agent --version";
    c.install = "install-agent \"$AGENTD_TARGET_VERSION\"";
    c.timeout = 1234ms;
    c.state_dir = "/var/lib/agentd";
    auto up = make_command_upgrader(c, fake);
    REQUIRE(up->install(kTarget).has_value());
    REQUIRE(up->running_version().has_value());
    REQUIRE(fake.specs.size() == 2);
    CHECK(fake.specs[0].argv ==
          std::vector<std::string>{"/bin/sh", "-c", "install-agent \"$AGENTD_TARGET_VERSION\""});
    CHECK(fake.specs[0].timeout == 1234ms);
    using Env = std::vector<std::pair<std::string, std::string>>;
    CHECK(fake.specs[0].env == Env{{"AGENTD_STEP", "install"},
                                   {"AGENTD_TARGET_VERSION", "2.0.0"},
                                   {"AGENTD_PREVIOUS_VERSION", "1.0.0"},
                                   {"AGENTD_STATE_DIR", "/var/lib/agentd"}});
    // No target for the version step: set empty, so a stale value cannot leak in.
    CHECK(fake.specs[1].env == Env{{"AGENTD_STEP", "version"},
                                   {"AGENTD_TARGET_VERSION", ""},
                                   {"AGENTD_PREVIOUS_VERSION", ""},
                                   {"AGENTD_STATE_DIR", "/var/lib/agentd"}});
  }

  TEST_CASE("an empty optional command is a no-op; version and install are required") {
    FakeRunner fake;
    UpgradeCommands c;  // all empty
    auto up = make_command_upgrader(c, fake);
    bool progressed = false;
    CHECK(up->prepare(kTarget, [&](const JobProgress&) { progressed = true; }).has_value());
    CHECK(up->restart(kTarget).has_value());
    CHECK(up->check_health(kTarget).has_value());
    CHECK_FALSE(progressed);

    auto rb = up->rollback(kTarget);  // nothing restores the previous version: not "rolledback"
    REQUIRE_FALSE(rb.has_value());
    CHECK(rb.error().code == Errc::unsupported);
    CHECK(rb.error().message == "rollback: no AGENTD_ROLLBACK_COMMAND configured; 1.0.0 is not restored");

    auto in = up->install(kTarget);
    REQUIRE_FALSE(in.has_value());
    CHECK(in.error().code == Errc::config);
    auto v = up->running_version();
    REQUIRE_FALSE(v.has_value());
    CHECK(v.error().code == Errc::config);
    CHECK(fake.specs.empty());
  }

  TEST_CASE("a failing command's error names the step, the exit code and the output tail on one line") {
    TempDir dir;
    auto runner = make_process_runner([] { return false; });
    UpgradeCommands c = recording_commands(dir.path());
    c.install = "echo 'Reading lists...'; echo '  E: broken package\t(horizon)' >&2; exit 3";
    c.prepare = "head -c 5000 /dev/zero | tr '\\000' x; echo; echo 'checksum mismatch for agent.deb'; exit 1";
    c.restart = "kill -KILL $$";
    auto up = make_command_upgrader(c, *runner);

    auto in = up->install(kTarget);
    REQUIRE_FALSE(in.has_value());
    CHECK(in.error().code == Errc::process);
    CHECK(in.error().message == "install: exit code 3: Reading lists... E: broken package (horizon)");

    auto pr = up->prepare(kTarget, {});
    REQUIRE_FALSE(pr.has_value());
    const std::string& m = pr.error().message;
    CHECK(m.starts_with("prepare: exit code 1: ...xxx"));
    CHECK(m.ends_with("xxx checksum mismatch for agent.deb"));
    CHECK(m.size() <= std::string("prepare: exit code 1: ...").size() + 300);
    CHECK(m.find('\n') == std::string::npos);

    auto rs = up->restart(kTarget);
    REQUIRE_FALSE(rs.has_value());
    CHECK(rs.error().code == Errc::process);
    CHECK(rs.error().message == "restart: killed by signal 9 (SIGKILL), no output");
  }

  TEST_CASE("a command over its timeout fails with the timeout in the message") {
    TempDir dir;
    auto runner = make_process_runner([] { return false; });
    UpgradeCommands c = recording_commands(dir.path());
    c.health = "echo 'waiting for the agent'; sleep 30";
    c.timeout = 250ms;
    auto up = make_command_upgrader(c, *runner);
    auto h = up->check_health(kTarget);
    REQUIRE_FALSE(h.has_value());
    CHECK(h.error().code == Errc::process);
    CHECK(h.error().message == "health: timed out after 0.25 s: waiting for the agent");
  }

  TEST_CASE("runner errors keep their code and gain the step name") {
    FakeRunner fake;
    fake.answer = fail(Errc::cancelled, "/bin/sh: stopped by a stop request");
    UpgradeCommands c;
    c.install = "true";
    auto up = make_command_upgrader(c, fake);
    auto in = up->install(kTarget);
    REQUIRE_FALSE(in.has_value());
    CHECK(in.error().code == Errc::cancelled);
    CHECK(in.error().message == "install: /bin/sh: stopped by a stop request");
  }

  TEST_CASE("running_version is the trimmed first line and must look like a version") {
    FakeRunner fake;
    UpgradeCommands c;
    c.version = "agent --version";
    auto up = make_command_upgrader(c, fake);

    fake.answer = ProcessResult{0, 0, false, "  2.31.0-1234 \r\nwarning: something\n"};
    CHECK(up->running_version() == "2.31.0-1234");

    fake.answer = ProcessResult{0, 0, false, ""};
    CHECK(up->running_version().error().message == "version: the command printed no version");
    fake.answer = ProcessResult{0, 0, false, "\n2.0.0\n"};
    CHECK(up->running_version().error().message == "version: the command printed no version");

    fake.answer = ProcessResult{0, 0, false, "horizon 2.31.0\n"};
    auto spaced = up->running_version();
    REQUIRE_FALSE(spaced.has_value());
    CHECK(spaced.error().code == Errc::process);
    CHECK(spaced.error().message ==
          "version: 'horizon 2.31.0' is not a version (whitespace or control characters)");

    fake.answer = ProcessResult{0, 0, false, "2.31\x01\n"};
    CHECK_FALSE(up->running_version().has_value());

    fake.answer = ProcessResult{127, 0, false, "sh: 1: agent: not found\n"};
    auto missing = up->running_version();
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == Errc::process);
    CHECK(missing.error().message == "version: exit code 127: sh: 1: agent: not found");
  }
}
