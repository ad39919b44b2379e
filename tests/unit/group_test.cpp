// The group document with its coordination extension (protocol.md §2, §3).
#include "agentd/group.h"

#include <cjson/cJSON.h>
#include <doctest/doctest.h>

using namespace agentd;

namespace {
const char* kDoc = R"({"nodeGroups":[{
  "name":"line1","description":"packing line 1","members":["n1","n2","n3"],
  "admin":false,"lastUpdated":"2026-11-25T20:00:01.123456Z",
  "agentUpgradeSettings":{"maxConcurrent":1,"minAvailable":2,"paused":false},
  "agentUpgrade":{
    "n1":{"state":"succeeded","version":"2.33.0","targetVersion":"2.33.0","epoch":6,
          "lastSeen":"2026-11-25T20:00:00.900Z","message":""},
    "n2":{"state":"upgrading","version":"2.32.0","targetVersion":"2.33.0","epoch":7,
          "leaseDurationSeconds":60,"acquireTime":"2026-11-25T19:59:40.000Z",
          "renewTime":"2026-11-25T20:00:00.000Z","lastSeen":"2026-11-25T20:00:00.000Z",
          "message":"installing","writeId":"b7c1","futureField":{"x":1}},
    "n3":{"state":"waiting","version":"2.32.0","targetVersion":"2.33.0",
          "waitingSince":"2026-11-25T19:59:41.000Z","epoch":0,
          "lastSeen":"2026-11-25T19:59:59.500Z","message":"waiting for n2"}}}]})";
}

