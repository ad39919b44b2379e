// agentd/member.h: the bookkeeping around a member's own writes, and the two
// defects the simulator (tests/sim) found in it.
#include "agentd/member.h"

#include <doctest/doctest.h>

using namespace agentd;

namespace {

const Timing kTiming{Mono{30'000}, Mono{5'000}, Mono{60'000}, Mono{1'000}, Mono{3'000}};
const Wall kWall{std::chrono::seconds{1'795'000'000}};

Entry holder_entry(std::int64_t epoch, const std::string& wid) {
  Entry e;
  e.state = State::upgrading;
  e.version = "1.0.0";
  e.target_version = "2.0.0";
  e.epoch = epoch;
  e.lease_duration_seconds = 30;
  e.acquire_time = e.renew_time = e.last_seen = format_time(kWall);
  e.write_id = wid;
  return e;
}

// agentctl force-release: the lease ends, the state does not (protocol.md §6).
Entry force_released(Entry e) {
  e.lease_duration_seconds = 0;
  e.acquire_time.clear();
  e.renew_time.clear();
  e.write_id.clear();
  e.message = "force-released by o/admin";
  return e;
}

GroupDocument two_members() {
  GroupDocument d;
  d.name = "g";
  d.members = {"n1", "n2"};
  d.revision = 20;
  return d;
}

// What a member restarted from its state file holds in memory.
PersistedState restarted(const PersistedState& before) {
  auto again = state_from_json(state_to_json(before));
  REQUIRE(again);
  return *again;
}

}  // namespace

TEST_SUITE("member") {
  TEST_CASE("a write that lands becomes our state; a refused one is no longer pending, a 412 still is") {
    PersistedState ps;
    ps.local.state = State::waiting;
    ps.local.version = "1.0.0";
    ps.local.target = "2.0.0";
    Entry e = holder_entry(7, "w1");
    ps.pending_write_id = "w1";
    GroupDocument d = two_members();
    REQUIRE(write_condition(e) == WriteCondition::group);  // an acquisition
    land_answered_write(ps, d, "n1", e, 21, Mono{100}, WriteCondition::group);
    CHECK(ps.local.state == State::upgrading);
    CHECK(ps.local.epoch == 7);
    CHECK(ps.local.previous_version == "1.0.0");
    CHECK(ps.local.last_renew == Mono{100});
    CHECK(ps.pending_write_id.empty());
    CHECK(d.revision == 21);
    CHECK(d.entries.at("n1") == e);

    // An entry-conditioned write: peers may have written before it landed, so the
    // copy is not the document at the revision the hub answered.
    Entry hb = e;
    hb.state = State::succeeded;
    hb.write_id = "w3";
    REQUIRE(write_condition(hb) == WriteCondition::entry);
    land_answered_write(ps, d, "n1", hb, 25, Mono{200}, WriteCondition::entry);
    CHECK(d.revision == 21);
    CHECK(d.entries.at("n1") == hb);

    // protocol.md §4.6: a 412 may answer a re-sent copy of a write that landed.
    ps.pending_write_id = "w2";
    write_not_answered(ps, classify_write_error(Errc::conflict));
    CHECK(ps.pending_write_id == "w2");
    write_not_answered(ps, classify_write_error(Errc::transport));
    CHECK(ps.pending_write_id == "w2");
    write_not_answered(ps, classify_write_error(Errc::forbidden));
    CHECK(ps.pending_write_id.empty());
  }

  TEST_CASE("a pending write found on the re-read is landed, with its lease to be renewed first") {
    PersistedState ps;
    ps.local.state = State::waiting;
    ps.local.version = "1.0.0";
    ps.local.target = "2.0.0";
    ps.pending_write_id = "w9";
    GroupDocument d = two_members();
    d.entries["n1"] = holder_entry(12, "w9");
    Landed effects;
    auto found = resolve_pending(ps, d, "n1", &effects);
    REQUIRE(found);
    CHECK(ps.local.state == State::upgrading);
    CHECK(ps.local.epoch == 12);
    CHECK_FALSE(ps.local.last_renew);
    CHECK(ps.pending_write_id.empty());
  }

  TEST_CASE("a holder restarted while its detached install runs, then force-released, stays disrupted") {
    // agentd-sim seed 245 before the fix: the new process counted the install as
    // ended (step_running is process-local), wrote preparing, and the next member
    // acquired and began its own install while this one's was still running.
    PersistedState ps;
    ps.group = "g";
    ps.local.state = State::upgrading;
    ps.local.version = "1.0.0";
    ps.local.target = "2.0.0";
    ps.local.previous_version = "1.0.0";
    ps.local.prepared = true;
    ps.local.epoch = 14;
    ps.local.highest_epoch = 14;
    ps.local.progress = Progress::install_begun;
    ps.local.last_write_id = "w14";
    PersistedState now = restarted(ps);
    Mono t{1'000'000};
    process_started(now.local, t, Mono{60'000});
    note_job(now.local, false, false, t);
    CHECK(now.local.step_running);

    GroupDocument d = two_members();
    d.entries["n1"] = force_released(holder_entry(14, "w14"));
    Coordinator c("n1", kTiming);
    c.observe(d, t);
    Action a = c.decide(d, now.local, t, kWall, "w15");
    REQUIRE(a.kind == ActionKind::adopt);
    Adopted ad = adopt_entry(now.local, a.entry);
    CHECK(ad.fenced);
    CHECK(ad.step_running);
    a = c.decide(d, now.local, t, kWall, "w15");
    REQUIRE(a.kind == ActionKind::write);
    CHECK(a.entry.state == State::upgrading);  // disrupted for its peers (§4.4)
    CHECK(a.entry.lease_duration_seconds == 0);

    // The step's timeout has surely ended it: queue again.
    land_write(now, a.entry, t);
    Mono later = t + Mono{60'000};
    const char* ended = note_job(now.local, false, false, later);
    REQUIRE(ended != nullptr);
    CHECK(std::string(ended) == "install");  // its end goes into the steps log
    CHECK_FALSE(now.local.step_running);
    CHECK(note_job(now.local, false, false, later) == nullptr);  // once
    c.observe(d, later);
    d.entries["n1"] = a.entry;
    a = c.decide(d, now.local, later, kWall, "w16");
    REQUIRE(a.kind == ActionKind::write);
    CHECK(a.entry.state == State::waiting);
  }

  TEST_CASE("a process that resumes its begun install itself no longer counts on the timeout") {
    Local l;
    l.progress = Progress::install_begun;
    process_started(l, Mono{0}, Mono{60'000});
    note_job(l, true, true, Mono{10});
    CHECK_FALSE(l.begun_step_until);
    note_job(l, false, false, Mono{20});
    CHECK_FALSE(l.step_running);
    Local other;
    other.progress = Progress::installed;
    process_started(other, Mono{0}, Mono{60'000});
    note_job(other, false, false, Mono{0});
    CHECK_FALSE(other.step_running);
  }

  TEST_CASE("a fenced holder whose node already runs the target still checks health and releases") {
    // agentd-sim seeds 236 and 510 before the fix: restarted after the restart
    // step (or after its health check passed), fenced, the member found its
    // running version equal to the target, wrote idle as if the target had been
    // withdrawn, and kept `progress` forever: never released, never took a later
    // target.
    for (Progress p : {Progress::restarted, Progress::healthy}) {
      CAPTURE(to_string(p));
      Local l;
      l.state = State::waiting;
      l.version = "2.0.0";  // what the node runs now
      l.target = "2.0.0";
      l.previous_version = "1.0.0";
      l.prepared = true;
      l.progress = p;
      l.epoch = 33;
      l.last_write_id = "w33";
      l.waiting_since = format_time(kWall);
      GroupDocument d = two_members();
      Entry mine;
      mine.state = State::waiting;
      mine.version = "2.0.0";
      mine.target_version = "2.0.0";
      mine.epoch = 33;
      mine.waiting_since = l.waiting_since;
      mine.last_seen = format_time(kWall);
      mine.write_id = "w33";
      d.entries["n1"] = mine;
      Coordinator c("n1", kTiming);
      c.observe(d, Mono{0});
      Action a = c.decide(d, l, Mono{0}, kWall, "w34");
      CHECK_FALSE((a.kind == ActionKind::write && a.entry.state == State::idle));
    }
  }
}
