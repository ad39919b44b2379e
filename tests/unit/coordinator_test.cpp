// protocol.md §4, rule by rule, with a fake clock.
#include "agentd/coordinator.h"

#include <doctest/doctest.h>

using namespace agentd;
using namespace std::chrono_literals;

namespace {

const Timing kTiming{Mono{60'000}, Mono{10'000}, Mono{300'000}, Mono{2'000}, Mono{10'000}};

Entry entry(State s, const std::string& last_seen, std::int64_t epoch = 0) {
  Entry e;
  e.state = s;
  e.version = "1.0.0";
  e.target_version = s == State::idle ? "" : "2.0.0";
  e.epoch = epoch;
  e.last_seen = last_seen;
  e.write_id = "w-" + last_seen;
  if (holds_lease(s)) {
    e.lease_duration_seconds = 60;
    e.renew_time = last_seen;
    e.acquire_time = last_seen;
  }
  if (s == State::waiting) e.waiting_since = "2026-11-25T20:00:00.000000Z";
  return e;
}

GroupDocument group(std::vector<std::string> members) {
  GroupDocument d;
  d.name = "line1";
  d.members = std::move(members);
  d.revision = 10;
  return d;
}

// A member that is waiting for 2.0.0 and whose own entry is in the document.
struct Member {
  Coordinator c{"n1", kTiming};
  Local local;
  FakeClock clock;
  Member() {
    local.state = State::waiting;
    local.version = "1.0.0";
    local.target = "2.0.0";
    local.prepared = true;
    local.waiting_since = "2026-11-25T20:00:00.000000Z";
    local.last_write_id = "mine";
    local.last_write = clock.mono();
  }
  Entry own() const {
    Entry e = entry(State::waiting, "t0");
    e.write_id = "mine";
    e.waiting_since = local.waiting_since;
    return e;
  }
  // Decides as right after our own heartbeat, so that a due heartbeat does not
  // hide the decision under test (heartbeats have their own test).
  Action decide(const GroupDocument& d) {
    local.last_write = clock.mono();
    return c.decide(d, local, clock.mono(), clock.wall(), "new-id");
  }
  Action decide_as_is(const GroupDocument& d) {
    return c.decide(d, local, clock.mono(), clock.wall(), "new-id");
  }
  // Peers refresh lastSeen every heartbeat; we observe each time.
  void run_for(GroupDocument& d, Mono total, const std::vector<std::string>& alive) {
    for (Mono t{0}; t < total; t += kTiming.heartbeat) {
      clock.advance(kTiming.heartbeat);
      for (const auto& n : alive) {
        auto& e = d.entries[n];
        e.last_seen = "seen-" + std::to_string(clock.mono().count());
        if (carries_lease(e)) e.renew_time = e.last_seen;
      }
      c.observe(d, clock.mono());
    }
  }
};

}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("acquires when the lease is free, everyone is healthy, and it heads the queue") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::idle, "a");
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 30s, {"n2", "n3"});
    Action a = m.decide(d);
    REQUIRE(a.kind == ActionKind::write);
    CHECK(a.what == WriteKind::acquire);
    CHECK(a.entry.state == State::upgrading);
    CHECK(a.entry.epoch == 11);  // max(1 + 0, revision + 1)
    CHECK(a.entry.lease_duration_seconds == 60);
    CHECK(a.entry.write_id == "new-id");
    CHECK_FALSE(a.entry.renew_time.empty());
  }

  TEST_CASE("waits while another member's lease is live and acquires after it expires by local observation") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.settings.min_available = 1;
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::upgrading, "r1", 5);
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 30s, {"n3"});  // n2 stops renewing at once
    Action a = m.decide(d);
    CHECK(a.kind != ActionKind::write);
    CHECK(a.reason.find("waiting for n2") != std::string::npos);
    m.run_for(d, 30s, {"n3"});  // 60 s since n2's renewTime last changed
    a = m.decide(d);
    REQUIRE(a.kind == ActionKind::write);
    CHECK(a.what == WriteKind::acquire);
    CHECK(a.entry.epoch == 11);
  }

  TEST_CASE("§4.3 rule 2 (amended): upgrading without a lease and a fresh lastSeen counts as disrupted") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.settings.min_available = 1;
    d.entries["n1"] = m.own();
    Entry fenced = entry(State::upgrading, "r1", 5);
    fenced.lease_duration_seconds = 0;  // a force-released holder whose install still runs
    fenced.renew_time.clear();
    fenced.acquire_time.clear();
    d.entries["n2"] = fenced;
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 40s, {"n2", "n3"});  // n2 heartbeats: it is still inside its step
    CHECK_FALSE(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    CHECK(m.c.disrupted("n2", d.entries["n2"], m.clock.mono()));
    CHECK_FALSE(m.c.healthy("n2", d.entries["n2"], m.clock.mono()));
    Action a = m.decide(d);
    CHECK(a.kind != ActionKind::write);
    CHECK(a.reason.find("waiting for n2") != std::string::npos);
    // It stops heartbeating (dead): after 3 × heartbeat it no longer takes a place.
    m.run_for(d, 40s, {"n3"});
    CHECK_FALSE(m.c.disrupted("n2", d.entries["n2"], m.clock.mono()));
    a = m.decide(d);
    REQUIRE(a.kind == ActionKind::write);
    CHECK(a.what == WriteKind::acquire);
  }

  TEST_CASE("§6 (amended): a holder released to idle by an admin counts as disrupted until it writes again") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.settings.min_available = 1;
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::waiting, "w2");
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 40s, {"n2", "n3"});
    // n2 took epoch 9 and was released to idle before we read again: we never saw
    // its lease, but an idle entry with the group's highest epoch is unaccounted for.
    Entry released = entry(State::idle, d.entries["n2"].last_seen, 9);
    released.write_id.clear();
    released.message = "force-released by o/admin";
    d.entries["n2"] = released;
    m.c.observe(d, m.clock.mono());
    CHECK(m.c.disrupted("n2", d.entries["n2"], m.clock.mono()));
    CHECK(m.decide(d).kind != ActionKind::write);
    // Its owner writes again (lastSeen changes): accounted for.
    m.clock.advance(1s);
    d.entries["n2"].last_seen = "n2-again";
    m.c.observe(d, m.clock.mono());
    CHECK_FALSE(m.c.disrupted("n2", d.entries["n2"], m.clock.mono()));

    SUBCASE("an entry deleted while holding") {
      d.entries["n2"] = entry(State::upgrading, "r2", 10);
      m.c.observe(d, m.clock.mono());
      d.entries.erase("n2");
      m.c.observe(d, m.clock.mono());
      CHECK(m.c.disrupted_others(d, m.clock.mono()) == 1);
      m.clock.advance(31s);  // 3 × heartbeat
      m.c.observe(d, m.clock.mono());
      CHECK(m.c.disrupted_others(d, m.clock.mono()) == 0);
    }
    SUBCASE("a holder released to idle before we saw its lease, no longer the highest epoch") {
      // agentd-sim seed 843 (maxConcurrent 2): n3 acquired epoch 10 and was written
      // to idle by an admin before we read again; then n2 acquired a higher epoch.
      // n3's epoch changed since we last saw it: it went through an acquisition we
      // never saw end, and may still be installing.
      d.entries["n3"] = entry(State::idle, "b3", 10);
      d.entries["n3"].message = "force-released by o/admin";
      d.entries["n2"] = entry(State::upgrading, "r2", 11);
      m.c.observe(d, m.clock.mono());
      CHECK(m.c.disrupted("n3", d.entries["n3"], m.clock.mono()));
      CHECK(m.c.disrupted_others(d, m.clock.mono()) == 2);
    }
    SUBCASE("a holder we saw released to idle, not the highest epoch") {
      d.entries["n3"] = entry(State::upgrading, "r3", 4);  // below n2's 9
      m.c.observe(d, m.clock.mono());
      Entry idle3 = entry(State::idle, d.entries["n3"].last_seen, 4);
      d.entries["n3"] = idle3;
      m.c.observe(d, m.clock.mono());
      CHECK(m.c.disrupted("n3", d.entries["n3"], m.clock.mono()));
      m.clock.advance(31s);
      CHECK_FALSE(m.c.disrupted("n3", d.entries["n3"], m.clock.mono()));
    }
  }

  TEST_CASE("a renewing holder keeps its lease however long it holds it") {
    Member m;
    auto d = group({"n1", "n2"});
    d.settings.min_available = 0;
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::upgrading, "r1", 5);
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 10min, {"n2"});
    CHECK(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    CHECK(m.decide(d).kind == ActionKind::none);
  }

  TEST_CASE("first observation: a member that just started waits out a whole lease before judging it dead") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.settings.min_available = 1;
    d.entries["n1"] = m.own();
    // The lease was last renewed hours ago by the holder's (or anyone's) clock:
    // timestamps are never compared with ours (protocol.md goal 5).
    d.entries["n2"] = entry(State::upgrading, "2026-11-25T08:00:00.000000Z", 3);
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    CHECK(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    m.run_for(d, 50s, {"n3"});
    CHECK(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    CHECK(m.decide(d).kind == ActionKind::none);
    m.run_for(d, 10s, {"n3"});
    CHECK_FALSE(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    CHECK(m.decide(d).what == WriteKind::acquire);
  }

  TEST_CASE("minAvailable is never below 1 in a group of 2: a dead holder blocks its only peer") {
    Member m;
    auto d = group({"n1", "n2"});
    d.settings.min_available = 0;
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::upgrading, "r", 3);
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 2min, {});
    CHECK_FALSE(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    Action a = m.decide(d);
    CHECK(a.kind == ActionKind::none);
    CHECK(a.reason.find("unhealthy: n2") != std::string::npos);
  }

  TEST_CASE("a holder whose clock is hours ahead is judged only by changes, not by its timestamps") {
    Member m;
    auto d = group({"n1", "n2"});
    d.settings.min_available = 0;
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::upgrading, "2026-11-26T04:00:00.000000Z", 3);  // 8 h in our future
    m.c.observe(d, m.clock.mono());
    m.clock.advance(30s);
    d.entries["n2"].renew_time = "2026-11-26T04:00:30.000000Z";
    m.c.observe(d, m.clock.mono());
    m.clock.advance(50s);  // 80 s since first seen, 50 s since the change
    CHECK(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    m.clock.advance(10s);
    CHECK_FALSE(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
    // A wall-clock jump on our side changes nothing either.
    m.clock.set_wall(Wall{} + std::chrono::hours(1));
    CHECK_FALSE(m.c.lease_live("n2", d.entries["n2"], m.clock.mono()));
  }

  TEST_CASE("minAvailable: no acquisition while a peer is down") {
    Member m;
    auto d = group({"n1", "n2", "n3"});  // default minAvailable = 3 - 1 = 2
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::succeeded, "a");
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 40s, {"n2"});  // n3 stopped heartbeating
    Action a = m.decide(d);
    CHECK(a.kind != ActionKind::write);
    CHECK(a.reason.find("unhealthy: n3") != std::string::npos);
    m.run_for(d, 20s, {"n2", "n3"});  // n3 is back
    CHECK(m.decide(d).what == WriteKind::acquire);
  }

  TEST_CASE("minAvailable: a member without an entry, or failed, is not healthy") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 40s, {"n2"});
    CHECK(m.decide(d).reason.find("unhealthy: n3") != std::string::npos);
    d.settings.min_available = 1;
    CHECK(m.decide(d).what == WriteKind::acquire);
  }

  TEST_CASE("health is not judged until the rollout has been observed for 3 heartbeats") {
    Member m;
    auto d = group({"n1", "n2"});
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    Action a = m.decide(d);
    CHECK(a.kind != ActionKind::write);
    CHECK(a.reason.find("observing") != std::string::npos);
    m.run_for(d, 30s, {"n2"});
    CHECK(m.decide(d).what == WriteKind::acquire);
  }

  TEST_CASE("only the head of the healthy waiters contends, ordered by waitingSince then node id") {
    Member m;
    auto d = group({"n0", "n1", "n2"});
    d.settings.min_available = 1;
    d.entries["n1"] = m.own();
    d.entries["n0"] = entry(State::waiting, "a");
    d.entries["n0"].waiting_since = m.local.waiting_since;  // tie: n0 < n1
    d.entries["n2"] = entry(State::waiting, "b");
    d.entries["n2"].waiting_since = "2026-11-25T19:00:00.000000Z";  // earlier than both
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 30s, {"n0", "n2"});
    CHECK(m.decide(d).reason == "waiting behind n2");
    d.entries["n2"] = entry(State::succeeded, "c");
    m.run_for(d, 10s, {"n0", "n2"});
    CHECK(m.decide(d).reason == "waiting behind n0");
    // A head waiter that stops heartbeating is skipped (it is not healthy).
    m.run_for(d, 40s, {"n2"});
    CHECK(m.decide(d).what == WriteKind::acquire);
  }

  TEST_CASE("a failed or rolledback entry halts the group for that target until resume or a new target") {
    Member m;
    auto d = group({"n1", "n2"});
    d.settings.min_available = 0;
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::rolledback, "a", 4);
    d.entries["n2"].message = "health check failed";
    m.c.observe(d, m.clock.mono());
    m.run_for(d, 30s, {"n2"});
    Action a = m.decide(d);
    CHECK(a.kind != ActionKind::write);
    CHECK(a.reason.find("halted") != std::string::npos);
    CHECK(a.reason.find("health check failed") != std::string::npos);
    // an admin resume writes the entry back to idle
    d.entries["n2"] = entry(State::idle, "b");
    m.run_for(d, 10s, {"n2"});
    CHECK(m.decide(d).what == WriteKind::acquire);
    // a new target is not halted by a failure of the old one
    d.entries["n2"] = entry(State::failed, "c", 4);
    CHECK(Coordinator::halted_for(d, "2.0.0"));
    CHECK_FALSE(Coordinator::halted_for(d, "2.0.1"));
  }

  TEST_CASE("an idle member does not start preparing a target its group is halted for") {
    Member m;
    m.local.state = State::idle;
    auto d = group({"n1", "n2"});
    Entry own = entry(State::idle, "x");
    own.write_id = "mine";
    d.entries["n1"] = own;
    d.entries["n2"] = entry(State::failed, "a", 4);
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide(d).kind == ActionKind::none);
    d.entries["n2"].target_version = "1.9.0";
    CHECK(m.decide(d).what == WriteKind::prepare);
  }

  TEST_CASE("paused: no new acquisitions") {
    Member m;
    auto d = group({"n1"});
    d.settings.paused = true;
    d.entries["n1"] = m.own();
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide(d).reason == "group paused by an admin");
    d.settings.paused = false;
    CHECK(m.decide(d).what == WriteKind::acquire);
  }

  TEST_CASE("fencing: a disruptive step needs our lease, our epoch and no higher live epoch") {
    Member m;
    m.local.state = State::upgrading;
    m.local.epoch = 7;
    m.local.last_renew = m.clock.mono();
    auto d = group({"n1", "n2"});
    Entry own = entry(State::upgrading, "x", 7);
    own.write_id = "mine";
    d.entries["n1"] = own;
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    CHECK(m.c.fence(d, m.local, m.clock.mono()).ok);
    CHECK(m.decide(d).kind == ActionKind::install);

    SUBCASE("a higher epoch holds a live lease") {
      d.entries["n2"] = entry(State::upgrading, "b", 8);
      m.c.observe(d, m.clock.mono());
      CHECK_FALSE(m.c.fence(d, m.local, m.clock.mono()).ok);
      Action a = m.decide(d);
      CHECK(a.what == WriteKind::fenced);
      CHECK(a.entry.state == State::waiting);
    }
    SUBCASE("an admin force-released us") {
      d.entries["n1"] = entry(State::idle, "admin");
      d.entries["n1"].message = "force-released by admin";
      CHECK_FALSE(m.c.fence(d, m.local, m.clock.mono()).ok);
      Action a = m.decide(d);
      CHECK(a.kind == ActionKind::adopt);
      CHECK(a.entry.message == "force-released by admin");
    }
    SUBCASE("not renewed for a whole lease duration") {
      m.clock.advance(60s);
      CHECK_FALSE(m.c.fence(d, m.local, m.clock.mono()).ok);
      // it renews (no one else holds a lease) before any step
      CHECK(m.decide(d).what == WriteKind::renew);
    }
  }

  TEST_CASE("a holder renews at a third of the lease and every heartbeat") {
    Member m;
    m.local.state = State::upgrading;
    m.local.epoch = 7;
    m.local.progress = Progress::install_begun;
    m.local.job_running = true;
    m.local.last_renew = m.clock.mono();
    auto d = group({"n1"});
    Entry own = entry(State::upgrading, "x", 7);
    own.write_id = "mine";
    d.entries["n1"] = own;
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide(d).kind == ActionKind::none);
    m.clock.advance(10s);
    Action a = m.decide(d);
    CHECK(a.what == WriteKind::renew);
    CHECK(a.entry.state == State::upgrading);
    CHECK(a.entry.epoch == 7);
  }

  TEST_CASE("a restarted holder renews before anything else") {
    Member m;
    m.local.state = State::verifying;
    m.local.epoch = 7;
    m.local.progress = Progress::restart_begun;
    m.local.last_renew.reset();
    auto d = group({"n1", "n2"});
    Entry own = entry(State::verifying, "x", 7);
    own.write_id = "mine";
    d.entries["n1"] = own;
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide(d).what == WriteKind::renew);
    m.local.last_renew = m.clock.mono();
    CHECK(m.decide(d).kind == ActionKind::check_health);
  }

  TEST_CASE("the lifecycle of the holder: install, restart, verify, release") {
    Member m;
    m.local.state = State::upgrading;
    m.local.epoch = 7;
    m.local.last_renew = m.clock.mono();
    auto d = group({"n1"});
    Entry own = entry(State::upgrading, "x", 7);
    own.write_id = "mine";
    d.entries["n1"] = own;
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide(d).kind == ActionKind::install);
    m.local.progress = Progress::installed;
    CHECK(m.decide(d).kind == ActionKind::restart);
    m.local.progress = Progress::restarted;
    Action v = m.decide(d);
    CHECK(v.what == WriteKind::verify);
    CHECK(v.entry.state == State::verifying);
    m.local.state = State::verifying;
    CHECK(m.decide(d).kind == ActionKind::check_health);
    m.local.progress = Progress::healthy;
    Action r = m.decide(d);
    CHECK(r.what == WriteKind::release);
    CHECK(r.entry.state == State::succeeded);
    CHECK(r.entry.version == "2.0.0");
    CHECK(r.entry.renew_time.empty());  // lease fields removed (§4.5)
    m.local.progress = Progress::failed;
    CHECK(m.decide(d).kind == ActionKind::rollback);
    m.local.previous_version = "1.0.0";
    m.local.progress = Progress::rolled_back;
    m.local.message = "health check failed";
    r = m.decide(d);
    CHECK(r.entry.state == State::rolledback);
    CHECK(r.entry.version == "1.0.0");
    CHECK(r.entry.message == "health check failed");
  }

  TEST_CASE("a lost write is recognised by its writeId") {
    auto d = group({"n1"});
    Entry own = entry(State::upgrading, "x", 7);
    own.write_id = "abc";
    d.entries["n1"] = own;
    CHECK(Coordinator::write_landed(d, "n1", "abc"));
    CHECK_FALSE(Coordinator::write_landed(d, "n1", "abd"));
    CHECK_FALSE(Coordinator::write_landed(d, "n2", "abc"));
    CHECK_FALSE(Coordinator::write_landed(d, "n1", ""));
  }

  TEST_CASE("epochs strictly increase, even when the highest-epoch member was removed") {
    Coordinator c("n1", kTiming);
    Local l;
    auto d = group({"n1", "n2"});
    d.entries["n2"] = entry(State::succeeded, "a", 30);
    d.revision = 12;
    CHECK(c.next_epoch(d, l) == 31);
    d.entries.erase("n2");  // removed from the group: its entry goes
    d.revision = 13;
    std::int64_t e = c.next_epoch(d, l);
    CHECK(e == 14);
    l.highest_epoch = 31;  // this member saw it
    CHECK(c.next_epoch(d, l) == 32);
  }

  TEST_CASE("a member removed from the group does nothing but says so") {
    Member m;
    auto d = group({"n2"});
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    Action a = m.decide(d);
    CHECK(a.kind == ActionKind::none);
    CHECK(a.reason.find("not a member") != std::string::npos);
    CHECK_FALSE(m.c.may_acquire(d, m.local, m.clock.mono()).ok);
  }

  TEST_CASE("a member without an entry joins first") {
    Member m;
    m.local.state = State::idle;
    auto d = group({"n1", "n2"});
    m.c.observe(d, m.clock.mono());
    Action a = m.decide(d);
    CHECK(a.what == WriteKind::join);
    CHECK(a.entry.state == State::idle);
    CHECK(a.entry.version == "1.0.0");
    CHECK_FALSE(a.entry.last_seen.empty());
  }

  TEST_CASE("an idle member with a new target starts preparing; a prepared one waits") {
    Member m;
    m.local.state = State::idle;
    m.local.prepared = false;
    auto d = group({"n1"});
    Entry own = entry(State::idle, "x");
    own.write_id = "mine";
    d.entries["n1"] = own;
    m.c.observe(d, m.clock.mono());
    Action a = m.decide(d);
    CHECK(a.what == WriteKind::prepare);
    CHECK(a.entry.state == State::preparing);
    CHECK(a.entry.target_version == "2.0.0");
    m.local.state = State::preparing;
    d.entries["n1"].state = State::preparing;
    d.entries["n1"].target_version = "2.0.0";
    CHECK(m.decide(d).kind == ActionKind::prepare);
    m.local.prepared = true;
    Action w = m.decide(d);
    CHECK(w.what == WriteKind::wait);
    CHECK(w.entry.state == State::waiting);
    CHECK_FALSE(w.entry.waiting_since.empty());
    m.local.prepared = false;
    m.local.verification_failed = true;
    CHECK(m.decide(d).entry.state == State::failed);
  }

  TEST_CASE("heartbeats: every heartbeat in an active rollout, every idle heartbeat when quiet") {
    Member m;
    m.local.state = State::idle;
    m.local.target = "";
    auto d = group({"n1", "n2"});
    Entry own = entry(State::idle, "x");
    own.write_id = "mine";
    d.entries["n1"] = own;
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    m.clock.advance(20s);
    CHECK(m.decide_as_is(d).kind == ActionKind::none);
    m.clock.advance(5min);
    CHECK(m.decide_as_is(d).what == WriteKind::heartbeat);
    m.local.last_write = m.clock.mono();
    m.clock.advance(1s);
    d.entries["n2"] = entry(State::preparing, "b");  // a rollout begins
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide_as_is(d).what == WriteKind::heartbeat);  // show we are alive at once
    m.local.last_write = m.clock.mono();
    m.clock.advance(9s);
    CHECK(m.decide_as_is(d).kind == ActionKind::none);
    m.clock.advance(1s);
    CHECK(m.decide_as_is(d).what == WriteKind::heartbeat);
  }

  TEST_CASE("§4.1: peers seen alive (lastSeen changed since first sighting) shorten the observation window") {
    Member m;
    auto d = group({"n1", "n2", "n3"});
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::idle, "a");
    d.entries["n3"] = entry(State::idle, "b");
    m.c.observe(d, m.clock.mono());
    // First sightings only: nothing proves n2 and n3 alive yet.
    m.clock.advance(1s);
    Action a = m.decide(d);
    CHECK(a.kind != ActionKind::write);
    CHECK(a.reason.find("observing peers' health") != std::string::npos);
    // n2 heartbeats (a rollout began: peers show they are alive at once); n3 not yet.
    m.clock.advance(1s);
    d.entries["n2"].last_seen = "a2";
    m.c.observe(d, m.clock.mono());
    CHECK(m.decide(d).kind != ActionKind::write);
    d.entries["n3"].last_seen = "b2";
    m.c.observe(d, m.clock.mono());
    a = m.decide(d);
    REQUIRE(a.kind == ActionKind::write);  // 2 s in, not 3 × heartbeat (30 s)
    CHECK(a.what == WriteKind::acquire);
  }

  TEST_CASE(
      "poll interval: the head of the queue polls at half the fast poll, the next two at the fast poll, even "
      "while a lease is held; the rest slower with each place, up to the slow poll") {
    Member m;
    auto d = group({"n1", "n2", "n3", "n4"});
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::upgrading, "r", 5);
    Entry behind = entry(State::waiting, "w3");
    behind.waiting_since = "2026-11-25T21:00:00.000000Z";  // after ours
    d.entries["n3"] = behind;
    d.entries["n4"] = behind;
    m.c.observe(d, m.clock.mono());
    CHECK(m.c.queue_position(d, m.local, m.clock.mono()) == 0);
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.fast_poll / 2);  // the head
    d.entries["n3"].waiting_since = "2026-11-25T19:00:00.000000Z";  // before ours: we are next
    CHECK(m.c.queue_position(d, m.local, m.clock.mono()) == 1);
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.fast_poll);
    d.entries["n4"].waiting_since = "2026-11-25T19:30:00.000000Z";  // third
    CHECK(m.c.queue_position(d, m.local, m.clock.mono()) == 2);
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.fast_poll);
  }

  TEST_CASE("poll interval: a waiter reads again before the holder just ahead of it can release") {
    // Turns (acquire, install, release) as short as a fast poll, a queue of 12 behind
    // a holder: the waiter p places back is never passed between two of its reads.
    Member m;
    std::vector<std::string> names{"n1"};
    for (int i = 2; i <= 14; ++i) names.push_back("n" + std::to_string(i));
    auto d = group(names);
    d.entries["n1"] = m.own();
    m.local.waiting_since = d.entries["n1"].waiting_since = "2026-11-25T20:30:00.000000Z";
    d.entries["n2"] = entry(State::upgrading, "r", 5);
    for (int i = 3; i <= 14; ++i) {
      Entry w = entry(State::waiting, "w" + std::to_string(i));
      w.waiting_since = "2026-11-25T20:00:" + std::string(i < 10 ? "0" : "") + std::to_string(i) + ".000000Z";
      d.entries["n" + std::to_string(i)] = w;
    }
    m.c.observe(d, m.clock.mono());
    REQUIRE(m.c.queue_position(d, m.local, m.clock.mono()) == 12);
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.poll);  // 11 fast polls capped
    const Mono turn = kTiming.fast_poll;
    Mono next_read = m.clock.mono() + m.c.poll_interval(d, m.local, m.clock.mono());
    Mono next_turn = m.clock.mono() + turn;
    int ahead = 12;
    while (ahead > 0) {
      if (next_turn <= next_read) {  // the holder releases; the head acquires at once
        m.clock.advance(next_turn - m.clock.mono());
        --ahead;
        d.entries["n" + std::to_string(14 - ahead)].state = State::upgrading;
        next_turn += turn;
        // Our release-to-acquire must not already have gone by unseen: when nobody is
        // ahead of us any more, the holder's release is still to come.
        continue;
      }
      m.clock.advance(next_read - m.clock.mono());
      m.c.observe(d, m.clock.mono());
      const int pos = m.c.queue_position(d, m.local, m.clock.mono());
      CHECK(pos == ahead);
      next_read = m.clock.mono() + m.c.poll_interval(d, m.local, m.clock.mono());
      // Before the holder just ahead of us releases (ahead + 1 turns away at the
      // earliest less the part of the current turn gone by), we read again.
      CHECK(next_read < next_turn + ahead * turn);
    }
  }

  TEST_CASE("poll interval: fast at the head or holding, slow when quiet") {
    Member m;
    auto d = group({"n1", "n2"});
    d.entries["n1"] = m.own();
    d.entries["n2"] = entry(State::idle, "a");
    m.c.observe(d, m.clock.mono());
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.fast_poll / 2);  // the head
    m.local.state = State::upgrading;
    d.entries["n1"].state = State::upgrading;
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.fast_poll);  // holding
    m.local.state = State::idle;
    d.entries["n1"].state = State::idle;
    CHECK(m.c.poll_interval(d, m.local, m.clock.mono()) == kTiming.idle_heartbeat);
  }

  TEST_CASE("one table: a holder and a node in no group take the same next step for each progress") {
    CHECK(next_step(Progress::none).step == ActionKind::install);
    CHECK(next_step(Progress::install_begun).step == ActionKind::install);
    CHECK(next_step(Progress::installed).step == ActionKind::restart);
    CHECK(next_step(Progress::restart_begun).step == ActionKind::check_health);
    CHECK(next_step(Progress::restarted).step == ActionKind::check_health);
    CHECK(next_step(Progress::failed).step == ActionKind::rollback);
    CHECK(next_step(Progress::rollback_begun).step == ActionKind::rollback);
    CHECK(next_step(Progress::healthy).ends_in == State::succeeded);
    CHECK(next_step(Progress::rolled_back).ends_in == State::rolledback);
    CHECK(next_step(Progress::rollback_failed).ends_in == State::failed);
    Local l;
    l.version = "1.0.0";
    l.target = "2.0.0";
    l.state = State::upgrading;
    for (Progress p : {Progress::none, Progress::installed, Progress::restarted, Progress::failed}) {
      l.progress = p;
      CHECK(Coordinator::decide_alone(l).kind == next_step(p).step);
    }
  }

  TEST_CASE("a node in no group: prepares, upgrades without a lease, releases and reports") {
    Local l;
    l.version = "1.0.0";
    l.target = "2.0.0";
    AloneAction a = Coordinator::decide_alone(l);
    REQUIRE(a.next);
    CHECK(a.next->state == State::preparing);
    CHECK(a.report == MgmtStatus::download_started);
    CHECK_FALSE(a.stop);
    l = *a.next;
    CHECK(Coordinator::decide_alone(l).kind == ActionKind::prepare);
    l.prepared = true;
    a = Coordinator::decide_alone(l);
    REQUIRE(a.next);
    CHECK(a.next->state == State::upgrading);
    CHECK(a.next->previous_version == "1.0.0");
    l = *a.next;
    CHECK(Coordinator::decide_alone(l).kind == ActionKind::install);
    l.progress = Progress::healthy;
    a = Coordinator::decide_alone(l);
    REQUIRE(a.next);
    CHECK(a.released);
    CHECK(a.stop);
    CHECK(a.report == MgmtStatus::successful);
    CHECK(a.next->state == State::succeeded);
    CHECK(a.next->version == "2.0.0");
    CHECK(a.next->progress == Progress::none);
    a = Coordinator::decide_alone(*a.next);
    CHECK_FALSE(a.next);
    CHECK(a.wait == WaitReason::up_to_date);
    CHECK(a.reason == "not in an HA group; up to date at 2.0.0");
  }

  TEST_CASE("a node in no group whose upgrade rolled back halts itself for that target only") {
    Local l;
    l.version = "1.0.0";
    l.previous_version = "1.0.0";
    l.target = "2.0.0";
    l.state = State::upgrading;
    l.progress = Progress::rolled_back;
    l.message = "health check of 2.0.0 failed";
    AloneAction a = Coordinator::decide_alone(l);
    REQUIRE(a.next);
    CHECK(a.report == MgmtStatus::rollback_successful);
    CHECK(a.report_error == l.message);
    CHECK(a.next->state == State::rolledback);
    CHECK(a.next->failed_target == "2.0.0");
    l = *a.next;
    a = Coordinator::decide_alone(l);
    CHECK(a.wait == WaitReason::halted);
    CHECK(a.reason == "upgrade to 2.0.0 failed: health check of 2.0.0 failed");
    l.target = "2.0.1";  // a newer version is published
    a = Coordinator::decide_alone(l);
    REQUIRE(a.next);
    CHECK(a.next->state == State::preparing);
    CHECK(a.next->failed_target.empty());
  }

  TEST_CASE("a node in no group: an artifact that failed verification fails the upgrade and ends the pass") {
    Local l;
    l.version = "1.0.0";
    l.target = "2.0.0";
    l.state = State::preparing;
    l.verification_failed = true;
    l.message = "artifact failed verification: bad signature";
    AloneAction a = Coordinator::decide_alone(l);
    REQUIRE(a.next);
    CHECK(a.stop);
    CHECK(a.next->state == State::failed);
    CHECK(a.report == MgmtStatus::failed);
    CHECK(a.report_error == l.message);
  }

  TEST_CASE("management statuses: each wire string reads back as its enum") {
    for (int i = 0; i <= static_cast<int>(MgmtStatus::no_action_required); ++i) {
      auto s = static_cast<MgmtStatus>(i);
      CHECK(mgmt_status_from_string(to_string(s)) == s);
    }
    CHECK(std::string(to_string(MgmtStatus::rollback_successful)) == "rollback successful");
    CHECK_FALSE(mgmt_status_from_string("done").has_value());
    CHECK(std::string(to_string(WriteKind::heartbeat)) == "heartbeat");
    CHECK(std::string(to_string(WriteKind::fenced)) == "fenced");
  }
}
