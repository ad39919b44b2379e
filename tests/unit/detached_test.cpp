// DetachedRunner in the detached-session mode (systemd is not PID 1 in CI):
// output and exit status through the run directory, resume instead of repeat.
#include "upgrade/detached.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <thread>

#include "block_signal.h"
#include "harness/harness.h"
#include "support/fake_sleeper.h"
#include "support/temp_dir.h"

using namespace agentd;
using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = Steady::now() + limit;
  while (Steady::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

DetachedOptions quick(std::function<bool()> cancelled = nullptr) {
  DetachedOptions o;
  o.use_systemd = false;
  o.poll = 20ms;
  o.cancelled = std::move(cancelled);
  return o;
}

DetachedSpec spec(const std::string& dir, std::vector<std::string> argv,
                  std::chrono::milliseconds timeout = 20s) {
  DetachedSpec s;
  s.id = "install-2.0.0";
  s.argv = std::move(argv);
  s.dir = dir;
  s.timeout = timeout;
  return s;
}

// The wrapper's pid from `started` ("pid N"); 0 when absent.
pid_t started_pid(const std::string& dir) {
  std::string s = harness::read_file(dir + "/started");
  if (!s.starts_with("pid ")) return 0;
  return static_cast<pid_t>(std::stol(s.substr(4)));
}

// A command that waits for `go` to appear, then appends a line to `count`.
std::vector<std::string> gated(const testing::TempDir& t) {
  return {
      "sh", "-c",
      "while [ ! -e '" + t.file("GO") + "' ]; do sleep 0.05; done; echo done >>'" + t.file("COUNT") + "'"};
}

}  // namespace

