// agentctl status: the table, the documented JSON shape, and --watch's change lines.
#include "agentd/group_status.h"

#include <doctest/doctest.h>

#include "agentd/json.h"

using namespace agentd;

namespace {

Wall at(const std::string& t) {
  Wall w{};
  parse_time(t, &w);
  return w;
}

// n1 done, n2 holding the lease of epoch 42 and installing, n3 with no entry, n9
// an entry of a node that left the group.
GroupDocument rollout() {
  GroupDocument doc;
  doc.name = "line1";
  doc.revision = 43;
  doc.members = {"n1", "n2", "n3"};
  Entry n1;
  n1.state = State::succeeded;
  n1.version = "2.0.0";
  n1.target_version = "2.0.0";
  n1.epoch = 41;
  n1.last_seen = "2024-05-01T10:00:00.000Z";
  n1.message = "upgrade succeeded";
  Entry n2;
  n2.state = State::upgrading;
  n2.version = "1.0.0";
  n2.target_version = "2.0.0";
  n2.epoch = 42;
  n2.lease_duration_seconds = 120;
  n2.acquire_time = "2024-05-01T10:00:00.000Z";
  n2.renew_time = "2024-05-01T10:00:30.000Z";
  n2.last_seen = "2024-05-01T10:00:30.000Z";
  n2.message = "installing 2.0.0";
  Entry n9;
  n9.state = State::idle;
  n9.version = "1.0.0";
  doc.entries = {{"n1", n1}, {"n2", n2}, {"n9", n9}};
  return doc;
}

const Wall kNow = at("2024-05-01T10:00:42.000Z");

}  // namespace

TEST_SUITE("group_status") {
  TEST_CASE("the table shows settings, no halt, the holder's progress and every row") {
    CHECK(status_table(rollout(), kNow) ==
          "group line1  revision 43  members 3\n"
          "settings: maxConcurrent=1 minAvailable=2 (default) paused=no\n"
          "halted: no\n"
          "lease: n2 epoch 42, 12s of 120s: installing 2.0.0\n"
          "MEMBER  STATE       VERSION  TARGET  EPOCH  LEASE        MESSAGE\n"
          "n1      succeeded   2.0.0    2.0.0   41     -            upgrade succeeded\n"
          "n2      upgrading   1.0.0    2.0.0   42     12s of 120s  installing 2.0.0\n"
          "n3      (no entry)\n"
          "n9      idle        1.0.0            0      -            not a member\n");
  }

  TEST_CASE("the JSON shape: every documented field, in order") {
    CHECK(
        status_json(rollout(), kNow) ==
        R"({"group":"line1","revision":43,)"
        R"("settings":{"maxConcurrent":1,"minAvailable":2,"minAvailableIsDefault":true,"paused":false},)"
        R"("halted":false,"halts":[],"leaseHolders":["n2"],"members":[)"
        R"({"node":"n1","member":true,"hasEntry":true,"state":"succeeded","version":"2.0.0",)"
        R"("targetVersion":"2.0.0","epoch":41,"lastSeen":"2024-05-01T10:00:00.000Z","waitingSince":"",)"
        R"("message":"upgrade succeeded"},)"
        R"({"node":"n2","member":true,"hasEntry":true,"state":"upgrading","version":"1.0.0",)"
        R"("targetVersion":"2.0.0","epoch":42,"lastSeen":"2024-05-01T10:00:30.000Z","waitingSince":"",)"
        R"("message":"installing 2.0.0","lease":{"durationSeconds":120,)"
        R"("acquireTime":"2024-05-01T10:00:00.000Z","renewTime":"2024-05-01T10:00:30.000Z","ageSeconds":12}},)"
        R"({"node":"n3","member":true,"hasEntry":false,"state":"","version":"","targetVersion":"","epoch":0,)"
        R"("lastSeen":"","waitingSince":"","message":""},)"
        R"({"node":"n9","member":false,"hasEntry":true,"state":"idle","version":"1.0.0","targetVersion":"",)"
        R"("epoch":0,"lastSeen":"","waitingSince":"","message":""}]})");
  }

  TEST_CASE("a halt is in the JSON and in the table, with how to resume it") {
    GroupDocument doc = rollout();
    Entry& n2 = doc.entries["n2"];
    n2.state = State::rolledback;
    n2.lease_duration_seconds = 0;
    n2.renew_time.clear();
    n2.acquire_time.clear();
    n2.message = "health check failed";
    auto parsed = json::parse(status_json(doc, kNow), "status");
    REQUIRE(parsed);
    CHECK(*json::get_bool(parsed->get(), "halted"));
    auto halts = json::get_array(parsed->get(), "halts");
    REQUIRE(halts);
    CHECK(json::print(*halts) ==
          R"([{"node":"n2","state":"rolledback","targetVersion":"2.0.0","message":"health check failed"}])");
    CHECK(json::print(*json::get_array(parsed->get(), "leaseHolders")) == "[]");
    CHECK(status_table(doc, kNow).find("halted for 2.0.0: n2 is rolledback: health check failed "
                                       "(agentctl resume line1 n2)\n") != std::string::npos);
  }

  TEST_CASE("watch lines: everything first, then only what changed; heartbeats alone are quiet") {
    GroupDocument before = rollout();
    auto first = status_changes(nullptr, before, kNow);
    REQUIRE(first.size() == 6);
    CHECK(first[0] ==
          "2024-05-01T10:00:42.000000Z group line1 settings: maxConcurrent=1 minAvailable=2 (default) "
          "paused=no");
    CHECK(first[1] == "2024-05-01T10:00:42.000000Z halted: no");
    CHECK(first[3] ==
          "2024-05-01T10:00:42.000000Z n2 upgrading 1.0.0 -> 2.0.0 epoch 42 lease 12s of 120s: installing "
          "2.0.0");
    CHECK(first[5] == "2024-05-01T10:00:42.000000Z n9 idle 1.0.0 epoch 0 (not a member)");

    GroupDocument heartbeat = before;
    heartbeat.revision = 44;
    heartbeat.entries["n1"].last_seen = "2024-05-01T10:00:40.000Z";
    heartbeat.entries["n2"].renew_time = "2024-05-01T10:00:40.000Z";
    CHECK(status_changes(&before, heartbeat, kNow).empty());

    GroupDocument failed = heartbeat;
    failed.entries["n2"].state = State::failed;
    failed.entries["n2"].lease_duration_seconds = 0;
    failed.entries["n2"].message = "install failed";
    auto lines = status_changes(&heartbeat, failed, kNow);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] ==
          "2024-05-01T10:00:42.000000Z halted for 2.0.0: n2 is failed: install failed (agentctl resume "
          "line1 n2)");
    CHECK(lines[1] == "2024-05-01T10:00:42.000000Z n2 failed 1.0.0 -> 2.0.0 epoch 42: install failed");
  }
}
