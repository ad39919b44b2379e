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
