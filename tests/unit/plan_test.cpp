// Choosing the target version from node management policies (exchange-api.md §4, §5).
#include "upgrade/plan.h"

#include <doctest/doctest.h>

#include <map>

using namespace agentd;

namespace {
ManagementPolicy policy(const std::string& id, const std::string& manifest) {
  ManagementPolicy p;
  p.id = id;
  p.enabled = true;
  p.agent_upgrade.manifest = manifest;
  return p;
}

struct Manifests {
  std::map<std::string, std::string> versions;  // manifest ref -> softwareUpgrade.version
  ManifestFetcher fetcher() const {
    return [this](const std::string& ref) -> Result<Manifest> {
      auto it = versions.find(ref);
      if (it == versions.end()) return fail(Errc::not_found, "no manifest " + ref);
      Manifest m;
      m.software.version = it->second;
      return m;
    };
  }
};

const Wall kNow = Wall{std::chrono::seconds{1'795'636'800}};  // 2026-11-25T20:00:00Z
}  // namespace

TEST_SUITE("plan") {
  TEST_CASE("versions compare numerically, pre-releases before the release") {
    CHECK(compare_versions("2.10.0", "2.9.9") > 0);
    CHECK(compare_versions("2.0", "2.0.0") == 0);
    CHECK(compare_versions("1.2.0-rc1", "1.2.0") < 0);
    CHECK(compare_versions("1.2.0", "1.2.0-rc1") > 0);
    CHECK(compare_versions("1.2.0-rc1", "1.2.0-rc2") < 0);
    CHECK(compare_versions("3", "2.99") > 0);
  }

  TEST_CASE("an enabled policy with an exact version names the target") {
    NodeRecord node;
    Manifests m{{{"org/m1", "2.0.0"}}};
    auto plan = choose_target(node, {policy("org/p1", "org/m1")}, {}, "1.0.0", kNow, m.fetcher());
    REQUIRE(plan);
    CHECK(plan->version == "2.0.0");
    CHECK(plan->policy == "org/p1");
    CHECK(plan->reason.find("org/p1") != std::string::npos);
  }

  TEST_CASE("disabled, other-pattern, future-start and unreadable policies do not apply") {
    NodeRecord node;
    node.pattern = "org/pat";
    Manifests m{{{"m1", "2.0.0"}, {"m2", "3.0.0"}, {"m3", "4.0.0"}}};
    auto disabled = policy("org/a", "m1");
    disabled.enabled = false;
    auto other = policy("org/b", "m2");
    other.patterns = {"org/other"};
    auto future = policy("org/c", "m3");
    future.start = "2027-01-01T00:00:00Z";
    auto missing = policy("org/d", "nope");
    auto plan = choose_target(node, {disabled, other, future, missing}, {}, "1.0.0", kNow, m.fetcher());
    REQUIRE(plan);
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("starts at") != std::string::npos);
    CHECK(plan->reason.find("nope") != std::string::npos);
    auto mine = policy("org/e", "m2");
    mine.patterns = {"org/pat"};
    auto past = policy("org/f", "m1");
    past.start = "2026-11-25T19:00:00Z";
    plan = choose_target(node, {mine, past}, {}, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version == "3.0.0");
  }

  TEST_CASE("'latest' resolves to the highest published version") {
    NodeRecord node;
    Manifests m{{{"m", "latest"}}};
    auto plan =
        choose_target(node, {policy("org/p", "m")}, {"2.9.0", "2.10.1", "2.10.0"}, "1.0", kNow, m.fetcher());
    CHECK(plan->version == "2.10.1");
    plan = choose_target(node, {policy("org/p", "m")}, {}, "1.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("no agent versions are published") != std::string::npos);
  }

  TEST_CASE("no downgrade unless the policy allows it; ranges are reported, not guessed") {
    NodeRecord node;
    Manifests m{{{"old", "1.0.0"}, {"range", "[2.0.0,3.0.0)"}}};
    auto p = policy("org/p", "old");
    auto plan = choose_target(node, {p}, {}, "2.0.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("downgrade") != std::string::npos);
    p.agent_upgrade.allow_downgrade = true;
    plan = choose_target(node, {p}, {}, "2.0.0", kNow, m.fetcher());
    CHECK(plan->version == "1.0.0");
    plan = choose_target(node, {policy("org/r", "range")}, {}, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("not supported") != std::string::npos);
  }

  TEST_CASE("of several applicable policies the highest version wins") {
    NodeRecord node;
    Manifests m{{{"a", "2.1.0"}, {"b", "2.3.0"}, {"c", "2.2.0"}}};
    auto plan = choose_target(node, {policy("org/a", "a"), policy("org/b", "b"), policy("org/c", "c")}, {},
                              "2.0.0", kNow, m.fetcher());
    CHECK(plan->version == "2.3.0");
    CHECK(plan->policy == "org/b");
  }
}
