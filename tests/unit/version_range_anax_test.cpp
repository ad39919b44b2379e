// anax's own test vectors for versions and version ranges, run through agentd's
// API so that the two stay in step. Source: open-horizon/anax
// semanticversion/version_test.go at 2f3fa5a506d6565fa68858b7963450567ddda114;
// each group cites the Go lines it copies. Where anax returns an error for a
// version that is not one, agentd's VersionRange::contains says false and
// compare_versions returns Errc::parse.
//
// Not copied: TestReCalcExpression, TestIntersectsWith and TestLimitCeiling
// (version_test.go:390-544) test anax functions agentd has no use for
// (normalising, intersecting and re-capping ranges).
#include <doctest/doctest.h>

#include <initializer_list>

#include "upgrade/version_range.h"

using namespace agentd;

namespace {
using List = std::initializer_list<const char*>;

// Is_within_range: in, not in, and "error" (not a version: never in).
void check_range(const char* expr, List in, List out, List invalid) {
  CAPTURE(expr);
  auto r = parse_version_range(expr);
  REQUIRE(r);
  for (const char* v : in) {
    CAPTURE(v);
    CHECK(r->contains(v));
  }
  for (const char* v : out) {
    CAPTURE(v);
    CHECK(is_version_string(v));
    CHECK_FALSE(r->contains(v));
  }
  for (const char* v : invalid) {
    CAPTURE(v);
    CHECK_FALSE(is_version_string(v));
    CHECK_FALSE(r->contains(v));
  }
}

// CompareVersions(lower, higher) is -1 and the other way round +1.
void check_lower(const char* lower, const char* higher) {
  CAPTURE(lower);
  CAPTURE(higher);
  CHECK(compare_versions(lower, higher) == -1);
  CHECK(compare_versions(higher, lower) == 1);
}
}  // namespace

