// anax's own test vectors for the constraint language, run through agentd's API
// so that the two stay in step. Source: open-horizon/anax at
// 2f3fa5a506d6565fa68858b7963450567ddda114, externalpolicy/text_language/
// text_language_test.go and externalpolicy/constraint_expression_test.go; each
// group cites the Go lines it copies.
//
// anax's Validate (no properties) is agentd's "evaluates without a parse error";
// anax's IsSatisfiedBy returning nil is agentd's true, and its "not satisfied"
// error is agentd's false (or a parse error where anax's comes from Validate).
// Not copied: Test_MergeWith (constraint_expression_test.go:301-339) tests an
// anax function agentd has no use for.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "upgrade/constraints.h"

using namespace agentd;

namespace {
using P = PropertyValue;

// Every expression of anax's array is accepted by the language.
void check_valid(const std::vector<std::string>& constraints) {
  for (const auto& c : constraints) {
    CAPTURE(c);
    auto r = evaluate_constraint(c, {});
    CHECK_MESSAGE(r.has_value(), (r ? "" : r.error().message));
  }
}

// The array is refused as a parse error whose message contains `says`.
void check_refused(const std::vector<std::string>& constraints, const std::string& says) {
  auto r = evaluate_constraints(constraints, {});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::parse);
  CAPTURE(r.error().message);
  CHECK(r.error().message.find(says) != std::string::npos);
}

bool satisfied(const std::vector<std::string>& constraints, const Properties& props) {
  auto r = evaluate_constraints(constraints, props);
  if (!r) FAIL_CHECK(r.error().message);
  return r.value_or(false);
}
}  // namespace