TEST_SUITE("detached") {
  TEST_CASE("runs a command and records its output and exit status in the run directory") {
    testing::TempDir t;
    std::string dir = t.file("run");
    auto r = make_detached_runner(quick())->run(spec(dir, {"sh", "-c", "echo out; echo err >&2"}));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->exit_code == 0);
    CHECK_FALSE(r->timed_out);
    CHECK_FALSE(r->resumed);
    CHECK(r->output_tail == "out\nerr\n");
    CHECK(r->output_path.ends_with("/run/output.log"));
    CHECK(harness::read_file(r->output_path) == "out\nerr\n");
    CHECK(harness::read_file(dir + "/exit-status") == "0\n");
    CHECK(started_pid(dir) > 1);
    struct stat st {};
    REQUIRE(::stat(dir.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
  }

  TEST_CASE("argv elements with spaces and quotes arrive intact") {
    testing::TempDir t;
    auto r = make_detached_runner(quick())->run(
        spec(t.file("run"), {"printf", "%s|", "a b", "it's", "\"q\"", "$HOME", "`id`", "x\\y", " "}));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->exit_code == 0);
    CHECK(r->output_tail == "a b|it's|\"q\"|$HOME|`id`|x\\y| |");
  }

  TEST_CASE("the environment of the spec reaches the command") {
    testing::TempDir t;
    auto s = spec(t.file("run"), {"sh", "-c", "printf '%s/%s' \"$AGENTD_TARGET_VERSION\" \"$AGENTD_X\""});
    s.env = {{"AGENTD_TARGET_VERSION", "2.0.0"}, {"AGENTD_X", "a 'b' \"c\""}};
    auto r = make_detached_runner(quick())->run(s);
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->output_tail == "2.0.0/a 'b' \"c\"");
  }

  TEST_CASE("a non-zero exit is a result, not an error") {
    testing::TempDir t;
    auto r =
        make_detached_runner(quick())->run(spec(t.file("run"), {"sh", "-c", "echo failing >&2; exit 3"}));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->exit_code == 3);
    CHECK_FALSE(r->timed_out);
    CHECK(r->output_tail == "failing\n");

    auto missing = make_detached_runner(quick())->run(spec(t.file("run2"), {"agentd-no-such-program-xyz"}));
    REQUIRE_MESSAGE(missing.has_value(), missing.error().describe());
    CHECK(missing->exit_code == 127);
    CHECK(missing->output_tail.find("agentd-no-such-program-xyz") != std::string::npos);
  }

  TEST_CASE("the timeout kills the command: exit 124, timed_out") {
    testing::TempDir t;
    auto begin = Steady::now();
    auto r = make_detached_runner(quick())->run(spec(t.file("run"), {"sleep", "30"}, 1s));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->exit_code == 124);
    CHECK(r->timed_out);
    CHECK(Steady::now() - begin < 10s);
  }

  TEST_CASE("the command survives cancellation and a new runner resumes it instead of running it twice") {
    testing::TempDir t;
    std::string dir = t.file("run");
    auto s = spec(dir, gated(t));

    auto first = make_detached_runner(quick([&] { return exists(dir + "/started"); }))->run(s);
    REQUIRE_FALSE(first.has_value());
    CHECK(first.error().code == Errc::cancelled);
    CHECK_FALSE(exists(dir + "/exit-status"));
    pid_t wrapper = started_pid(dir);
    REQUIRE(wrapper > 1);
    CHECK(::kill(wrapper, 0) == 0);

    t.write("GO", "");
    auto second = make_detached_runner(quick())->run(s);
    REQUIRE_MESSAGE(second.has_value(), second.error().describe());
    CHECK(second->resumed);
    CHECK(second->exit_code == 0);
    CHECK(harness::read_file(t.file("COUNT")) == "done\n");

    // Finished: the result is read back, the command is not started again.
    auto third = make_detached_runner(quick())->run(s);
    REQUIRE_MESSAGE(third.has_value(), third.error().describe());
    CHECK(third->resumed);
    CHECK(third->exit_code == 0);
    CHECK(harness::read_file(t.file("COUNT")) == "done\n");
  }

  TEST_CASE(
      "the command runs in its own session with default signal mask, outside the caller's process group") {
    testing::TempDir t;
    std::string dir = t.file("run");
    testing::BlockSignal block(SIGTERM);
    std::vector<std::string> argv = gated(t);
    argv[2] = "grep '^SigBlk' /proc/self/status; " + argv[2];
    auto s = spec(dir, argv);

    auto first = make_detached_runner(quick([&] { return exists(dir + "/started"); }))->run(s);
    REQUIRE_FALSE(first.has_value());
    CHECK(first.error().code == Errc::cancelled);
    pid_t wrapper = started_pid(dir);
    REQUIRE(wrapper > 1);
    pid_t sid = ::getsid(wrapper);
    CHECK(sid > 0);
    CHECK(sid != ::getsid(0));
    CHECK(::getpgid(wrapper) != ::getpgrp());

    t.write("GO", "");
    auto second = make_detached_runner(quick())->run(s);
    REQUIRE_MESSAGE(second.has_value(), second.error().describe());
    CHECK(second->exit_code == 0);
    CHECK(second->output_tail == "SigBlk:\t0000000000000000\n");
  }

  TEST_CASE("a run that started, died and left no exit status is started again") {
    testing::TempDir t;
    std::string dir = t.file("run");
    // A pid that surely is dead: a child of ours, exited and reaped.
    pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) _exit(0);
    int status = 0;
    REQUIRE(::waitpid(dead, &status, 0) == dead);
    t.write("run/started", "pid " + std::to_string(dead) + "\n");
    t.write("run/output.log", "old output\n");

    auto r = make_detached_runner(quick())->run(
        spec(dir, {"sh", "-c", "echo new >>'" + t.file("COUNT") + "'; echo new"}));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK_FALSE(r->resumed);
    CHECK(r->exit_code == 0);
    CHECK(r->output_tail == "new\n");
    CHECK(harness::read_file(dir + "/output.log.1") == "old output\n");
    CHECK(harness::read_file(t.file("COUNT")) == "new\n");
    CHECK(started_pid(dir) != dead);

    // After a reboot the recorded pid may belong to another live process (here:
    // this one); it is not the wrapper of this run directory, so it is started again.
    testing::TempDir t1;
    t1.write("run/started", "pid " + std::to_string(::getpid()) + "\n");
    auto reused = make_detached_runner(quick())->run(spec(t1.file("run"), {"sh", "-c", "echo again"}));
    REQUIRE_MESSAGE(reused.has_value(), reused.error().describe());
    CHECK_FALSE(reused->resumed);
    CHECK(reused->output_tail == "again\n");

    // A torn `started` (a crash before it reached the disk) counts as not running, too.
    testing::TempDir t2;
    t2.write("run/started", "");
    auto again = make_detached_runner(quick())->run(spec(t2.file("run"), {"sh", "-c", "echo fresh"}));
    REQUIRE_MESSAGE(again.has_value(), again.error().describe());
    CHECK_FALSE(again->resumed);
    CHECK(again->output_tail == "fresh\n");
  }

  TEST_CASE("a recorded exit status is the result: the command is not run") {
    testing::TempDir t;
    t.write("run/exit-status", "5\n");
    t.write("run/output.log", "from before\n");
    auto r = make_detached_runner(quick())->run(
        spec(t.file("run"), {"sh", "-c", "touch '" + t.file("RAN") + "'"}));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->resumed);
    CHECK(r->exit_code == 5);
    CHECK(r->output_tail == "from before\n");
    CHECK_FALSE(exists(t.file("RAN")));

    t.write("run/exit-status", "garbage\n");
    auto bad = make_detached_runner(quick())->run(spec(t.file("run"), {"true"}));
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::process);
    CHECK_FALSE(exists(t.file("RAN")));
  }

  TEST_CASE("a wrapper killed without recording an exit status is an Errc::process error") {
    testing::TempDir t;
    std::string dir = t.file("run");
    bool killed = false;
    auto kill_wrapper = [&] {
      pid_t pid = started_pid(dir);
      if (!killed && pid > 1) killed = ::kill(pid, SIGKILL) == 0;
      return false;
    };
    auto r = make_detached_runner(quick(kill_wrapper))->run(spec(dir, gated(t)));
    REQUIRE_FALSE(r.has_value());
    CHECK(killed);
    CHECK(r.error().code == Errc::process);
    CHECK(r.error().message.find("killed before it finished (no exit status recorded") != std::string::npos);
    // Let the orphaned command finish before the directory goes away.
    t.write("GO", "");
    CHECK(wait_until([&] { return harness::read_file(t.file("COUNT")) == "done\n"; }));
  }

  TEST_CASE("the output tail is the last ~2 KiB, starting at a line") {
    testing::TempDir t;
    auto r = make_detached_runner(quick())->run(spec(
        t.file("run"), {"sh", "-c", "i=0; while [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done"}));
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->output_tail.size() <= 2048);
    CHECK(r->output_tail.size() > 1900);
    CHECK(r->output_tail.starts_with("line "));
    CHECK(r->output_tail.ends_with("line 499\n"));
    CHECK(harness::read_file(r->output_path).size() > 4000);
  }

  TEST_CASE("a stop request through the sleeper ends the wait with Errc::cancelled") {
    testing::TempDir t;
    testing::FakeSleeper sleeper;
    sleeper.stop = true;
    auto o = quick();
    o.sleeper = &sleeper;
    auto r = make_detached_runner(o)->run(spec(t.file("run"), gated(t)));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::cancelled);
    CHECK(sleeper.waits.size() == 1);
    t.write("GO", "");
    CHECK(wait_until([&] { return exists(t.file("run/exit-status")); }));
  }

  TEST_CASE("invalid specs are Errc::config errors and start nothing") {
    testing::TempDir t;
    auto runner = make_detached_runner(quick());
    for (const std::string& id :
         std::vector<std::string>{"", "a/b", "has space", std::string(65, 'x'), "x;y"}) {
      auto s = spec(t.file("run"), {"true"});
      s.id = id;
      auto r = runner->run(s);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().code == Errc::config);
    }
    auto empty = runner->run(spec(t.file("run"), {}));
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().code == Errc::config);
    CHECK_FALSE(exists(t.file("run")));

    auto no_parent = runner->run(spec(t.file("missing/run"), {"true"}));
    REQUIRE_FALSE(no_parent.has_value());
    CHECK(no_parent.error().code == Errc::io);
  }
}