TEST_SUITE("version_range") {
  TEST_CASE("anax TestConstructor: malformed expressions are refused (version_test.go:14-76)") {
    auto r = parse_version_range("1.2.3");  // version_test.go:15-18
    REQUIRE(r);
    CHECK(r->to_string() == "[1.2.3,INFINITY)");
    for (const char* bad : {"",
                            "a",
                            "1a",
                            "1.2.a",
                            "[1.2.3",
                            "[1.2.3]",
                            "(1.2.3",
                            "(1.2.3)",
                            "1a.2.3",
                            "1.2.3.4",
                            "1..2..3..4",
                            "1.2.3.",
                            "1.2.3,",
                            "1,2a",
                            "1,1.2.3.a",
                            "1,1.2..3",
                            "1,1a.2.3",
                            ".1,.2",
                            "1.2.3, 1.2.3",
                            "[1.2,3.4)a",
                            "[1.2,3.4a)",
                            "[1.2.3.4,3.4)",
                            "(1.2,3..4]",
                            "[(1.2,3.4)",
                            "[1.2,3.4))",
                            "[1.2,3.4,5.6)",
                            "1.2,3.4",
                            "[1.2,3.4"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_version_range(bad));
    }
  }

  TEST_CASE("anax TestPositive: well-formed expressions are accepted (version_test.go:80-120)") {
    for (const char* good :
         {"1", "1.1", "1.1.1", "[1,2]", "[1.1,2.2]", "[1.1.1,2.2.2]", "(1,2)", "(1.1,2.2)", "(1.1.1,2.2.2)",
          "[1,2)", "[1.1,2.2)", "[1.1.1,2.2.2)", "(1,2]", "(1.1,2.2]", "(1.1.1,2.2.2]",
          "(1.1-alpha,2.2-beta]", "(1.1-a-b,2]", "(1.1-a-b,2.01.2]", "(1.02,2]"}) {
      CAPTURE(good);
      CHECK(parse_version_range(good));
    }
  }

  TEST_CASE("anax TestRanges1: both ends inclusive (version_test.go:125-164)") {
    check_range(
        "[1,2]",
        {"1", "2", "1.0", "2.0", "1.0.0", "2.0.0", "1.1", "1.9", "1.0.1", "1.1.1", "1.1.01", "1.09.0"},
        {"2.1", "2.01"}, {"1.a", "2.a", ""});
  }

  TEST_CASE("anax TestRanges2: start inclusive, end exclusive (version_test.go:169-210)") {
    check_range("[1,2)",
                {"1", "1.0", "1.0.0", "1.1", "1.9", "1.0.1", "1.1.1", "1.01.90-z", "1.1.1-custom-tag"},
                {"2", "2.0", "2.0.0", "2.1", "2.1-a", "0.0.1-beta"}, {"1.a", "2.a", "1.2a"});
  }

  TEST_CASE("anax TestRanges3: start exclusive, end inclusive (version_test.go:216-253)") {
    check_range("(1,2]", {"2", "2.0", "2.0.0", "1.1", "1.9", "1.0.1", "1.1.1", "1.1.1-beta4"},
                {"1", "1.0", "1.0.0", "2.1", "2.1-tag", "0.0.01"}, {"1.a", "2.a"});
  }

  TEST_CASE("anax TestRanges4: both ends exclusive (version_test.go:258-295)") {
    check_range("(1,2)", {"2.0.0-beta", "1.1", "1.9", "1.0.1", "1.1.1", "1.1.1-prerelease"},
                {"1", "2", "1.0", "2.0", "1.0.0", "2.0.0", "2.1", "0.0.1"}, {"1.a", "2.a"});
  }

  TEST_CASE("anax TestRanges5: up to INFINITY (version_test.go:299-316)") {
    check_range("[1,INFINITY)", {"1", "1.5.0", "2.5.0", "1.5.1", "1.46.71-alpha"}, {"0.03.1"}, {});
  }

  TEST_CASE("anax TestVersionExpressionSuccess (version_test.go:320-338)") {
    for (const char* expr :
         {"[1.2.3,INFINITY)", "[1.2.3,4.5.6)", "[1.2.3,4.5.6]", "(1.2.3,INFINITY)", "(1.2.3,4.5.6]",
          "(1.2.0-a,1.2.0-z]", "(1.2-test,1.2-release]", "(1.0,1.2-beta]"}) {
      CAPTURE(expr);
      CHECK(is_version_range_expression(expr));
    }
  }

  TEST_CASE("anax TestVersionExpressionFailure: both ends must be versions (version_test.go:342-370)") {
    for (const char* expr : {"1", "1.2", "1.2.3", "[1.2)", "1,1", "(1", "(1,", "a", "[a,2]", "(a,b)",
                             "(1.2.3,a]", "(1.1.1,1.2a]", "(1-b,a-b]"}) {
      CAPTURE(expr);
      CHECK_FALSE(is_version_range_expression(expr));
    }
  }

  TEST_CASE("anax TestIsVersionString (version_test.go:373-387)") {
    for (const char* v : {"1.0", "1.2", "1.234.567", "3.0.0", "234", "1.2.03", "1.02.3", "1.2.3-abc",
                          "1.0-abc", "1-a", "1.2.0-testing", "1-a", "1.0.0-1-a"}) {
      CAPTURE(v);
      CHECK(is_version_string(v));
    }
    for (const char* v : {"1.0.0.1", "1.2.3a", "[1.2, 1.3]", "1.2.a", "1.-a", "1.0.1-d*s"}) {
      CAPTURE(v);
      CHECK_FALSE(is_version_string(v));
    }
  }

  TEST_CASE("anax TestCompareVersions (version_test.go:547-658)") {
    check_lower("1", "2");                                                                   // :548-555
    check_lower("1.5", "2.0.5");                                                             // :557-564
    check_lower("0.9", "0.10");                                                              // :566-573
    check_lower("1.0.9", "1.0.10");                                                          // :575-582
    check_lower("1.0.9", "INFINITY");                                                        // :584-591
    check_lower("1.0.1-a", "1.0.1-b");                                                       // :593-600
    check_lower("1.0.1-c", "2.0.1-a");                                                       // :602-609
    CHECK(compare_versions("INFINITY", "INFINITY") == 0);                                    // :611-615
    for (auto [a, b] : {std::pair{"2.0", "2.0.0"}, {"2.0-a", "2.0.0-a"}, {"2-a", "2-a"}}) {  // :617-642
      CAPTURE(a);
      CAPTURE(b);
      CHECK(compare_versions(a, b) == 0);
      CHECK(compare_versions(b, a) == 0);
    }
    for (const char* bad : {"2.0.x", "2.0.1x", "[2.0, 1.1)"}) {  // :644-657
      CAPTURE(bad);
      auto r = compare_versions(bad, "2.0.0");
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::parse);
    }
  }

  TEST_CASE("anax TestCompareVersionsWithPrerelease (version_test.go:661-751)") {
    check_lower("1.30.0-alpha", "1.30.0");
    check_lower("1.30.0-alpha.1", "1.30.0-beta");
    check_lower("1.30.0-990", "1.30.0-1000");
    check_lower("1.30.0-alpha.990", "1.30.0-alpha.1000");
    check_lower("1.30.0-alpha", "1.30.0-alpha.990");
    check_lower("1.30.0-alpha.990", "1.30.0-alpha.990.1");
    check_lower("1.30.0-alpha.990.1.5", "1.30.0-alpha.990.beta");
    check_lower("1.30.0-alpha.990.1.5", "1.30.0-alpha-990.1.5");
    check_lower("1-alpha.990.1.5", "1.30-alpha-990.1.5");
    check_lower("1-alpha", "1-alpha-990.1.5");
  }
}
