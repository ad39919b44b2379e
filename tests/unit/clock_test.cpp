#include "agentd/clock.h"

#include <doctest/doctest.h>

using namespace agentd;

TEST_SUITE("clock") {
  TEST_CASE("formats as the Exchange does since 2.143.0") {
    Wall t = Wall{std::chrono::seconds{1'795'636'801}} + std::chrono::microseconds{123456};
    CHECK(format_time(t) == "2026-11-25T20:00:01.123456Z");
  }

  TEST_CASE("parses the current and the older [UTC] forms, any fraction length") {
    Wall a, b, c, d;
    REQUIRE(parse_time("2026-11-25T20:00:01.123456Z", &a));
    REQUIRE(parse_time("2026-11-25T20:00:01.123456Z[UTC]", &b));
    REQUIRE(parse_time("2026-11-25T20:00:01.123Z", &c));
    REQUIRE(parse_time("2026-11-25T20:00:01Z", &d));
    CHECK(a == b);
    CHECK(a - c == std::chrono::microseconds{456});
    CHECK(c - d == std::chrono::milliseconds{123});
    CHECK(format_time(a) == "2026-11-25T20:00:01.123456Z");
  }

  TEST_CASE("rejects malformed times") {
    Wall w;
    for (const char* s :
         {"", "2026-11-25", "2026-11-25T20:00:01", "2026-11-25T20:00:01.Z", "2026-13-25T20:00:01Z",
          "2026-11-25T20:00:01+01:00", "2026-11-25T20:00:01.1234567890Z"}) {
      CAPTURE(s);
      CHECK_FALSE(parse_time(s, &w));
    }
  }

  TEST_CASE("the fake clock moves both clocks; a wall jump leaves the monotonic one alone") {
    FakeClock c;
    Mono m0 = c.mono();
    c.advance(Mono{1500});
    CHECK(c.mono() - m0 == Mono{1500});
    c.set_wall(Wall{});
    CHECK(c.mono() - m0 == Mono{1500});
  }
}
