// The Open Horizon constraint language (anax externalpolicy/text_language,
// counter_party_properties.go); anax's own vectors are in constraints_anax_test.cpp.
#include "upgrade/constraints.h"

#include <doctest/doctest.h>

#include <random>

using namespace agentd;

namespace {
using P = PropertyValue;

bool holds(const std::string& expr, const Properties& props) {
  auto r = evaluate_constraint(expr, props);
  if (!r) FAIL_CHECK(r.error().message);
  return r.value_or(false);
}

Error error_of(const std::string& expr, const Properties& props = {}) {
  auto r = evaluate_constraint(expr, props);
  if (r) FAIL_CHECK("accepted: " << expr);
  return r ? Error{} : r.error();
}
}  // namespace

TEST_SUITE("constraints") {
  TEST_CASE("strings compare with ==, = and != and have no order") {
    Properties props{{"purpose", P::of_string("upgrade-test")}, {"label", P::of_string("a b")}};
    CHECK(holds("purpose == upgrade-test", props));
    CHECK(holds("purpose == \"upgrade-test\"", props));
    CHECK(holds("purpose=upgrade-test", props));
    CHECK(holds("purpose != other", props));
    CHECK_FALSE(holds("purpose != upgrade-test", props));
    CHECK_FALSE(holds("purpose == other", props));
    CHECK(holds("label == \"a b\"", props));
    CHECK_FALSE(holds("purpose < 5", props));
    CHECK_FALSE(holds("missing == upgrade-test", props));  // a missing property satisfies nothing
    CHECK_FALSE(holds("missing != upgrade-test", props));
  }

  TEST_CASE("in takes a comma-separated list in one quoted string") {
    Properties props{{"site", P::of_string("dog")}, {"tags", P::of_list({"red", "blue"})}};
    CHECK(holds("site in \"cat, dog, mouse\"", props));
    CHECK_FALSE(holds("site in \"cat,mouse\"", props));
    CHECK(holds("site in \"dog\"", props));
    CHECK(holds("tags in \"green,blue\"", props));  // any item of a list property
    CHECK_FALSE(holds("tags in \"green,yellow\"", props));
    CHECK(holds("tags == red", props));  // == on a list: is an item
    CHECK_FALSE(holds("tags != red", props));
    CHECK(holds("tags != green", props));
    CHECK(holds("sitein\"cat,dog\"", props));  // anax accepts the name glued to "in"
  }

  TEST_CASE("numbers compare numerically") {
    Properties props{{"openhorizon.cpu", P::of_number(4)}, {"ratio", P::of_number(0.5)}};
    CHECK(holds("openhorizon.cpu == 4", props));
    CHECK(holds("openhorizon.cpu = 4.0", props));
    CHECK(holds("openhorizon.cpu >= 4 && openhorizon.cpu <= 4", props));
    CHECK(holds("openhorizon.cpu > 3.5", props));
    CHECK(holds("openhorizon.cpu < 10", props));
    CHECK(holds("openhorizon.cpu != 5", props));
    CHECK_FALSE(holds("openhorizon.cpu > 4", props));
    CHECK_FALSE(holds("openhorizon.cpu < -1", props));
    CHECK(holds("ratio < 1", props));
    CHECK_FALSE(holds("openhorizon.cpu == \"4\"", props));  // a quoted value is not a number (anax)
    CHECK_FALSE(holds("openhorizon.cpu == four", props));
  }

  TEST_CASE("booleans take true/false and == / != only") {
    Properties props{{"gpu", P::of_bool(true)}, {"nogps", P::of_bool(false)}};
    CHECK(holds("gpu == true", props));
    CHECK(holds("gpu = TRUE", props));
    CHECK(holds("nogps == false", props));
    CHECK(holds("nogps != true", props));
    CHECK_FALSE(holds("gpu == false", props));
    CHECK_FALSE(holds("gpu == yes", props));
    CHECK_FALSE(holds("gpu in \"true\"", props));
  }

  TEST_CASE("versions: == is textual, in takes a range or a bare version") {
    Properties props{{"version", P::of_version("2.1.5")}, {"plain", P::of_string("1.2.0")}};
    CHECK(holds("version == 2.1.5", props));
    CHECK_FALSE(holds("version == 2.1.6", props));
    CHECK(holds("version in [1.1.1,INFINITY)", props));
    CHECK(holds("version in [2.0.0,3.0.0)", props));
    CHECK_FALSE(holds("version in [2.0.0,2.1.5)", props));
    CHECK(holds("version in (2.0.0,2.1.5]", props));
    CHECK(holds("version in 2.1.5", props));  // [2.1.5,INFINITY)
    CHECK_FALSE(holds("version in 2.1.6", props));
    CHECK(holds("versionin[1.3.1,3.1.2)", props));
    CHECK(holds("plain in [1.0.0,2.0.0)", props));  // a version-looking string in a range
  }

  TEST_CASE("AND binds tighter than OR; parentheses group") {
    Properties props{{"a", P::of_string("1")}, {"b", P::of_string("1")}, {"c", P::of_string("0")}};
    CHECK(holds("a == 1 || b == 0 && c == 1", props));  // a || (b && c)
    CHECK_FALSE(holds("(a == 1 || b == 0) && c == 1", props));
    CHECK(holds("a == 0 OR b == 1 AND c == 0", props));
    CHECK_FALSE(holds("a == 0 OR b == 1 AND c == 1", props));
    CHECK(holds("((a == 1))", props));
    CHECK(holds("a==1&&b==1", props));
    CHECK(holds("  a == 1  ", props));
  }

  TEST_CASE("every constraint of the array must hold; a blank one holds") {
    Properties props{{"purpose", P::of_string("network-testing")}, {"group", P::of_string("bluenode")}};
    auto r = evaluate_constraints({"purpose == network-testing", "group == bluenode"}, props);
    REQUIRE(r);
    CHECK(*r);
    r = evaluate_constraints({"purpose == network-testing1", "group == bluenode"}, props);
    REQUIRE(r);
    CHECK_FALSE(*r);
    r = evaluate_constraints({}, props);
    REQUIRE(r);
    CHECK(*r);
    r = evaluate_constraints({"   "}, props);
    REQUIRE(r);
    CHECK(*r);
    // A false constraint does not hide a malformed one after it.
    r = evaluate_constraints({"group == x", "group ~ x"}, props);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::parse);
  }

  TEST_CASE("unsupported syntax is a parse error naming the expression and the column") {
    struct Case {
      const char* expr;
      const char* column;
      const char* says;
    };
    const Case cases[] = {
        {"purpose ~ x", "column 9", "expected one of"},
        {"NOT purpose == x", "column 5", "expected one of"},
        {"purpose ==", "column 11", "expression ends"},
        {"purpose == x AND", "column 17", "expression ends"},
        {"(purpose == x", "column 14", "expected ')'"},
        {"purpose == x)", "column 13", "unexpected ')'"},
        {"purpose == x y == z", "column 14", "unexpected 'y'"},
        {"purpose == \"x", "column 12", "unterminated quoted string"},
        {"cpu < many", "column 7", "need a number"},
        {"cpu >= \"4\"", "column 8", "need a number"},
        {"version == [1.0.0,2.0.0)", "column 12", "needs 'in'"},
        {"site == \"a,b\"", "column 9", "needs 'in'"},
        {"site in abc", "column 9", "'in' needs"},
        {"site in 5", "column 9", "'in' needs"},
        {"version in [1.0.0,2.0.0", "column 12", "unterminated version range"},
        {"version in [x,2.0.0)", "column 12", "'x' is not a version"},
        {"version in [1.0.0, 2.0.0)", "column 12", "whitespace"},
        {"()", "column 2", "expected a property name or '(', found ')'"},
        {"== x", "column 1", "expected a property name"},
        {"a == b || || c == d", "column 11", "expected a property name"},
    };
    for (const auto& c : cases) {
      std::string shown = c.expr;
      CAPTURE(shown);
      auto r = evaluate_constraint(c.expr, {});
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::parse);
      CHECK(r.error().message.find(std::string("'") + c.expr + "'") != std::string::npos);
      CAPTURE(r.error().message);
      CHECK(r.error().message.find(c.column) != std::string::npos);
      CHECK(r.error().message.find(c.says) != std::string::npos);
    }
  }

  TEST_CASE("there is no negation: '!' is a name character, as in anax's lexer") {
    auto r = evaluate_constraint("!purpose == x", {{"purpose", P::of_string("y")}});
    REQUIRE(r);
    CHECK_FALSE(*r);  // "!purpose" is another (missing) property
  }

  TEST_CASE("deep nesting is refused, not a stack overflow") {
    std::string deep(100000, '(');
    auto e = error_of(deep + "a == b" + std::string(100000, ')'));
    CHECK(e.message.find("nested too deeply") != std::string::npos);
    CHECK(e.message.size() < 400);  // the expression is shown shortened
    std::string ok = std::string(60, '(') + "a == b" + std::string(60, ')');
    CHECK(holds(ok, {{"a", P::of_string("b")}}));
  }

  TEST_CASE("garbage never crashes: every input evaluates or is a parse error") {
    std::mt19937 rng(20261125);
    const std::vector<std::string> pieces = {"a",
                                             "b",
                                             "cpu",
                                             "version",
                                             " ",
                                             "  ",
                                             "==",
                                             "=",
                                             "!=",
                                             "<",
                                             "<=",
                                             ">",
                                             ">=",
                                             "in",
                                             "AND",
                                             "OR",
                                             "&&",
                                             "||",
                                             "(",
                                             ")",
                                             "\"",
                                             "\"x,y\"",
                                             "[",
                                             "]",
                                             ",",
                                             "1",
                                             "-2.5",
                                             "1.2.3",
                                             "[1.0.0,2.0.0)",
                                             "INFINITY",
                                             "true",
                                             "!",
                                             "\t",
                                             "\n",
                                             "\xC3\xA9",
                                             "\xff",
                                             std::string(1, '\0'),
                                             "in\"",
                                             "&",
                                             "|"};
    Properties props{{"a", P::of_string("x")},
                     {"b", P::of_list({"x", "y"})},
                     {"cpu", P::of_number(2)},
                     {"version", P::of_version("1.5.0")},
                     {"true", P::of_bool(true)}};
    int parsed = 0, errors = 0;
    for (int i = 0; i < 20000; ++i) {
      std::string s;
      int n = static_cast<int>(rng() % 12);
      for (int k = 0; k < n; ++k) {
        if (rng() % 8 == 0) {
          s += static_cast<char>(rng() % 256);  // any byte
        } else {
          s += pieces[rng() % pieces.size()];
        }
      }
      auto r = evaluate_constraints({s, "a == x"}, props);
      if (r) {
        ++parsed;
      } else {
        ++errors;
        CHECK(r.error().code == Errc::parse);
        CHECK(r.error().message.rfind("constraint '", 0) == 0);
      }
    }
    // Both outcomes occur, so the generator exercises the parser and not just its first check.
    CHECK(parsed > 100);
    CHECK(errors > 100);
  }
}
