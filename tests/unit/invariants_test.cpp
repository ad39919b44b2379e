#include "check/invariants.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "agentd/json.h"

using namespace agentd;
using namespace agentd::check;

namespace {

constexpr std::int64_t kT0 = 1'795'000'000'000'000;  // hub wall clock at ms 0, in microseconds

struct E {
  std::string node;
  State state = State::idle;
  std::int64_t epoch = 0;
  std::string version = "1.0.0";
  std::string target;
  std::string message;
  std::int64_t lease_seconds = 3;  // in upgrading/verifying; 0: no lease (protocol.md §4.4)
};

// Builds a log of hub writes; each write states the full entries after it, as the stand-in logs them.
class HubLog {
 public:
  std::vector<std::string> members{"n1", "n2", "n3"};
  std::int64_t max_concurrent = 1;

  // `node` is the entry written (op write_entry); entries not named keep their previous value.
  HubLog& write(std::int64_t ms, const std::string& node, const E& e) {
    state_[node] = e;
    return emit(ms, "write_entry", node);
  }
  HubLog& op(std::int64_t ms, const std::string& op, const std::string& node = "") {
    return emit(ms, op, node);
  }
  HubLog& drop(std::int64_t ms, const std::string& node) {
    state_.erase(node);
    return emit(ms, "delete_entry", node);
  }
  std::string text() const {
    std::string t;
    for (const auto& l : lines_) t += l + "\n";
    return t;
  }
  std::vector<HubWrite> parsed() const {
    auto r = parse_hub_log(text(), "hub.jsonl");
    REQUIRE(r.has_value());
    return *r;
  }

 private:
  HubLog& emit(std::int64_t ms, const std::string& op, const std::string& node) {
    auto o = json::object();
    json::set(o.get(), "seq", static_cast<std::int64_t>(lines_.size() + 1));
    json::set(o.get(), "tUs", kT0 + ms * 1000);
    json::set(o.get(), "org", "o");
    json::set(o.get(), "group", "g");
    json::set(o.get(), "revision", static_cast<std::int64_t>(lines_.size() + 10));
    json::set(o.get(), "op", op);
    json::set(o.get(), "actor", "o/" + node);
    json::set(o.get(), "node", node);
    auto m = json::array();
    for (const auto& n : members) json::append(m.get(), n);
    json::set(o.get(), "members", std::move(m));
    Settings s;
    s.max_concurrent = max_concurrent;
    json::set(o.get(), "agentUpgradeSettings", settings_to_json(s));
    auto au = json::object();
    for (const auto& [n, e] : state_) {
      Entry entry;
      entry.state = e.state;
      entry.epoch = e.epoch;
      entry.version = e.version;
      entry.target_version = e.target;
      entry.message = e.message;
      if (holds_lease(e.state) && e.lease_seconds > 0) {
        entry.lease_duration_seconds = e.lease_seconds;
        entry.acquire_time = entry.renew_time = "2026-11-25T20:00:00.000000Z";
      }
      json::set(au.get(), n.c_str(), entry_to_json(entry));
    }
    json::set(o.get(), "agentUpgrade", std::move(au));
    lines_.push_back(json::print(o.get()));
    return *this;
  }

