#include "agentd/json.h"

#include <doctest/doctest.h>

using namespace agentd;

TEST_SUITE("json") {
  TEST_CASE("typed accessors validate presence and type") {
    auto doc = json::parse(R"({"s":"x","i":42,"b":true,"n":null,"f":1.5,"a":["p","q"],"o":{}})", "test");
    REQUIRE(doc);
    const cJSON* o = doc->get();
    CHECK(json::get_string(o, "s").value() == "x");
    CHECK(json::get_int(o, "i").value() == 42);
    CHECK(json::get_bool(o, "b").value());
    CHECK(json::get_object(o, "o"));
    CHECK(json::get_array(o, "a"));
    CHECK(json::opt_string(o, "missing", "d").value() == "d");
    CHECK(json::opt_string(o, "n", "d").value() == "d");
    CHECK(json::opt_int(o, "missing", 7).value() == 7);
    CHECK(json::opt_string_array(o, "a").value() == std::vector<std::string>{"p", "q"});
    CHECK(json::get_string(o, "i").error().message.find("'i'") != std::string::npos);
    CHECK_FALSE(json::get_int(o, "f"));
    CHECK_FALSE(json::get_int(o, "s"));
    CHECK_FALSE(json::opt_bool(o, "s", false));
    CHECK_FALSE(json::opt_string_array(o, "o"));
    CHECK_FALSE(json::get_string(nullptr, "s"));
  }

  TEST_CASE("malformed and truncated input are parse errors naming the document") {
    for (const char* s : {"", "{", R"({"a":)", R"({"a":1}})", "nul", R"({"a":"\u12"})"}) {
      CAPTURE(s);
      auto r = json::parse(s, "group document");
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::parse);
      CHECK(r.error().message.find("group document") != std::string::npos);
    }
    CHECK(json::parse(" {\"a\":1} \n", "x"));
  }

  TEST_CASE("integers out of int64 range are refused") {
    auto doc = json::parse(R"({"big":1e300,"neg":-5})", "t");
    REQUIRE(doc);
    CHECK_FALSE(json::get_int(doc->get(), "big"));
    CHECK(json::get_int(doc->get(), "neg").value() == -5);
  }

  TEST_CASE("large integers print exactly, without an exponent, and read back") {
    auto o = json::object();
    json::set(o.get(), "t", std::int64_t{1'795'640'543'390'250});
    json::set(o.get(), "n", std::int64_t{-9'000'000'000});
    CHECK(json::print(o.get()) == R"({"t":1795640543390250,"n":-9000000000})");
    CHECK(json::get_int(o.get(), "t").value() == 1'795'640'543'390'250);
    auto back = json::parse(json::print(o.get()), "t");
    REQUIRE(back);
    CHECK(json::get_int(back->get(), "n").value() == -9'000'000'000);
  }

  TEST_CASE("builders replace keys and print compactly") {
    auto o = json::object();
    json::set(o.get(), "k", "v");
    json::set(o.get(), "k", std::int64_t{3});
    json::set(o.get(), "b", false);
    auto arr = json::array();
    json::append(arr.get(), "x");
    json::set(o.get(), "a", std::move(arr));
    CHECK(json::print(o.get()) == R"({"k":3,"b":false,"a":["x"]})");
  }
}
