// Bad answers from the hub (malformed, truncated, wrongly typed or oversized
// bodies; 403, 404, 500): each is a clear error in agentd's log, nothing is
// written to the group, nothing on disk changes, and the rollout proceeds once
// the hub behaves again.
#include <cjson/cJSON.h>

#include "common.h"

using namespace agentd;
using namespace agentd::it;

namespace {

// An admin write to the group: every member gets a change notice and reads the
// group at once, so each fault is met within a poll, not an idle heartbeat.
void poke(Rollout& r) {
  GroupDocument d = r.group();
  auto res = r.hub().request("PUT", "/v1/orgs/o/hagroups/g/agentupgrade", R"({"maxConcurrent":1})",
                             std::nullopt, {{"If-Match", "\"" + std::to_string(d.revision) + "\""}});
  REQUIRE_MESSAGE(res.status == 201, res.body);
}

// The member's state file without pendingWriteId: a heartbeat that happens to
// be sent while the hub misbehaves records its writeId there (protocol.md §4.6),
// which is bookkeeping, not a change of state.
std::string state_without_pending(const std::string& path) {
  std::string text = read_file(path);
  auto j = json::parse(text, "state file");
  if (!j) return text;
  cJSON_DeleteItemFromObjectCaseSensitive(j->get(), "pendingWriteId");
  return json::print(j->get());
}

std::size_t lines(const std::string& path) {
  std::string text = read_file(path);
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("bad answers from the hub: a clear error, nothing written or lost, recovery afterwards") {
    RolloutOptions o;
    o.members = 2;
    o.publish = false;
    Rollout r(o);
    r.start_all();
    REQUIRE_MESSAGE(
        r.wait_group([](const GroupDocument& d) { return d.entries.size() == 2; }, deadline_in(30s)),
        r.diagnostics());

    struct Case {
      const char* name;
      Faults faults;
      const char* expect;  // in each member's log
    };
    auto corrupt = [](const char* how) {
      Faults f;
      f.corrupt = how;
      return f;
    };
    auto status = [](int code) {
      Faults f;
      f.error_rate = 1.0;
      f.error_status = code;
      return f;
    };
    const Case cases[] = {
        {"truncated JSON", corrupt("truncated"), "malformed JSON in group document"},
        {"malformed JSON", corrupt("malformed"), "malformed JSON in group document"},
        {"wrong types", corrupt("wrong-types"), "must be"},
        {"oversized", corrupt("oversized"), "too-large"},
        {"403", status(403), "cannot coordinate group g"},
        {"404", status(404), "not-found"},
        {"500", status(500), "HTTP 500"},
    };
    for (const Case& c : cases) {
      CAPTURE(std::string(c.name));
      std::vector<std::size_t> log_sizes;
      for (auto& m : r.members()) log_sizes.push_back(read_file(m->log_path()).size());
      poke(r);
      r.hub().set_faults(c.faults);
      // A member's write that the hub took before the faults may still be on its way
      // into the member's state file: start from a moment when nothing moves.
      auto snapshot = [&] {
        std::vector<std::string> out;
        for (auto& m : r.members()) out.push_back(state_without_pending(m->state_dir() + "/state.json"));
        out.push_back(std::to_string(lines(r.hub().write_log_path())));
        return out;
      };
      std::vector<std::string> states = snapshot();
      REQUIRE(poll_until(
          deadline_in(10s),
          [&] {
            auto now = snapshot();
            bool same = now == states;
            states = std::move(now);
            return same;
          },
          300ms));
      std::size_t writes_before = lines(r.hub().write_log_path());
      poke(r);  // root is spared by the faults
      bool reported = poll_until(deadline_in(20s), [&] {
        for (std::size_t i = 0; i < r.size(); ++i)
          if (read_file(r.member(i).log_path()).substr(log_sizes[i]).find(c.expect) == std::string::npos)
            return false;
        return true;
      });
      CHECK_MESSAGE(reported, r.diagnostics(15));
      // Only the admin's own pokes reached the group; no member wrote anything.
      CHECK(lines(r.hub().write_log_path()) == writes_before + 1);
      for (std::size_t i = 0; i < r.size(); ++i) {
        CHECK(r.member(i).running());
        CHECK(state_without_pending(r.member(i).state_dir() + "/state.json") == states[i]);
      }
      r.hub().set_faults({});
    }

    // The hub behaves again: a new version rolls out as usual.
    r.publish("2.0.0");
    require_done(r, "2.0.0");
    check_invariants(r, true);
  }
}