  std::map<std::string, E> state_;
  std::vector<std::string> lines_;
};

Step step(std::int64_t ms, const std::string& node, const std::string& what, std::int64_t epoch) {
  return Step{kT0 + ms * 1000, node, "g", what, epoch, "2.0.0", "steps-" + node + ".jsonl:1"};
}

E upgrading(std::int64_t epoch) {
  return E{"", State::upgrading, epoch, "1.0.0", "2.0.0", "installing"};
}
E verifying(std::int64_t epoch) {
  return E{"", State::verifying, epoch, "1.0.0", "2.0.0", "verifying"};
}
E succeeded(std::int64_t epoch) {
  return E{"", State::succeeded, epoch, "2.0.0", "2.0.0", ""};
}
E waiting(std::int64_t epoch) {
  return E{"", State::waiting, epoch, "1.0.0", "2.0.0", "waiting"};
}

// A clean rollout of three members, one at a time.
HubLog clean_rollout() {
  HubLog log;
  log.write(0, "n1", E{}).write(10, "n2", E{}).write(20, "n3", E{});
  log.write(100, "n1", waiting(0)).write(110, "n2", waiting(0)).write(120, "n3", waiting(0));
  log.write(200, "n1", upgrading(1)).write(1200, "n1", verifying(1)).write(1500, "n1", succeeded(1));
  log.write(1600, "n2", upgrading(2)).write(2600, "n2", verifying(2)).write(2900, "n2", succeeded(2));
  log.write(3000, "n3", upgrading(3)).write(4000, "n3", verifying(3)).write(4300, "n3", succeeded(3));
  return log;
}

std::vector<Step> clean_steps() {
  return {step(300, "n1", "install", 1),  step(1300, "n1", "restart", 1), step(1700, "n2", "install", 2),
          step(2700, "n2", "restart", 2), step(3100, "n3", "install", 3), step(4100, "n3", "restart", 3)};
}

std::vector<std::string> names(const std::vector<Violation>& vs) {
  std::vector<std::string> out;
  out.reserve(vs.size());
  for (const auto& v : vs) out.push_back(v.invariant);
  return out;
}

}  // namespace

