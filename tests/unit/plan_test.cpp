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
    disabled.patterns = {"org/pat"};
    auto other = policy("org/b", "m2");
    other.patterns = {"org/other"};
    auto future = policy("org/c", "m3");
    future.patterns = {"org/pat"};
    future.start = "2027-01-01T00:00:00Z";
    auto missing = policy("org/d", "nope");
    missing.patterns = {"org/pat"};
    auto plan = choose_target(node, {disabled, other, future, missing}, {}, "1.0.0", kNow, m.fetcher());
    REQUIRE(plan);
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("starts at") != std::string::npos);
    CHECK(plan->reason.find("nope") != std::string::npos);
    auto mine = policy("org/e", "m1");
    mine.patterns = {"org/pat"};
    mine.start = "2026-11-25T19:00:00Z";
    plan = choose_target(node, {mine}, {}, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version == "2.0.0");
    CHECK(plan->not_before == kNow - std::chrono::hours{1});
  }

  TEST_CASE("patterns: the node's org/pattern or its bare name; a pattern node ignores the rest") {
    NodeRecord node;
    node.pattern = "org/pat";
    Manifests m{{{"m1", "2.0.0"}, {"m2", "3.0.0"}, {"m3", "4.0.0"}}};
    auto bare = policy("org/a", "m1");
    bare.patterns = {"pat"};
    auto by_constraint = policy("org/b", "m2");
    by_constraint.constraints = {"purpose == x"};
    auto for_all = policy("org/c", "m3");  // neither patterns nor constraints
    Properties props{{"purpose", PropertyValue::of_string("x")}};
    auto plan =
        choose_target(node, props, {bare, by_constraint, for_all}, {}, "1.0.0", kNow, m.fetcher(), {});
    REQUIRE(plan);
    CHECK(plan->version == "2.0.0");
    CHECK(plan->policy == "org/a");
    // Without a pattern the node is chosen by constraints (none: every node).
    node.pattern.clear();
    plan = choose_target(node, props, {bare, by_constraint, for_all}, {}, "1.0.0", kNow, m.fetcher(), {});
    CHECK(plan->version == "4.0.0");
    plan = choose_target(node, props, {bare, by_constraint}, {}, "1.0.0", kNow, m.fetcher(), {});
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

  TEST_CASE("no downgrade unless the policy allows it") {
    NodeRecord node;
    Manifests m{{{"old", "1.0.0"}}};
    auto p = policy("org/p", "old");
    auto plan = choose_target(node, {p}, {}, "2.0.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("downgrade") != std::string::npos);
    p.agent_upgrade.allow_downgrade = true;
    plan = choose_target(node, {p}, {}, "2.0.0", kNow, m.fetcher(), DowngradeRule{"2.0.0", true});
    CHECK(plan->version == "1.0.0");
  }

  TEST_CASE("anti-rollback: the hub's allowDowngrade alone does not move the node below what it ran") {
    NodeRecord node;
    Manifests m{{{"old", "1.0.0"}, {"mid", "1.5.0"}}};
    auto p = policy("org/p", "old");
    p.agent_upgrade.allow_downgrade = true;
    auto plan = choose_target(node, {p}, {}, "2.0.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("does not allow downgrades (AGENTD_ALLOW_DOWNGRADE)") != std::string::npos);
    // Below the floor though above what runs now (a version this node ran before).
    auto mid = policy("org/mid", "mid");
    plan = choose_target(node, {mid}, {}, "1.0.0", kNow, m.fetcher(), DowngradeRule{"2.0.0", false});
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("1.5.0 would be a downgrade") != std::string::npos);
    mid.agent_upgrade.allow_downgrade = true;
    plan = choose_target(node, {mid}, {}, "1.0.0", kNow, m.fetcher(), DowngradeRule{"2.0.0", false});
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("1.5.0 is below 2.0.0") != std::string::npos);
    plan = choose_target(node, {mid}, {}, "1.0.0", kNow, m.fetcher(), DowngradeRule{"2.0.0", true});
    CHECK(plan->version == "1.5.0");
    // At or above the floor: an upgrade as ever.
    Manifests up{{{"new", "2.0.0"}}};
    plan = choose_target(node, {policy("org/n", "new")}, {}, "1.0.0", kNow, up.fetcher(),
                         DowngradeRule{"2.0.0", false});
    CHECK(plan->version == "2.0.0");
  }

  TEST_CASE("a version range resolves to the highest published version inside it") {
    NodeRecord node;
    Manifests m{
        {{"range", "[2.0.0,3.0.0)"}, {"open", "(2.5.0,INFINITY)"}, {"bad", "[2.0.0,x)"}, {"odd", "~2"}}};
    std::vector<std::string> published{"1.9.0", "2.4.0", "2.10.1", "3.0.0", "junk"};
    auto plan = choose_target(node, {policy("org/r", "range")}, published, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version == "2.10.1");
    plan = choose_target(node, {policy("org/r", "open")}, published, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version == "3.0.0");
    plan = choose_target(node, {policy("org/r", "range")}, {"1.0.0", "3.0.0"}, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("no published agent version is in [2.0.0,3.0.0)") != std::string::npos);
    // Malformed ranges and unknown forms are errors of that policy, not guesses.
    plan = choose_target(node, {policy("org/b", "bad"), policy("org/o", "odd")}, published, "1.0.0", kNow,
                         m.fetcher());
    CHECK(plan->version.empty());
    REQUIRE(plan->policy_errors.count("org/b") == 1);
    CHECK(plan->policy_errors.at("org/b").find("'x' is not a version") != std::string::npos);
    REQUIRE(plan->policy_errors.count("org/o") == 1);
    CHECK(plan->policy_errors.at("org/o").find("'~2'") != std::string::npos);
    // Downgrades within a range are still refused.
    plan = choose_target(node, {policy("org/r", "range")}, published, "2.20.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("downgrade") != std::string::npos);
  }

  TEST_CASE("constraints are evaluated against the node's policy properties") {
    NodeRecord node;
    Manifests m{{{"m1", "2.0.0"}, {"m2", "3.0.0"}}};
    auto amd = policy("org/amd", "m1");
    amd.constraints = {"openhorizon.arch == amd64", "openhorizon.memory >= 1024"};
    auto arm = policy("org/arm", "m2");
    arm.constraints = {"openhorizon.arch in \"arm,arm64\" OR purpose == canary"};
    Properties props{{"openhorizon.arch", PropertyValue::of_string("amd64")},
                     {"openhorizon.memory", PropertyValue::of_number(3918)}};
    auto plan = choose_target(node, props, {amd, arm}, {}, "1.0.0", kNow, m.fetcher(), {});
    REQUIRE(plan);
    CHECK(plan->version == "2.0.0");
    CHECK(plan->policy == "org/amd");
    props["purpose"] = PropertyValue::of_string("canary");
    plan = choose_target(node, props, {amd, arm}, {}, "1.0.0", kNow, m.fetcher(), {});
    CHECK(plan->version == "3.0.0");
    props["openhorizon.memory"] = PropertyValue::of_number(512);
    props.erase("purpose");
    plan = choose_target(node, props, {amd, arm}, {}, "1.0.0", kNow, m.fetcher(), {});
    CHECK(plan->version.empty());
    CHECK(plan->policy_errors.empty());
  }

  TEST_CASE("a constraint the language does not accept is that policy's error, not a crash") {
    NodeRecord node;
    Manifests m{{{"m1", "2.0.0"}, {"m2", "3.0.0"}}};
    auto broken = policy("org/broken", "m2");
    broken.constraints = {"purpose <> canary"};
    auto fine = policy("org/fine", "m1");
    fine.constraints = {"purpose == canary"};
    Properties props{{"purpose", PropertyValue::of_string("canary")}};
    auto plan = choose_target(node, props, {broken, fine}, {}, "1.0.0", kNow, m.fetcher(), {});
    REQUIRE(plan);
    CHECK(plan->version == "2.0.0");
    REQUIRE(plan->policy_errors.count("org/broken") == 1);
    CHECK(plan->policy_errors.at("org/broken").find("'purpose <> canary' column 10") != std::string::npos);
    CHECK(plan->reason.find("skipped org/broken: constraint") != std::string::npos);
  }

  TEST_CASE("without the node's properties, constraint policies are skipped as unknown") {
    NodeRecord node;
    Manifests m{{{"m1", "2.0.0"}}};
    auto p = policy("org/p", "m1");
    p.constraints = {"purpose == canary"};
    auto plan = choose_target(node, {p}, {}, "1.0.0", kNow, m.fetcher());
    REQUIRE(plan);
    CHECK(plan->version.empty());
    CHECK(plan->reason.find("org/p: the node's policy properties are not known yet") != std::string::npos);
    CHECK(plan->policy_errors.empty());
  }

  TEST_CASE("startWindow: not_before is the start plus a random delay within the window") {
    NodeRecord node;
    Manifests m{{{"m1", "2.0.0"}}};
    auto p = policy("org/p", "m1");
    p.start = "2026-11-25T19:00:00Z";
    p.start_window = 600;
    std::int64_t asked = 0;
    auto random = [&](std::int64_t n) {
      asked = n;
      return std::int64_t{123};
    };
    auto plan = choose_target(node, Properties{}, {p}, {}, "1.0.0", kNow, m.fetcher(), random);
    REQUIRE(plan);
    CHECK(asked == 600);
    CHECK(plan->not_before == kNow - std::chrono::hours{1} + std::chrono::seconds{123});
    CHECK(plan->reason == "policy org/p names 2.0.0 within a startWindow of 600s");
    // An out-of-range draw is clamped into [0, window).
    plan = choose_target(node, Properties{}, {p}, {}, "1.0.0", kNow, m.fetcher(),
                         [](std::int64_t n) { return n + 5; });
    CHECK(plan->not_before == kNow - std::chrono::hours{1} + std::chrono::seconds{599});
    // "now" starts at the evaluation time, whatever the hub's lastUpdated says
    // (a hub clock hours off must not delay or hurry the start).
    p.start = "now";
    p.last_updated = "2026-11-25T18:00:00.000000Z[UTC]";
    plan = choose_target(node, Properties{}, {p}, {}, "1.0.0", kNow, m.fetcher(),
                         [](std::int64_t) { return 0; });
    CHECK(plan->not_before == kNow);
    p.last_updated.clear();
    p.start_window = 0;
    asked = 0;
    plan = choose_target(node, Properties{}, {p}, {}, "1.0.0", kNow, m.fetcher(), random);
    CHECK(asked == 0);  // no window, no draw
    CHECK(plan->not_before == kNow);
    CHECK(plan->reason == "policy org/p names 2.0.0");
  }

  TEST_CASE("an unreadable start is that policy's error") {
    NodeRecord node;
    Manifests m{{{"m1", "2.0.0"}}};
    auto p = policy("org/p", "m1");
    p.start = "tomorrow";
    auto plan = choose_target(node, {p}, {}, "1.0.0", kNow, m.fetcher());
    CHECK(plan->version.empty());
    REQUIRE(plan->policy_errors.count("org/p") == 1);
    CHECK(plan->policy_errors.at("org/p").find("'tomorrow'") != std::string::npos);
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

TEST_SUITE("plan") {
  TEST_CASE("package versions name agent versions: revision, release and epoch") {
    CHECK(package_version_matches("2.0.0", "2.0.0"));
    CHECK(package_version_matches("2.0.0-1", "2.0.0"));    // Debian revision, rpm release
    CHECK(package_version_matches("1:2.0.0-1", "2.0.0"));  // with an epoch
    CHECK(package_version_matches("2.31.0-1598", "2.31.0-1598"));
    CHECK_FALSE(package_version_matches("2.0.0-1-2", "2.0.0"));
    CHECK_FALSE(package_version_matches("2.0.01", "2.0.0"));
    CHECK_FALSE(package_version_matches("2.0.0", "2.0.0-1"));
    CHECK_FALSE(package_version_matches("2.0.0-1", ""));

    const std::vector<std::string> published{"2.0.0", "1.0.0", "1.4.5-123"};
    CHECK(agent_version_of("1.0.0-1", published) == "1.0.0");  // rpm's VERSION-RELEASE
    CHECK(agent_version_of("1.4.5-123", published) == "1.4.5-123");
    CHECK(agent_version_of("3.0.0-1", published) == "3.0.0-1");  // not published: as it is
    CHECK(agent_version_of("1.0.0-1", {"1.0.0", "1.0.0-1"}) == "1.0.0-1");
  }
}
