#include "upgrade/health.h"

#include <doctest/doctest.h>

#include <string>

#include "support/fake_sleeper.h"
#include "support/fake_units.h"

using namespace agentd;
using namespace std::chrono_literals;

namespace {

// The hub's node read answers or fails on request; nothing else is asked.
class StubNodeSource final : public NodeSource {
 public:
  Result<std::int64_t> max_change_id() override { return 0; }
  Result<Changes> changes(std::int64_t, int) override { return Changes{}; }
  Result<NodeRecord> get_node() override {
    if (!error.empty()) return fail(Errc::http, error);
    return NodeRecord{};
  }
  Result<std::vector<ManagementPolicy>> list_management_policies() override { return {}; }
  Result<std::optional<Properties>> get_node_policy() override { return std::nullopt; }
  Result<std::vector<std::string>> agent_software_versions() override { return {}; }
  Result<Manifest> get_manifest(const std::string&) override { return Manifest{}; }
  std::string error;
};

struct Fixture {
  FakeClock clock;
  testing::FakeSleeper sleeper;
  testing::FakeUnitManager units;
  StubNodeSource hub;
  std::string version = "2.0.0";
  HealthCheck check() {
    sleeper.on_sleep = [this] { clock.advance(2s); };  // each wait is one retry
    HealthCheck h;
    h.installed_version = [this]() -> Result<std::string> { return version; };
    h.units = &units;
    h.agent_unit = "horizon.service";
    h.hub = &hub;
    h.clock = &clock;
    h.sleeper = &sleeper;
    h.timeout = 10s;
    h.retry = 2s;
    return h;
  }
};

}  // namespace

TEST_SUITE("health") {
  TEST_CASE("health_problem: version, unit, hub and the operator's command, in that order") {
    Fixture f;
    HealthCheck h = f.check();
    CHECK_FALSE(health_problem(h, "2.0.0"));
    CHECK(*health_problem(h, "2.1.0") == "the agent's package is at 2.0.0, expected 2.1.0");
    f.units.play_states({"failed"});
    CHECK(*health_problem(h, "2.0.0") == "horizon.service is failed");
    f.units.play_states({"active"});
    f.hub.error = "401";
    CHECK(*health_problem(h, "2.0.0") == "the hub does not answer with this node's credentials: 401");
    f.hub.error.clear();
    h.command = [] { return Status(fail(Errc::process, "health command exited with 1")); };
    CHECK(*health_problem(h, "2.0.0") == "health command exited with 1");
  }

  TEST_CASE("wait_healthy: retried until the unit is active, else the last problem at the deadline") {
    Fixture f;
    f.units.play_states({"activating", "activating", "active"});
    CHECK(wait_healthy(f.check(), "2.0.0"));
    f.units.play_states({"activating"});
    auto late = wait_healthy(f.check(), "2.0.0");
    CHECK(late.error().code == Errc::process);
    CHECK(late.error().message == "not healthy within 10 s: horizon.service is activating");
  }
}