TEST_SUITE("constraints") {
  TEST_CASE("anax Test_Validate_Succeed1 (text_language_test.go:10-35)") {
    check_valid({"iame2edev == true && cpu == 3 || memory <= 32", "iame2edev == \"true\"",
                 "hello == \"world\"", "hello in \"'hi world', 'test'\"",
                 "eggs == \"truck load\" AND certification in \"USDA, Organic\"",
                 "version == 1.1.1 OR USDA == true", "version in [1.1.1,INFINITY) OR cert == USDA"});
  }

  TEST_CASE("anax Test_Validate_Succeed_Special_Characters (text_language_test.go:37-61)") {
    // anax's lines as they are: one literal each.
    // clang-format off
    check_valid({
        "でんしゃのりば == アイウエオカキクケコサシスセソ",
        "火车站 == 上海",
        "車號 == 漢54321",
        "estación_de_tren = Nochistlán",
        "기차역== 서울시",
        "アイウエオカキクケコサシスセソ==最終ログインを有効にするＡＢＣ一丁七Çàâｱｲｳ€¥鯵表噂ソ十豹竹敷～兎椄＊＠＇屜丯愛金",
        "All==\"möglich política règles d'arrêt Não é possível ler o arquivo を使用したポリシーのアドバタイズを開始しま 서비스에 대한 정책 파을 읽을 수 없습니다. 오 副本同步本地节点策略 無法從本端資料庫讀取節點物件\"",
    });
    // clang-format on
  }

  TEST_CASE("anax Test_Validate_Failed1-5: refused expressions (text_language_test.go:63-174)") {
    // :63-94 a list of strings takes only "in"
    check_refused({"eggs == \"truck load\" || certification == \"USDA, Organic\""}, "needs 'in'");
    check_refused({"hello == \"'hi world', 'test'\""}, "needs 'in'");
    // :96-114 '<' and '>' take numbers only
    check_refused({"iame2edev < true && cpu == 3 || memory <= 32", "hello > world"}, "need a number");
    // :116-134 a value with blanks must be quoted
    check_refused({"eggs == truck load && certification == USDA"}, "unexpected 'l'");
    // :136-154 an unknown connective
    check_refused({"version == 1.1.1 abcdefg USDA == true"}, "unexpected 'a'");
    // :156-174 unmatched parentheses
    check_refused({"(version == 1.1.1 && USDA == true"}, "expected ')'");
  }

  TEST_CASE(
      "anax Test_Validate_Succeed2-8: blanks around operators and parentheses "
      "(text_language_test.go:176-300)") {
    check_valid({"version==1.1.1 AND USDA == true"});                                      // :176-192
    check_valid({"version == 1.1.1 OR USDA == true", "version==1.1.1 AND USDA == true"});  // :194-210
    check_valid({"version>1 OR version<1 OR version>=0 AND version<=0 OR USDA==true OR USDA=false",
                 "version=1.1.1 AND xyz!=abc"});  // :212-228
    check_valid({"version> 1 OR version <1 OR version >=0 AND version<= 0 OR USDA ==true OR USDA= false",
                 "version =1.1.1 AND xyz !=123"});  // :230-246
    check_valid(
        {"(version> 1 OR version <1 OR version >=0) AND (version<= 0 OR (USDA ==true OR USDA= false))",
         "version =1.1.1 AND xyz !=123"});                                     // :248-264
    check_valid({"version> 1 OR version <1 OR version >=0 AND version<= 0"});  // :266-282, first of two
    check_valid(
        {"(version> 1 OR version <1 OR version >=0) AND  ( version<= 0 OR (  USDA ==true OR USDA= false  ) )",
         " (version =1.1.1 AND xyz !=123) "});  // :284-300
  }

  TEST_CASE(
      "anax Test_Validate_Succeed7's '=>' and '=<' are refused on purpose (text_language_test.go:270)") {
    // anax's tokenizer takes them; its evaluator reads "num => 5" as "num == 5"
    // (counter_party_properties.go, propertyInArray), so agentd refuses them and
    // names the operator meant (upgrade/constraints.h).
    check_refused({"num => 5 OR num =< 22 OR num==10.32 OR num =6"}, "'=>' is not an operator: write '>='");
    check_refused({"num =< 22"}, "'=<' is not an operator: write '<='");
  }

  TEST_CASE("anax Test_GetNextExpression_Succeed (text_language_test.go:302-369)") {
    check_valid({
        "version == 1.1.1 OR USDA == true AND book == \"one fish two fish\" && author == \"Suess\"",
        "iame2edev == true && iame2edev == \"true\" && cpu == 3 || memory <= 32 AND hello == \"world\" && "
        "hello in "
        "\"'hi world', 'test'\" AND eggs == \"truck load\" AND certification in \"USDA, Organic\" AND "
        "version == "
        "1.1.1 OR USDA == true AND version in [1.1.1,INFINITY) OR cert == USDA",
        "iame2edev==true && cpu==3 AND hello==\"world\" && hello in \"'hi world', 'test'\"",
        "cpu < 4 && intValue >= 3 || inininintValue == \"ininint\" && inVersion in [0.0.0,1.4.3]",
    });
  }

  TEST_CASE("anax Test_simple_conversion (constraint_expression_test.go:14-66)") {
    check_valid(
        {"prop == value", "prop == value && prop2 == value2",
         "prop == value && prop2 == value2 || prop3 == value3",
         "prop == value && prop2 == value2 || prop3 == value3 || prop4 == value4",
         "prop == value && prop2 == value2 || prop3 == value3 || prop4 == value4 && prop5 == value5"});
  }

  TEST_CASE("anax Test_succeed_IsSatisfiedBy (constraint_expression_test.go:68-190)") {
    // :69-75
    CHECK(satisfied({"prop == true && prop2 == \"a b\""}, {{"prop", P::of_bool(true)},
                                                           {"prop2", P::of_string("a b")},
                                                           {"prop3", P::of_string("value3")},
                                                           {"prop4", P::of_string("value4")},
                                                           {"prop5", P::of_string("value5")}}));
    // :77-83
    CHECK(satisfied({"prop == onefishtwofish && prop2 == value2"},
                    {{"prop", P::of_string("onefishtwofish")}, {"prop2", P::of_string("value2")}}));
    // :85-91
    CHECK(satisfied({"prop == value && prop2 == value2", "prop3 == value3 || prop4 == value4 && prop5 <= 5",
                     "property6 >= 6"},
                    {{"prop", P::of_string("value")},
                     {"prop2", P::of_string("value2")},
                     {"prop3", P::of_string("value3")},
                     {"prop4", P::of_string("value4")},
                     {"prop5", P::of_number(5)},
                     {"property6", P::of_number(7.0)}}));
    // :93-105
    CHECK(satisfied({"iame2edev == true && cpu == 3 || memory <= 32", "hello == \"world\"",
                     "eggs == \"truckload\" AND certification in \"USDA,Organic\"",
                     "version == 1.1.1 OR USDA == true", "version in [1.1.1,INFINITY) OR cert == USDA"},
                    {{"iame2edev", P::of_bool(true)},
                     {"cpu", P::of_number(3)},
                     {"memory", P::of_number(32)},
                     {"hello", P::of_string("world")},
                     {"eggs", P::of_string("truckload")},
                     {"USDA", P::of_bool(true)},
                     {"certification", P::of_string("USDA")},
                     {"version", P::of_version("1.2.1")}}));
    // :107-116
    CHECK(satisfied({"version == 1.1.1 OR USDA in \"United,States,Department,of,Agriculture\"",
                     "version in [1.1.1,INFINITY) OR cert == USDA", "color == \"orange\""},
                    {{"version", P::of_version("2.1.5")},
                     {"USDA", P::of_string("Department")},
                     {"color", P::of_string("orange")}}));
    // :118-125
    CHECK(satisfied({"purpose==network-testing"}, {{"purpose", P::of_string("network-testing")},
                                                   {"group", P::of_string("bluenode")},
                                                   {"openhorizon.cpu", P::of_string("1")},
                                                   {"openhorizon.arch", P::of_string("amd64")},
                                                   {"openhorizon.memory", P::of_string("3918")}}));
    // :127-135 (the values are strings that look like booleans)
    CHECK(satisfied({"iame2edev == true",
                     "NONS==false || NOGPS == true || NOLOC == false || NOPWS == false || "
                     "NOHELLO == false"},
                    {{"iame2edev", P::of_string("true")},
                     {"NONS", P::of_string("false")},
                     {"number", P::of_string("12")},
                     {"foo", P::of_string("bar")}}));
    // :137-144
    CHECK(satisfied({"color == gray || (colour =\"grey\" && countryin\"england,australia,canada\")"},
                    {{"color", P::of_string("gray")}}));
    // :146-153
    CHECK(satisfied(
        {"(species == t-rex && ((feathers =hopefully && scales=maybe || (talonsin\"sharp,very sharp\" || "
         "teeth =1.3.8))))"},
        {{"species", P::of_string("t-rex")},
         {"feathers", P::of_string("hopefully")},
         {"talons", P::of_string("sharp    ")}}));
    // :155-162
    CHECK(satisfied({"species == cat"}, {{"species", P::of_string("toad,cat,dog")}}));
    // :164-171
    CHECK(satisfied({"version in [0.0.1,9.3.2)"}, {{"version", P::of_string("0.0.2")}}));
    // :173-180
    CHECK(satisfied({"inVersion in [0.0.1,9.3.2) && intValue > 4"},
                    {{"inVersion", P::of_string("0.0.2")}, {"intValue", P::of_number(5)}}));
    // :182-189
    CHECK(satisfied({"ininString in \"cat, dog, mouse\" || intValue > 4"},
                    {{"ininString", P::of_string("dog")}, {"intValue", P::of_number(2)}}));
  }

  TEST_CASE("anax Test_fail_IsSatisfiedBy (constraint_expression_test.go:192-299)") {
    // :193-199: anax's error comes from Validate (a list of strings takes only "in").
    check_refused({"prop == true && prop2 == \"value2, value3, value4\""}, "needs 'in'");
    // :201-208
    CHECK_FALSE(satisfied({"((versionin[1.3.1,3.1.2) && server=false) || (os!=windows && foo !=bar) )"},
                          {{"version", P::of_string("2.3.4")}, {"foo", P::of_string("chunk")}}));
    // :210-217
    CHECK_FALSE(
        satisfied({" (sasquatch=real && locationin\"British Columbia,Alberta,Montana\") OR (nessie  ==   "
                   "real && location=\"Scotland\")"},
                  {{"sasquatch", P::of_string("real")}, {"location", P::of_string("Scotland")}}));
    // :219-226
    CHECK_FALSE(satisfied({" purpose == testing AND ( nodenum > 4 || nodenum <= 2)"},
                          {{"purpose", P::of_string("testing")}, {"nodenum", P::of_string("3")}}));
    // :228-235
    CHECK_FALSE(satisfied({" purpose == testing AND ( nodenum > 4 || nodenum <= 2 || (test2 in \"a,b,c\" && "
                           "openhorizon.cpu ==2) || propx = false)"},
                          {{"purpose", P::of_string("testing")},
                           {"nodenum", P::of_string("3")},
                           {"test2", P::of_string("b")}}));
    // :237-244
    CHECK_FALSE(
        satisfied({"( purpose == testing) AND ( nodenum > 4 || nodenum <= 2 || (test2 in \"a,b,c\" && "
                   "openhorizon.cpu ==2) || propx = false)"},
                  {{"openhorizon.cpu", P::of_string("2")},
                   {"nodenum", P::of_string("3")},
                   {"test2", P::of_string("b")}}));
    const Properties tokyo{{"device", P::of_string("kiosk")}, {"station", P::of_string("tokyo")}};
    CHECK_FALSE(satisfied({"device=kiosk && (station=kyoto OR station=hunai)"}, tokyo));  // :246-253
    CHECK_FALSE(
        satisfied({"device=kiosk && (station=kyoto OR station=hunai) && stationtype=\"train\""},
                  {{"device", P::of_string("kiosk")}, {"station", P::of_string("kyoto")}}));  // :255-262
    CHECK_FALSE(
        satisfied({"device=kiosk && station=kyoto  && stationtype=\"train\" AND schedule=on-time"},
                  {{"device", P::of_string("kiosk")}, {"schedule", P::of_string("on-time")}}));  // :264-271
    CHECK_FALSE(
        satisfied({"device=kiosk || station=kyoto  || stationtype=\"train\" OR schedule=on-time"},
                  {{"device", P::of_string("scanner")}, {"schedule", P::of_string("delayed")}}));  // :273-280
    CHECK_FALSE(satisfied({"((device=kiosk || station=macau) && (station=kyoto OR station=hunai))"},
                          tokyo));  // :282-289
    CHECK_FALSE(satisfied(
        {"purpose == network-testing1", "group == bluenode"},
        {{"purpose", P::of_string("network-testing")}, {"group", P::of_string("bluenode")}}));  // :291-298
  }
}
