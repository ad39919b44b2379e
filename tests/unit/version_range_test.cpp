// Open Horizon version ranges (anax semanticversion/version.go).
#include "upgrade/version_range.h"

#include <doctest/doctest.h>

using namespace agentd;

TEST_SUITE("version_range") {
  TEST_CASE("version strings are 1-3 numbers with an optional pre-release") {
    CHECK(is_version_string("1"));
    CHECK(is_version_string("1.2"));
    CHECK(is_version_string("1.2.3"));
    CHECK(is_version_string("01.2.3-rc.1-x"));
    CHECK_FALSE(is_version_string(""));
    CHECK_FALSE(is_version_string("1.2.3.4"));
    CHECK_FALSE(is_version_string("1..2"));
    CHECK_FALSE(is_version_string("1.2."));
    CHECK_FALSE(is_version_string("v1.2"));
    CHECK_FALSE(is_version_string("1.2.3-rc_1"));
    CHECK_FALSE(is_version_string("1.2.3+build"));
    CHECK_FALSE(is_version_string("INFINITY"));
  }

  TEST_CASE("bounds are inclusive or exclusive as bracketed") {
    auto r = parse_version_range("[1.0.0,2.0.0)");
    REQUIRE(r);
    CHECK(r->contains("1.0.0"));
    CHECK(r->contains("1.0"));  // same version, normalised
    CHECK(r->contains("1.9.99"));
    CHECK_FALSE(r->contains("2.0.0"));
    CHECK_FALSE(r->contains("0.9.9"));
    CHECK(r->contains("2.0.0-rc1"));  // a pre-release sorts before its release
    CHECK(r->to_string() == "[1.0.0,2.0.0)");

    r = parse_version_range("(1.0.0,2.0.0]");
    REQUIRE(r);
    CHECK_FALSE(r->contains("1.0.0"));
    CHECK(r->contains("1.0.1"));
    CHECK(r->contains("2.0.0"));
    CHECK_FALSE(r->contains("2.0.1"));
    CHECK_FALSE(r->contains("not-a-version"));
    CHECK_FALSE(r->contains(""));
  }

  TEST_CASE("a bare version and INFINITY are open ranges") {
    auto r = parse_version_range("1.2.3");
    REQUIRE(r);
    CHECK(r->end == kInfinity);
    CHECK(r->contains("1.2.3"));
    CHECK(r->contains("99.0.0"));
    CHECK_FALSE(r->contains("1.2.2"));
    CHECK(r->to_string() == "[1.2.3,INFINITY)");
    r = parse_version_range("(1.2.3,INFINITY)");
    REQUIRE(r);
    CHECK_FALSE(r->contains("1.2.3"));
    CHECK(r->contains("1.2.4"));
    r = parse_version_range("[1.2.3,INFINITY]");
    REQUIRE(r);
    CHECK_FALSE(r->end_inclusive);  // as anax: INFINITY is never a member
  }

  TEST_CASE("malformed ranges are parse errors naming the expression") {
    for (const char* bad : {"", "[1.0.0, 2.0.0)", "[1.0.0,2.0.0", "1.0.0,2.0.0)", "[1.0.0)", "[,2.0.0)",
                            "[1.0.0,)", "[1.0.0,2.0.0,3.0.0)", "[a,2.0.0)", "[1.0.0,b)", "[INFINITY,2.0.0)",
                            "latest", "[", "(", "]", "[]", "1.2.3.4", "x"}) {
      CAPTURE(bad);
      auto r = parse_version_range(bad);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::parse);
      CHECK(r.error().message.find(std::string("'") + bad + "'") != std::string::npos);
    }
  }

  TEST_CASE("only bracketed forms are range expressions") {
    CHECK(is_version_range_expression("[1.0.0,2.0.0)"));
    CHECK(is_version_range_expression("(1,INFINITY)"));
    CHECK_FALSE(is_version_range_expression("1.0.0"));
    CHECK_FALSE(is_version_range_expression("latest"));
    CHECK_FALSE(is_version_range_expression("[]"));
    CHECK_FALSE(is_version_range_expression("[1.0,x)"));  // both ends must be versions
    CHECK_FALSE(is_version_range_expression("[INFINITY,2.0)"));
  }

  TEST_CASE("versions compare numerically, pre-releases before the release") {
    CHECK(compare_versions("2.10.0", "2.9.9") == 1);
    CHECK(compare_versions("2.0", "2.0.0") == 0);
    CHECK(compare_versions("1.2.0-rc1", "1.2.0") == -1);
    CHECK(compare_versions("1.2.0", "1.2.0-rc1") == 1);
    CHECK(compare_versions("1.2.0-rc1", "1.2.0-rc2") == -1);
    CHECK(compare_versions("3", "2.99") == 1);
    // Semantic Versioning pre-release order (as anax ComparePrereleases).
    CHECK(compare_versions("1.0.0-alpha", "1.0.0-alpha.1") == -1);
    CHECK(compare_versions("1.0.0-alpha.1", "1.0.0-alpha.beta") == -1);
    CHECK(compare_versions("1.0.0-beta.2", "1.0.0-beta.11") == -1);
    CHECK(compare_versions("1.0.0-rc.1", "1.0.0") == -1);
    CHECK(compare_versions("1.0.0-beta.11", "1.0.0-beta.011") == 0);
    CHECK(compare_versions("99999999999999999999999.0", "1.0") == 1);
  }

  TEST_CASE("only versions and INFINITY compare; INFINITY is above every version") {
    CHECK(compare_versions("99999.0.0", kInfinity) == -1);
    CHECK(compare_versions(kInfinity, "0") == 1);
    CHECK(compare_versions(kInfinity, kInfinity) == 0);
    for (const char* bad : {"", "latest", "2.0.x", "1.2.3+b1", "1:2.0.0", "[1.0,2.0)", "infinity"}) {
      CAPTURE(bad);
      auto r = compare_versions(bad, "1.0.0");
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::parse);
      CHECK(r.error().message.find(std::string("'") + bad + "'") != std::string::npos);
      CHECK_FALSE(compare_versions("1.0.0", bad));
    }
  }

  TEST_CASE("package versions have a total order that agrees with compare_versions") {
    // Debian revisions, rpm releases and epochs are not anax versions.
    CHECK(compare_package_versions("2.0.0-1+deb12u2", "2.0.0-1+deb12u1") > 0);
    CHECK(compare_package_versions("2.31.0-1", "2.30.9") > 0);
    CHECK(compare_package_versions("2.31.0", "INFINITY") < 0);
    CHECK(compare_package_versions("INFINITY", "INFINITY") == 0);
    CHECK(compare_package_versions("garbage", "INFINITY") < 0);
    for (const char* a : {"1", "1.0.1", "2.0.0-rc.1", "2.0", "10.0.0-beta.11", kInfinity})
      for (const char* b : {"1.0", "1.0.1", "2.0.0", "2.0.0-rc.2", "10.0.0-beta.9", kInfinity}) {
        CAPTURE(a);
        CAPTURE(b);
        CHECK(compare_versions(a, b) == compare_package_versions(a, b));
      }
  }

  TEST_CASE("the highest published version inside the range is chosen") {
    auto r = parse_version_range("[2.0.0,3.0.0)");
    REQUIRE(r);
    std::vector<std::string> published{"1.9.0", "2.1.0", "2.10.0", "2.9.5", "3.0.0", "garbage", "2.11.0-rc1"};
    CHECK(highest_in_range(*r, published) == "2.11.0-rc1");
    published.pop_back();
    CHECK(highest_in_range(*r, published) == "2.10.0");
    CHECK_FALSE(highest_in_range(*r, {"1.0.0", "3.0.0"}));
    CHECK_FALSE(highest_in_range(*r, {}));
  }
}