TEST_SUITE("group") {
  TEST_CASE("a document with two entries under one key is refused, not read as the first") {
    // The second n2 holds a live lease: reading only the first would hide it.
    const char* doc = R"({"nodeGroups":[{"name":"g","members":["n1","n2"],"agentUpgrade":{
      "n2":{"state":"idle","version":"1.0.0","epoch":0},
      "n2":{"state":"upgrading","version":"1.0.0","targetVersion":"2.0.0","epoch":3,
            "leaseDurationSeconds":60,"acquireTime":"t","renewTime":"t"}}}]})";
    auto d = parse_group_document(doc, 1);
    REQUIRE_FALSE(d);
    CHECK(d.error().code == Errc::parse);
    CHECK(d.error().message.find("more than one entry for 'n2'") != std::string::npos);
  }

  TEST_CASE("parses the protocol's example document, ignoring unknown fields") {
    auto d = parse_group_document(kDoc, 42);
    REQUIRE(d);
    CHECK(d->name == "line1");
    CHECK(d->revision == 42);
    CHECK(d->members == std::vector<std::string>{"n1", "n2", "n3"});
    CHECK(d->settings.max_concurrent == 1);
    CHECK(d->settings.min_available == 2);
    CHECK(d->entries.size() == 3);
    const Entry* n2 = d->entry("n2");
    REQUIRE(n2);
    CHECK(n2->state == State::upgrading);
    CHECK(n2->epoch == 7);
    CHECK(n2->lease_duration_seconds == 60);
    CHECK(n2->write_id == "b7c1");
    CHECK(d->entry("n3")->waiting_since == "2026-11-25T19:59:41.000Z");
    CHECK(d->is_member("n3"));
    CHECK_FALSE(d->is_member("n4"));
  }

  TEST_CASE("today's Exchange document without the extension parses with defaults") {
    auto d = parse_group_document(R"({"nodeGroups":[{"name":"g","members":["a","b","c","d"]}]})", 1);
    REQUIRE(d);
    CHECK(d->entries.empty());
    CHECK(d->settings.max_concurrent == 1);
    CHECK_FALSE(d->settings.paused);
    CHECK(d->min_available() == 3);  // members - maxConcurrent
  }

  TEST_CASE("minAvailable is never below 1 in a group of two or more") {
    GroupDocument d;
    d.members = {"a", "b"};
    d.settings.max_concurrent = 5;
    CHECK(d.min_available() == 1);
    d.settings.min_available = 0;
    CHECK(d.min_available() == 1);
    d.members = {"a"};
    CHECK(d.min_available() == 0);
  }

  TEST_CASE("bad documents are clear errors") {
    struct Case {
      const char* body;
      const char* expect;
    } cases[] = {
        {"{", "malformed JSON"},
        {R"({"nodeGroups":[{"name":"g","members":["a"]}]} trailing)", "trailing data"},
        {R"({"nodeGroups":[]})", "exactly one group"},
        {R"({"nodeGroups":{}})", "nodeGroups"},
        {R"({"nodeGroups":[{"members":["a"]}]})", "name"},
        {R"({"nodeGroups":[{"name":"g","members":[1]}]})", "members"},
        {R"({"nodeGroups":[{"name":"g","agentUpgrade":{"a":{"state":"dancing"}}}]})",
         "unknown agentUpgrade state"},
        {R"({"nodeGroups":[{"name":"g","agentUpgrade":{"a":{"state":"idle","epoch":"7"}}}]})", "epoch"},
        {R"({"nodeGroups":[{"name":"g","agentUpgrade":{"a":{"state":"idle","epoch":-1}}}]})", "epoch"},
        {R"({"nodeGroups":[{"name":"g","agentUpgrade":{"a":{"state":"idle","epoch":1.5}}}]})", "epoch"},
        {R"({"nodeGroups":[{"name":"g","agentUpgrade":[]}]})", "agentUpgrade"},
        {R"({"nodeGroups":[{"name":"g","agentUpgradeSettings":{"maxConcurrent":0}}]})", "maxConcurrent"},
        {R"({"nodeGroups":[{"name":"g","agentUpgradeSettings":{"paused":"yes"}}]})", "paused"},
    };
    for (const auto& c : cases) {
      CAPTURE(c.body);
      auto d = parse_group_document(c.body, 1);
      REQUIRE_FALSE(d);
      CHECK(d.error().code == Errc::parse);
      CHECK(d.error().message.find(c.expect) != std::string::npos);
    }
  }

  TEST_CASE("an entry round-trips; lease fields only in lease states") {
    Entry e;
    e.state = State::upgrading;
    e.version = "1";
    e.target_version = "2";
    e.epoch = 9;
    e.lease_duration_seconds = 120;
    e.acquire_time = "a";
    e.renew_time = "r";
    e.last_seen = "s";
    e.message = "m";
    e.write_id = "w";
    auto j = entry_to_json(e);
    auto back = parse_entry(j.get());
    REQUIRE(back);
    CHECK(*back == e);
    e.state = State::succeeded;
    auto j2 = entry_to_json(e);
    CHECK(cJSON_GetObjectItem(j2.get(), "renewTime") == nullptr);
    CHECK(cJSON_GetObjectItem(j2.get(), "leaseDurationSeconds") == nullptr);
  }

  TEST_CASE("settings round-trip") {
    Settings s;
    s.max_concurrent = 2;
    s.min_available = 3;
    s.paused = true;
    auto back = parse_settings(settings_to_json(s).get());
    REQUIRE(back);
    CHECK(*back == s);
  }

  TEST_CASE("ETags: quoted, weak, and a hub without one") {
    CHECK(parse_etag("\"42\"").value() == 42);
    CHECK(parse_etag("W/\"7\"").value() == 7);
    CHECK(parse_etag("13").value() == 13);
    CHECK(parse_etag("").error().code == Errc::unsupported);
    CHECK(parse_etag("\"abc\"").error().code == Errc::unsupported);
    CHECK(parse_etag("\"99999999999999999999999\"").error().code == Errc::unsupported);
  }

  TEST_CASE("state names") {
    for (State s : {State::idle, State::preparing, State::waiting, State::upgrading, State::verifying,
                    State::succeeded, State::failed, State::rolledback})
      CHECK(state_from_string(to_string(s)) == s);
    CHECK_FALSE(state_from_string("Idle"));
    CHECK(holds_lease(State::verifying));
    CHECK_FALSE(holds_lease(State::waiting));
    CHECK(is_halting(State::rolledback));
  }
}