TEST_SUITE("invariants") {
  TEST_CASE("a clean rollout passes every invariant, I4 included") {
    Options opts;
    opts.final_state = true;
    auto vs = find_violations(clean_rollout().parsed(), clean_steps(), opts);
    for (const auto& v : vs) MESSAGE(to_string(v));
    CHECK(vs.empty());
  }

  TEST_CASE("I1: two live leases at once are caught, naming both nodes and the revision") {
    HubLog log;
    log.write(0, "n1", upgrading(1)).write(1000, "n2", upgrading(2));
    auto vs = find_violations(log.parsed(), {}, {});
    REQUIRE(vs.size() == 1);
    CHECK(vs[0].invariant == "I1");
    CHECK(vs[0].group == "o/g");
    std::string line = to_string(vs[0]);
    CHECK(line.find("revision=11 seq=2") != std::string::npos);
    CHECK(line.find("n1") != std::string::npos);
    CHECK(line.find("n2") != std::string::npos);
  }

  TEST_CASE("I1: a renewal keeps a lease live beyond its first duration") {
    HubLog log;
    log.write(0, "n1", upgrading(1)).write(2000, "n1", upgrading(1)).write(4000, "n2", upgrading(2));
    CHECK(names(find_violations(log.parsed(), {}, {})) == std::vector<std::string>{"I1"});
  }

  TEST_CASE("I1: an expired lease followed by a new acquisition is fine") {
    HubLog log;
    log.write(0, "n1", upgrading(1)).write(3001, "n2", upgrading(2));
    CHECK(find_violations(log.parsed(), {}, {}).empty());
  }

  TEST_CASE("I1: maxConcurrent 2 allows two live leases but not three") {
    HubLog log;
    log.max_concurrent = 2;
    log.write(0, "n1", upgrading(1)).write(100, "n2", upgrading(2));
    CHECK(find_violations(log.parsed(), {}, {}).empty());
    log.write(200, "n3", upgrading(3));
    CHECK(names(find_violations(log.parsed(), {}, {})) == std::vector<std::string>{"I1"});
  }

  TEST_CASE("I2: an epoch lower than an earlier acquisition is caught") {
    HubLog log;
    log.write(0, "n1", upgrading(5)).write(500, "n1", succeeded(5)).write(600, "n2", upgrading(3));
    auto vs = find_violations(log.parsed(), {}, {});
    REQUIRE(names(vs) == std::vector<std::string>{"I2"});
    CHECK(to_string(vs[0]).find("lower than epoch 5 acquired by n1") != std::string::npos);
  }

  TEST_CASE("I2: a repeated epoch is caught, also when the same node re-enters a lease") {
    SUBCASE("another node") {
      HubLog log;
      log.write(0, "n1", upgrading(5)).write(500, "n1", succeeded(5)).write(600, "n2", upgrading(5));
      CHECK(names(find_violations(log.parsed(), {}, {})) == std::vector<std::string>{"I2"});
    }
    SUBCASE("the same node after being fenced back to waiting") {
      HubLog log;
      log.write(0, "n1", upgrading(5)).write(500, "n1", waiting(5)).write(600, "n1", upgrading(5));
      CHECK(names(find_violations(log.parsed(), {}, {})) == std::vector<std::string>{"I2"});
    }
  }

  TEST_CASE("I2: renewals and upgrading -> verifying are not acquisitions") {
    HubLog log;
    log.write(0, "n1", upgrading(1)).write(1000, "n1", upgrading(1)).write(1500, "n1", verifying(1));
    log.write(2000, "n1", verifying(1)).write(2500, "n1", succeeded(1)).write(2600, "n2", upgrading(2));
    CHECK(find_violations(log.parsed(), {}, {}).empty());
  }

  TEST_CASE("I3: a step without a lease is caught") {
    auto vs = find_violations(clean_rollout().parsed(), {step(150, "n2", "install", 0)}, {});
    REQUIRE(names(vs) == std::vector<std::string>{"I3"});
    CHECK(to_string(vs[0]).find("without a lease (entry is waiting)") != std::string::npos);
  }

  TEST_CASE("I3: a step with a stale epoch is caught") {
    auto vs = find_violations(clean_rollout().parsed(), {step(1700, "n2", "install", 1)}, {});
    REQUIRE(names(vs) == std::vector<std::string>{"I3"});
    CHECK(to_string(vs[0]).find("stale epoch") != std::string::npos);
  }

  TEST_CASE("I3: a step after the lease expired is caught") {
    HubLog log;
    log.write(0, "n1", upgrading(1));
    CHECK(find_violations(log.parsed(), {step(2900, "n1", "install", 1)}, {}).empty());
    auto vs = find_violations(log.parsed(), {step(3100, "n1", "install", 1)}, {});
    REQUIRE(names(vs) == std::vector<std::string>{"I3"});
    CHECK(to_string(vs[0]).find("expired") != std::string::npos);
  }

  TEST_CASE("I3: a step while another entry holds a live lease with a higher epoch is caught") {
    HubLog log;
    log.write(0, "n1", upgrading(1)).write(3500, "n2", upgrading(2));
    // n1's own lease expired at 3000 and n2 holds epoch 2: both reasons are reported.
    auto vs = find_violations(log.parsed(), {step(3600, "n1", "restart", 1)}, {});
    CHECK(names(vs) == std::vector<std::string>{"I3", "I3"});
  }

  TEST_CASE("I3: a step before the first logged write, or in an unknown group, is caught") {
    CHECK(names(find_violations(clean_rollout().parsed(), {step(-5, "n1", "install", 1)}, {})) ==
          std::vector<std::string>{"I3"});
    Step s = step(300, "n1", "install", 1);
    s.group = "other";
    CHECK(names(find_violations(clean_rollout().parsed(), {s}, {})) == std::vector<std::string>{"I3"});
  }

  TEST_CASE("I3: steps of a node in no group need no lease") {
    Step s = step(300, "n4", "install", 0);
    s.group = "";
    CHECK(find_violations(clean_rollout().parsed(), {s}, {}).empty());
  }

  TEST_CASE("I3 (amended): two members inside a disruptive step at once, lease or not, are caught") {
    auto phased = [](std::int64_t ms, const std::string& node, const std::string& what, std::int64_t epoch,
                     bool end) {
      Step s = step(ms, node, what, epoch);
      s.phased = true;
      s.end = end;
      return s;
    };
    // n1's install (begun under its lease at 300) runs on until 1700, past a
    // force-release; n2 begins its install at 1650 under its own lease.
    HubLog log;
    log.write(0, "n1", upgrading(1)).write(1000, "n1", waiting(1)).write(1600, "n2", upgrading(2));
    std::vector<Step> overlapping{
        phased(300, "n1", "install", 1, false), phased(1700, "n1", "install", 1, true),
        phased(1650, "n2", "install", 2, false), phased(2000, "n2", "install", 2, true)};
    auto vs = find_violations(log.parsed(), overlapping, {});
    REQUIRE(names(vs) == std::vector<std::string>{"I3"});
    CHECK(vs[0].text.find("2 members inside a disruptive step") != std::string::npos);
    // The same steps one after the other pass.
    std::vector<Step> serial{phased(300, "n1", "install", 1, false), phased(1500, "n1", "install", 1, true),
                             phased(1650, "n2", "install", 2, false), phased(2000, "n2", "install", 2, true)};
    CHECK(find_violations(log.parsed(), serial, {}).empty());
    // A begin without an end (its process died mid-step) lasts until the lease of the
    // node's last write has run out (3 s here: n1 last wrote at 1000).
    std::vector<Step> unended{phased(300, "n1", "install", 1, false), phased(1650, "n2", "install", 2, false),
                              phased(2000, "n2", "install", 2, true)};
    CHECK(names(find_violations(log.parsed(), unended, {})) == std::vector<std::string>{"I3"});
    std::vector<Step> after_lease{phased(300, "n1", "install", 1, false),
                                  phased(4100, "n2", "install", 2, false),
                                  phased(4200, "n2", "install", 2, true)};
    HubLog later;
    later.write(0, "n1", upgrading(1)).write(1000, "n1", upgrading(1)).write(4050, "n2", upgrading(2));
    CHECK(find_violations(later.parsed(), after_lease, {}).empty());
    // A node removed from the group (its entry dropped) no longer takes a place in
    // it, though its install runs on: n1 is removed at 1600, n2 begins at 1650.
    HubLog removal;
    removal.write(0, "n1", upgrading(1)).write(1000, "n1", upgrading(1));
    removal.members = {"n2", "n3"};
    removal.drop(1600, "n1");
    removal.write(1620, "n2", upgrading(2));
    CHECK(find_violations(removal.parsed(), overlapping, {}).empty());
    // A phase other than begin/end is malformed.
    auto bad = parse_steps(R"({"tUs":1,"node":"n1","group":"g","step":"install","epoch":1,"phase":"middle"})"
                           "\n",
                           "steps.jsonl");
    CHECK_FALSE(bad.has_value());
  }

  TEST_CASE(
      "I1/I2: upgrading without a lease (a fenced step still running) holds no lease and acquires nothing") {
    HubLog log;
    E leaseless = upgrading(1);
    leaseless.lease_seconds = 0;
    log.write(0, "n1", upgrading(1)).write(100, "n1", leaseless).write(200, "n2", upgrading(2));
    CHECK(find_violations(log.parsed(), {}, {}).empty());
  }

  TEST_CASE("I4: a member stuck upgrading at the end is caught") {
    HubLog log = clean_rollout();
    log.write(5000, "n1", upgrading(4));
    Options opts;
    opts.final_state = true;
    auto vs = find_violations(log.parsed(), {}, opts);
    // n1 holds a lease, and it is not at a succeeded/idle state.
    CHECK(names(vs) == std::vector<std::string>{"I4", "I4"});
    CHECK(to_string(vs[0]).find("left holding") != std::string::npos);
    // Without --final, I4 is not judged.
    CHECK(find_violations(log.parsed(), {}, {}).empty());
  }

  TEST_CASE("I4: a member below the target in a group that is not halted is caught") {
    HubLog log;
    log.write(0, "n1", succeeded(1)).write(10, "n2", succeeded(2)).write(20, "n3", waiting(2));
    Options opts;
    opts.final_state = true;
    auto vs = find_violations(log.parsed(), {}, opts);
    REQUIRE(names(vs) == std::vector<std::string>{"I4"});
    CHECK(to_string(vs[0]).find("n3 ends waiting") != std::string::npos);
    opts.target = "3.0.0";  // an explicit target wins over the highest seen
    CHECK(find_violations(log.parsed(), {}, opts).size() == 3);
  }

  TEST_CASE("I4: a halted group needs a failed/rolledback entry with a message") {
    HubLog log;
    log.write(0, "n1", succeeded(1)).write(10, "n3", waiting(1));
    Options opts;
    opts.final_state = true;
    SUBCASE("with a message it is a valid end") {
      log.write(20, "n2", E{"", State::rolledback, 2, "1.0.0", "2.0.0", "health check failed: exit 1"});
      CHECK(find_violations(log.parsed(), {}, opts).empty());
    }
    SUBCASE("with an empty message it is caught") {
      log.write(20, "n2", E{"", State::failed, 2, "1.0.0", "2.0.0", ""});
      auto vs = find_violations(log.parsed(), {}, opts);
      REQUIRE(names(vs) == std::vector<std::string>{"I4"});
      CHECK(to_string(vs[0]).find("empty message") != std::string::npos);
    }
  }

  TEST_CASE("I4: a removed member does not count, a deleted group is not judged") {
    HubLog log = clean_rollout();
    log.write(5000, "n3", waiting(3));
    log.members = {"n1", "n2"};
    log.drop(5100, "n3");
    Options opts;
    opts.final_state = true;
    CHECK(find_violations(log.parsed(), {}, opts).empty());
    log.members = {"n1", "n2", "n3"};
    log.write(5200, "n3", upgrading(9));
    log.op(5300, "group_delete");
    CHECK(find_violations(log.parsed(), {}, opts).empty());
  }

  TEST_CASE("malformed input is an error naming file and line") {
    std::string text = clean_rollout().text();
    SUBCASE("not JSON") {
      auto r = parse_hub_log("\n" + text.substr(0, text.find('\n') + 1) + "{\"seq\":\n", "hub.jsonl");
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message.find("hub.jsonl:3") == 0);
    }
    SUBCASE("a field of the wrong type") {
      auto r = parse_hub_log(
          "{\"seq\":1,\"tUs\":\"x\",\"org\":\"o\",\"group\":\"g\",\"revision\":1,\"op\":\"members\"}\n",
          "hub.jsonl");
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message.find("hub.jsonl:1") == 0);
      CHECK(r.error().message.find("tUs") != std::string::npos);
    }
    SUBCASE("an unknown entry state") {
      auto r = parse_hub_log(
          "{\"seq\":1,\"tUs\":1,\"org\":\"o\",\"group\":\"g\",\"revision\":1,\"op\":\"write_entry\","
          "\"agentUpgrade\":{\"n1\":{\"state\":\"sleeping\"}}}",
          "hub.jsonl");
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message.find("agentUpgrade.n1") != std::string::npos);
    }
    SUBCASE("a step line without an epoch") {
      auto r =
          parse_steps("{\"tUs\":1,\"node\":\"n1\",\"group\":\"g\",\"step\":\"install\"}\n", "steps.jsonl");
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message.find("steps.jsonl:1") == 0);
    }
    SUBCASE("an unreadable file") {
      auto r = check_files("/nonexistent/hub.jsonl", {}, {});
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message.find("/nonexistent/hub.jsonl") != std::string::npos);
    }
  }

  TEST_CASE("versions compare by numeric parts") {
    CHECK(compare_versions("2.10.0", "2.9.1") > 0);
    CHECK(compare_versions("2.0", "2.0.0") == 0);
    CHECK(compare_versions("1.4.5-123", "1.4.5-99") > 0);
    CHECK(compare_versions("1.0.0", "1.0.1") < 0);
  }
}
