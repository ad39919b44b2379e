// The daemon's life under a service manager: READY/STATUS/WATCHDOG/STOPPING over
// NOTIFY_SOCKET, and SIGTERM while holding the lease: out within 2 s with the
// lease state on disk, and a restart that picks it up (protocol.md §4.2, §4.4).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"
#include "upgrade/state_file.h"

using namespace agentd;
using namespace agentd::it;

namespace {

// A datagram socket standing in for systemd's NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  // Everything received so far, one datagram per line.
  const std::string& received() {
    char buf[4096];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got_.append(buf, static_cast<std::size_t>(n));
      got_ += '\n';
    }
    return got_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string got_;
};

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("sd_notify: READY, STATUS, WATCHDOG pings, STOPPING") {
    RolloutOptions o;
    o.members = 1;
    Rollout r(o);
    Member& m = r.member(0);
    NotifySocket sock(r.dir().file("notify.sock"));
    Process p({AGENTD_BIN, "--config", m.config_path(), "--horizon-file", m.horizon_path(), "--state-dir",
               m.state_dir()},
              {{"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", "400000"}}, m.log_path());
    // The watchdog asks for a ping every 200 ms; several arrive while it works.
    bool ok = poll_until(deadline_in(30s), [&] {
      const std::string& got = sock.received();
      std::size_t pings = 0;
      for (auto pos = got.find("WATCHDOG=1"); pos != std::string::npos; pos = got.find("WATCHDOG=1", pos + 1))
        ++pings;
      return got.find("READY=1") != std::string::npos && got.find("STATUS=") != std::string::npos &&
             pings >= 3;
    });
    CHECK_MESSAGE(ok, sock.received() << "\n" << m.log());
    CHECK(sock.received().find("READY=1") < sock.received().find("WATCHDOG=1"));

    // A hub that answers after 6 s, past agentd's 2 s request timeout: each read
    // blocks for its retries, and the pings still come about once a second
    // (curl's progress callback) instead of stopping for the whole read.
    Faults slow;
    slow.latency_ms = 6000;
    r.hub().set_faults(slow);
    auto pings = [&] {
      const std::string& got = sock.received();
      std::size_t n = 0;
      for (auto pos = got.find("WATCHDOG=1"); pos != std::string::npos; pos = got.find("WATCHDOG=1", pos + 1))
        ++n;
      return n;
    };
    REQUIRE(poll_until(deadline_in(10s), [&] { return m.log().find("level=") != std::string::npos; }));
    std::size_t before = pings();
    auto t0 = std::chrono::steady_clock::now();
    bool kept_pinging = poll_until(deadline_in(5s), [&] { return pings() >= before + 4; });
    CHECK_MESSAGE(kept_pinging, "pings in " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                                   std::chrono::steady_clock::now() - t0)
                                                   .count()
                                            << " ms: " << pings() - before);
    r.hub().set_faults({});
    p.signal(SIGTERM);
    auto st = p.wait(deadline_in(5s));
    REQUIRE(st);
    CHECK(st->code == 0);
    CHECK(sock.received().find("STOPPING=1") != std::string::npos);
  }

  TEST_CASE("SIGTERM while holding the lease: out within 2 s, lease state kept, resumed after restart") {
    RolloutOptions o;
    o.members = 3;
    Rollout r(o);
    for (auto& m : r.members()) m->install_delay(30);  // long enough to be caught mid-install
    r.start_all();
    std::string holder = wait_for_holder(r);
    REQUIRE_MESSAGE(!holder.empty(), r.diagnostics());
    Member& h = r.member(holder);
    REQUIRE(poll_until(deadline_in(20s), [&] { return h.agent_calls("install") > 0; }));

    auto t0 = std::chrono::steady_clock::now();
    h.process()->signal(SIGTERM);
    auto st = h.wait_exit(deadline_in(5s));
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE(st);
    CHECK(st->code == 0);
    CHECK_MESSAGE(took < 2s, "stopping took "
                                 << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                                 << " ms");
    // What was begun on this node is on disk: the lease and the interrupted install.
    auto saved = StateFile(h.state_dir() + "/state.json").load();
    REQUIRE(saved);
    REQUIRE(saved->has_value());
    CHECK((*saved)->local.state == State::upgrading);
    CHECK((*saved)->local.progress == Progress::install_begun);
    std::int64_t epoch = (*saved)->local.epoch;
    CHECK(epoch > 0);
    // The hub still shows the lease with that epoch (nobody dropped it).
    GroupDocument doc = r.group();
    const Entry* e = doc.entry(holder);
    REQUIRE(e);
    CHECK(e->state == State::upgrading);
    CHECK(e->epoch == epoch);

    for (auto& m : r.members()) m->install_delay(0);
    h.start();
    require_done(r, "2.0.0");
    // The restarted process renewed its own lease and finished under the same epoch.
    CHECK(h.agent_calls("install") == 2);
    check_invariants(r, true);
  }
}
