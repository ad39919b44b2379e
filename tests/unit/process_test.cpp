#include "agentd/process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "block_signal.h"
#include "support/temp_dir.h"

using namespace agentd;
using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

namespace {

std::unique_ptr<ProcessRunner> runner() {
  return make_process_runner([] { return false; });
}

ProcessSpec sh(const std::string& script, std::chrono::milliseconds timeout = 20s) {
  ProcessSpec s;
  s.argv = {"/bin/sh", "-c", script};
  s.timeout = timeout;
  return s;
}

// Dead means gone, or a zombie waiting for an init that may not reap it.
bool process_dead(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  if (!f) return true;
  std::string line;
  std::getline(f, line);
  auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || line.size() < close_paren + 3 || line[close_paren + 2] == 'Z';
}

bool wait_dead(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = Steady::now() + limit;
  while (Steady::now() < deadline) {
    if (process_dead(pid)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return process_dead(pid);
}

bool no_children_left() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD;
}

class IgnoreSignal {
 public:
  explicit IgnoreSignal(int sig) : sig_(sig) {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigaction(sig, &ign, &old_);
  }
  ~IgnoreSignal() { sigaction(sig_, &old_, nullptr); }

 private:
  int sig_;
  struct sigaction old_ {};
};

}  // namespace

TEST_SUITE("process") {
  TEST_CASE("exit code and output of a successful and a failing command") {
    auto r = runner()->run(sh("echo out; echo err >&2; exit 0"));
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 0);
    CHECK(r->signal == 0);
    CHECK_FALSE(r->timed_out);
    CHECK(r->output == "out\nerr\n");

    auto f = runner()->run(sh("echo bad; exit 7"));
    REQUIRE(f.has_value());
    CHECK(f->exit_code == 7);
    CHECK(f->output == "bad\n");
    CHECK(no_children_left());
  }

  TEST_CASE("a child killed by a signal reports the signal and exit_code -1") {
    auto r = runner()->run(sh("kill -KILL $$"));
    REQUIRE(r.has_value());
    CHECK(r->exit_code == -1);
    CHECK(r->signal == SIGKILL);
    CHECK_FALSE(r->timed_out);
  }

  TEST_CASE("argv[0] without a slash is looked up in PATH") {
    ProcessSpec s;
    s.argv = {"sh", "-c", "exit 3"};
    auto r = runner()->run(s);
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 3);
  }

  TEST_CASE("a program that cannot be found or executed is an Errc::process error") {
    ProcessSpec s;
    s.argv = {"agentd-no-such-program-xyz"};
    auto r = runner()->run(s);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::process);
    CHECK(r.error().message.find("agentd-no-such-program-xyz") != std::string::npos);

    testing::TempDir dir;
    std::string script = dir.write("not-executable", "#!/bin/sh\nexit 0\n");
    s.argv = {script};
    auto e = runner()->run(s);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().code == Errc::process);
    CHECK(e.error().message.find("cannot execute") != std::string::npos);

    s.argv = {};
    CHECK(runner()->run(s).error().code == Errc::process);
    CHECK(no_children_left());
  }

  TEST_CASE("env entries are added and replace the daemon's own") {
    ProcessSpec s = sh("printf '%s|%s' \"$AGENTD_TEST_VALUE\" \"$HOME\"");
    s.env = {{"AGENTD_TEST_VALUE", "a b=c"}, {"HOME", "/nonexistent-home"}};
    auto r = runner()->run(s);
    REQUIRE(r.has_value());
    CHECK(r->output == "a b=c|/nonexistent-home");
  }

  TEST_CASE("output beyond max_output keeps the tail") {
    ProcessSpec s = sh("head -c 200000 /dev/zero | tr '\\000' a; printf END");
    s.max_output = 1000;
    auto r = runner()->run(s);
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 0);
    CHECK(r->output.size() == 1000);
    CHECK(r->output.ends_with("aaaEND"));
  }

  TEST_CASE("a timeout kills the whole process group, including a grandchild that ignores SIGTERM") {
    auto start = Steady::now();
    auto r = runner()->run(sh("(trap '' TERM; exec sleep 30) & echo $!; wait", 300ms));
    auto elapsed = Steady::now() - start;
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    CHECK(r->signal == SIGTERM);
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 5s);
    pid_t grandchild = static_cast<pid_t>(std::stol(r->output));
    REQUIRE(grandchild > 0);
    CHECK(wait_dead(grandchild, 3s));
    CHECK(no_children_left());
  }

  TEST_CASE("a child that ignores SIGTERM gets SIGKILL after the grace period") {
    auto start = Steady::now();
    auto r = runner()->run(sh("trap '' TERM; while :; do sleep 0.05; done", 200ms));
    REQUIRE(r.has_value());
    CHECK(r->timed_out);
    CHECK(r->signal == SIGKILL);
    CHECK(Steady::now() - start >= 1200ms);
    CHECK(no_children_left());
  }

  TEST_CASE("a background grandchild holding the output pipe does not hold up the result") {
    auto start = Steady::now();
    auto r = runner()->run(sh("sleep 30 & echo $!; echo done"));
    REQUIRE(r.has_value());
    CHECK(r->exit_code == 0);
    CHECK(Steady::now() - start < 10s);
    std::istringstream lines(r->output);
    pid_t bg = 0;
    std::string last;
    lines >> bg >> last;
    CHECK(last == "done");
    REQUIRE(bg > 0);
    ::kill(bg, SIGKILL);
  }

  TEST_CASE("a stop request ends the child and returns Errc::cancelled") {
    // False before the start and for the first poll, then a stop request.
    int polls = 0;
    auto run = make_process_runner([&] { return ++polls > 2; });
    auto start = Steady::now();
    auto r = run->run(sh("sleep 30"));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::cancelled);
    CHECK(Steady::now() - start < 5s);
    CHECK(no_children_left());

    // Already stopping: the child is not started at all.
    auto again = run->run(sh("exit 0"));
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().code == Errc::cancelled);
  }

  TEST_CASE("the child sees SIGTERM unblocked and default even when the daemon blocked/ignored it") {
    testing::BlockSignal block(SIGTERM);
    IgnoreSignal ignore(SIGUSR1);
    auto status =
        runner()->run(ProcessSpec{{"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}, {}, 10s, 4096});
    REQUIRE(status.has_value());
    CHECK(status->output == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");

    auto r = runner()->run(sh("kill -TERM $$; sleep 5; exit 0"));
    REQUIRE(r.has_value());
    CHECK(r->signal == SIGTERM);
  }

  TEST_CASE("the child inherits no descriptor beyond stdin, stdout and stderr") {
    int leaked = ::fcntl(STDERR_FILENO, F_DUPFD, 57);  // deliberately without FD_CLOEXEC
    REQUIRE(leaked >= 57);
    auto r = runner()->run(sh("cd /proc/self/fd && echo *"));
    ::close(leaked);
    REQUIRE(r.has_value());
    // The shell's own listing fd may appear; none of ours may.
    std::istringstream fds(r->output);
    std::string fd;
    while (fds >> fd) CHECK(std::stoi(fd) != leaked);
    CHECK(r->output.starts_with("0 1 2"));
  }
}
