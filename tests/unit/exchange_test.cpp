// Exchange: URLs, request shapes, status mapping, parsing and retries, against a
// scripted FakeHttpClient and a recording Sleeper; the CSS and node policy calls
// also against the in-process stand-in over real HTTP.
#include "agentd/exchange.h"

#include <cjson/cJSON.h>
#include <doctest/doctest.h>

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agentd/exchange_admin.h"
#include "agentd/json.h"
#include "hub/in_process.h"
#include "support/fake_sleeper.h"
#include "support/temp_dir.h"
#include "upgrade/constraints.h"

using namespace agentd;
using namespace std::chrono_literals;
using agentd::testing::FakeSleeper;

namespace {

class FakeHttpClient final : public HttpClient {
 public:
  std::deque<Result<HttpResponse>> script;
  std::vector<HttpRequest> requests;

  Result<HttpResponse> perform(const HttpRequest& req) override {
    requests.push_back(req);
    if (script.empty()) return fail(Errc::internal, "test script has no response left");
    auto r = std::move(script.front());
    script.pop_front();
    return r;
  }
  void reply(long status, std::string body = {},
             std::vector<std::pair<std::string, std::string>> headers = {}) {
    script.push_back(HttpResponse{status, std::move(body), std::move(headers)});
  }
  void drop() { script.push_back(fail(Errc::transport, "connection reset by peer")); }
  std::string header(std::size_t i, const std::string& name) const {
    for (const auto& [k, v] : requests.at(i).headers)
      if (k == name) return v;
    return {};
  }
};

struct Fixture {
  FakeHttpClient http;
  FakeSleeper sleeper;
  Exchange ex{
      http,
      ExchangeEndpoint{"https://hub.example:3090/v1/", "https://hub.example:9443/css/", "myorg", "node1"},
      RetryPolicy{4, 200ms, 10'000ms}, sleeper};
  ExchangeAdmin admin{ex};
};

json::Ptr body_of(const HttpRequest& r) {
  auto j = json::parse(r.body, "request body");
  REQUIRE(j.has_value());
  return std::move(*j);
}

const char* kGroupBody = R"({"nodeGroups":[{"name":"line1","description":"","members":["n1","n2"],
  "admin":false,"lastUpdated":"2026-11-25T20:00:01.123456Z",
  "agentUpgradeSettings":{"maxConcurrent":1,"minAvailable":1,"paused":true},
  "agentUpgrade":{"n1":{"state":"upgrading","version":"1.0.0","targetVersion":"2.0.0","epoch":3,
     "leaseDurationSeconds":60,"acquireTime":"2026-11-25T20:00:00.000Z","renewTime":"2026-11-25T20:00:00.000Z",
     "lastSeen":"2026-11-25T20:00:00.000Z","message":"installing","writeId":"w1"}}}]})";

const char* kNodeBody =
    R"({"nodes":{"myorg/node1":{"token":"***************","name":"node1","owner":"myorg/alice",
  "nodeType":"device","pattern":"","registeredServices":[],"userInput":[],"msgEndPoint":"",
  "softwareVersions":{"horizon":"2.31.0","certificate":"1.0.0","config":"1.0.1"},
  "lastHeartbeat":null,"publicKey":"","arch":"amd64",
  "heartbeatIntervals":{"minInterval":0,"maxInterval":0,"intervalAdjustment":0},
  "ha_group":"grp1","lastUpdated":"2025-09-01T11:59:00.654321Z","clusterNamespace":"","isNamespaceScoped":false}},
  "lastIndex":0})";

}  // namespace

TEST_SUITE("exchange") {
  TEST_CASE("check_status maps each hub status to its error and quotes the hub's msg") {
    struct Case {
      long status;
      Errc code;
    };
    for (auto [status, code] :
         {Case{401, Errc::unauthorized}, Case{403, Errc::forbidden}, Case{404, Errc::not_found},
          Case{409, Errc::conflict}, Case{412, Errc::conflict}, Case{428, Errc::precondition},
          Case{413, Errc::too_large}, Case{400, Errc::http}, Case{418, Errc::http}, Case{500, Errc::http},
          Case{502, Errc::http}, Case{503, Errc::http}, Case{200, Errc::http}}) {
      CAPTURE(status);
      HttpResponse r{status, R"({"code":"some-code","msg":"the hub's words"})", {}};
      auto st = check_status(r, {201, 204}, "PUT orgs/o/x");
      REQUIRE_FALSE(st.has_value());
      CHECK(st.error().code == code);
      CHECK(st.error().http_status == status);
      CHECK(st.error().message.find("PUT orgs/o/x") != std::string::npos);
      CHECK(st.error().message.find("some-code: the hub's words") != std::string::npos);
      CHECK(st.error().transient() == (status >= 500));
    }
    CHECK(check_status(HttpResponse{201, "", {}}, {201, 204}, "x").has_value());
    CHECK(check_status(HttpResponse{204, "", {}}, {201, 204}, "x").has_value());
    auto plain = check_status(HttpResponse{502, "Bad Gateway", {}}, {200}, "GET y");
    REQUIRE_FALSE(plain.has_value());
    CHECK(plain.error().message.find("Bad Gateway") != std::string::npos);
  }

  TEST_CASE("the hub's words in an error are capped and made printable: a 3 MiB msg is not logged whole") {
    std::string huge(3 * 1024 * 1024, 'A');
    huge[10] = '\n';
    HttpResponse r{500, R"({"code":"c","msg":")" + huge + R"("})", {}};
    auto st = check_status(r, {200}, "GET orgs/o/x");
    REQUIRE_FALSE(st);
    CHECK(st.error().message.size() < 600);
    CHECK(st.error().message.find('\n') == std::string::npos);
    CHECK(st.error().message.find("(3145728 bytes)") != std::string::npos);
    auto plain = check_status(HttpResponse{502, std::string(100000, 'x'), {}}, {200}, "GET y");
    REQUIRE_FALSE(plain);
    CHECK(plain.error().message.size() < 600);
  }

  TEST_CASE("URLs: one slash after the base whether or not it ends in one; path segments percent-encoded") {
    FakeHttpClient http;
    FakeSleeper sleeper;
    Exchange ex(http, ExchangeEndpoint{"http://h:1/v1", "", "my org", "n/1"}, RetryPolicy{}, sleeper);
    http.reply(404);
    (void)ex.get_node();
    CHECK(http.requests.at(0).url == "http://h:1/v1/orgs/my%20org/nodes/n%2F1");

    Fixture f;
    f.http.reply(404, R"({"nodeGroups":[]})");
    (void)f.ex.read("line 1/x", std::nullopt);
    CHECK(f.http.requests.at(0).url == "https://hub.example:3090/v1/orgs/myorg/hagroups/line%201%2Fx");
  }

  TEST_CASE("get_node parses the record keyed org/node; ha_group null means no group") {
    Fixture f;
    f.http.reply(200, kNodeBody);
    auto n = f.ex.get_node();
    REQUIRE(n.has_value());
    CHECK(f.http.requests.at(0).method == "GET");
    CHECK(f.http.requests.at(0).url == "https://hub.example:3090/v1/orgs/myorg/nodes/node1");
    CHECK(n->id == "node1");
    CHECK(n->ha_group == "grp1");
    CHECK(n->owner == "myorg/alice");
    CHECK(n->arch == "amd64");
    CHECK(n->software_versions.at("horizon") == "2.31.0");
    CHECK(n->software_versions.at("config") == "1.0.1");

    std::string null_group = kNodeBody;
    null_group.replace(null_group.find(R"("ha_group":"grp1")"), 17, R"("ha_group":null)");
    f.http.reply(200, null_group);
    auto m = f.ex.get_node();
    REQUIRE(m.has_value());
    CHECK(m->ha_group == "");
  }

  TEST_CASE("get_node: malformed JSON, wrong types and a missing key are parse errors; 404 is not_found") {
    Fixture f;
    f.http.reply(200, R"({"nodes":{"myorg/node1":{"name":"node1")");
    f.http.reply(200, R"({"nodes":{"myorg/node1":{"name":"node1","ha_group":7}}})");
    f.http.reply(200, R"({"nodes":{"myorg/node1":{"softwareVersions":{"horizon":2}}}})");
    f.http.reply(200, R"({"nodes":{"otherorg/node1":{}}})");
    f.http.reply(200, R"({"nodes":[]})");
    for (int i = 0; i < 5; ++i) {
      CAPTURE(i);
      auto n = f.ex.get_node();
      REQUIRE_FALSE(n.has_value());
      CHECK(n.error().code == Errc::parse);
      CHECK(n.error().message.find("orgs/myorg/nodes/node1") != std::string::npos);
    }
    f.http.reply(404, R"({"code":"not-found","msg":"not found"})");
    auto missing = f.ex.get_node();
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == Errc::not_found);
  }

  TEST_CASE(
      "management policies: map form keyed org/name; 404 is an empty list; wrong types are parse errors") {
    Fixture f;
    f.http.reply(200, R"({"managementPolicy":{
      "myorg/nmp2":{"agentUpgradePolicy":{"allowDowngrade":true,"manifest":"myorg/man2"},"constraints":[],
        "enabled":false,"label":"b","description":"","patterns":["myorg/p"],"start":"2026-01-01T00:00:00Z",
        "startWindow":-5,"lastUpdated":"t2"},
      "myorg/nmp1":{"agentUpgradePolicy":{"allowDowngrade":false,"manifest":"man1"},
        "constraints":["purpose == \"upgrade-test\""],"created":"t","description":"upgrade agents","enabled":true,
        "label":"a","lastUpdated":"t1","owner":"myorg/admin","patterns":[],"properties":[],"start":"now",
        "startWindow":300}},"lastIndex":0})");
    auto list = f.ex.list_management_policies();
    REQUIRE(list.has_value());
    CHECK(f.http.requests.at(0).url == "https://hub.example:3090/v1/orgs/myorg/managementpolicies");
    REQUIRE(list->size() == 2);
    const auto& a = (*list)[0];
    CHECK(a.id == "myorg/nmp1");
    CHECK(a.enabled);
    CHECK(a.start == "now");
    CHECK(a.start_window == 300);
    CHECK(a.constraints == std::vector<std::string>{"purpose == \"upgrade-test\""});
    CHECK(a.agent_upgrade.manifest == "man1");
    CHECK_FALSE(a.agent_upgrade.allow_downgrade);
    const auto& b = (*list)[1];
    CHECK(b.id == "myorg/nmp2");
    CHECK_FALSE(b.enabled);
    CHECK(b.start_window == 0);
    CHECK(b.patterns == std::vector<std::string>{"myorg/p"});
    CHECK(b.agent_upgrade.allow_downgrade);

    f.http.reply(404, R"({"managementPolicy":{},"lastIndex":0})");
    auto none = f.ex.list_management_policies();
    REQUIRE(none.has_value());
    CHECK(none->empty());

    f.http.reply(200, R"({"managementPolicy":{"myorg/x":{"enabled":"yes"}}})");
    auto bad = f.ex.list_management_policies();
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::parse);
    CHECK(bad.error().message.find("myorg/x") != std::string::npos);
    f.http.reply(200, R"({"managementPolicy":{"myorg/x":{"agentUpgradePolicy":{"manifest":1}}}})");
    CHECK(f.ex.list_management_policies().error().code == Errc::parse);
  }

  TEST_CASE("manifest: fetched from the CSS in the referenced org, or the node's org for a bare id") {
    Fixture f;
    const char* body =
        R"({"softwareUpgrade":{"files":["agent-install.sh","horizon.tar.gz"],"version":"2.30.0"},
      "certificateUpgrade":{"files":["agent-install.crt"],"version":"latest"},
      "configurationUpgrade":{"files":["agent-install.cfg"],"version":"latest"}})";
    f.http.reply(200, body);
    auto m = f.ex.get_manifest("otherorg/man1");
    REQUIRE(m.has_value());
    CHECK(f.http.requests.at(0).url ==
          "https://hub.example:9443/css/api/v1/objects/otherorg/agent_upgrade_manifests/man1/data");
    CHECK(m->software.version == "2.30.0");
    CHECK(m->software.files == std::vector<std::string>{"agent-install.sh", "horizon.tar.gz"});
    CHECK(m->certificate.version == "latest");
    CHECK(m->configuration.files == std::vector<std::string>{"agent-install.cfg"});

    f.http.reply(200, R"({"softwareUpgrade":{"files":["*"],"version":"2.31.0"}})");
    auto bare = f.ex.get_manifest("man2");
    REQUIRE(bare.has_value());
    CHECK(f.http.requests.at(1).url ==
          "https://hub.example:9443/css/api/v1/objects/myorg/agent_upgrade_manifests/man2/data");
    CHECK(bare->certificate.version == "");

    f.http.reply(200, R"({"softwareUpgrade":{"files":"agent-install.sh"}})");
    CHECK(f.ex.get_manifest("man3").error().code == Errc::parse);
    f.http.reply(404, "");
    CHECK(f.ex.get_manifest("man4").error().code == Errc::not_found);
  }

  TEST_CASE("AgentFileVersion: the software versions of org IBM; 404 means none published") {
    Fixture f;
    f.http.reply(200, R"({"agentCertVersions":["0.0.15"],"agentConfigVersions":[],
      "agentSoftwareVersions":["2.30.0","2.25.4"],"lastUpdated":"t"})");
    auto v = f.ex.agent_software_versions();
    REQUIRE(v.has_value());
    CHECK(f.http.requests.at(0).url == "https://hub.example:3090/v1/orgs/IBM/AgentFileVersion");
    CHECK(*v == std::vector<std::string>{"2.30.0", "2.25.4"});
    f.http.reply(404, R"({"code":"not-found","msg":"org 'IBM' not found"})");
    auto none = f.ex.agent_software_versions();
    REQUIRE(none.has_value());
    CHECK(none->empty());
    f.http.reply(200, R"({"agentSoftwareVersions":[1]})");
    CHECK(f.ex.agent_software_versions().error().code == Errc::parse);
  }

  TEST_CASE("management status PUT: anax's body shape with omitempty fields left out; not retried") {
    Fixture f;
    f.http.reply(201, R"({"code":"ok","msg":"status added or updated"})");
    ManagementStatus s;
    s.scheduled_time = "2025-09-01T12:03:17Z";
    s.status = "ha node waiting";
    s.software_version = "2.31.0";
    REQUIRE(f.ex.put_management_status("myorg/nmp1", s).has_value());
    const auto& req = f.http.requests.at(0);
    CHECK(req.method == "PUT");
    CHECK(req.url == "https://hub.example:3090/v1/orgs/myorg/nodes/node1/managementStatus/nmp1");
    auto body = body_of(req);
    const cJSON* st = cJSON_GetObjectItemCaseSensitive(body.get(), "agentUpgradePolicyStatus");
    REQUIRE(cJSON_IsObject(st));
    CHECK(cJSON_GetArraySize(body.get()) == 1);
    CHECK(json::get_string(st, "scheduledTime").value() == "2025-09-01T12:03:17Z");
    CHECK(json::get_string(st, "status").value() == "ha node waiting");
    CHECK(cJSON_GetObjectItemCaseSensitive(st, "startTime") == nullptr);
    CHECK(cJSON_GetObjectItemCaseSensitive(st, "endTime") == nullptr);
    CHECK(cJSON_GetObjectItemCaseSensitive(st, "errorMessage") == nullptr);
    const cJSON* uv = json::get_object(st, "upgradedVersions").value();
    CHECK(json::get_string(uv, "softwareVersion").value() == "2.31.0");
    CHECK(json::get_string(uv, "certVersion").value() == "");
    CHECK(json::get_string(uv, "configVersion").value() == "");

    s.start_time = "2025-09-01T12:04:00Z";
    s.end_time = "2025-09-01T12:05:00Z";
    s.status = "failed";
    s.error_message = "health check failed";
    f.http.reply(201);
    REQUIRE(f.ex.put_management_status("nmp1", s).has_value());
    CHECK(f.http.requests.at(1).url ==
          "https://hub.example:3090/v1/orgs/myorg/nodes/node1/managementStatus/nmp1");
    auto full = body_of(f.http.requests.at(1));
    const cJSON* st2 = cJSON_GetObjectItemCaseSensitive(full.get(), "agentUpgradePolicyStatus");
    CHECK(json::get_string(st2, "startTime").value() == "2025-09-01T12:04:00Z");
    CHECK(json::get_string(st2, "endTime").value() == "2025-09-01T12:05:00Z");
    CHECK(json::get_string(st2, "errorMessage").value() == "health check failed");

    f.http.reply(503);
    auto busy = f.ex.put_management_status("nmp1", s);
    REQUIRE_FALSE(busy.has_value());
    CHECK(busy.error().code == Errc::http);
    CHECK(f.http.requests.size() == 3);
    CHECK(f.sleeper.waits.empty());
  }

  TEST_CASE("patch_software_version keeps the node's other software versions") {
    Fixture f;
    f.http.reply(200, kNodeBody);
    f.http.reply(201, R"({"code":"ok","msg":"attribute 'softwareVersions' of node 'myorg/node1' updated"})");
    REQUIRE(f.ex.patch_software_version("2.32.0").has_value());
    REQUIRE(f.http.requests.size() == 2);
    const auto& req = f.http.requests.at(1);
    CHECK(req.method == "PATCH");
    CHECK(req.url == "https://hub.example:3090/v1/orgs/myorg/nodes/node1");
    auto body = body_of(req);
    CHECK(cJSON_GetArraySize(body.get()) == 1);
    const cJSON* sv = json::get_object(body.get(), "softwareVersions").value();
    CHECK(json::get_string(sv, "horizon").value() == "2.32.0");
    CHECK(json::get_string(sv, "certificate").value() == "1.0.0");
    CHECK(json::get_string(sv, "config").value() == "1.0.1");
  }

  TEST_CASE("changes: POST {changeId, maxRecords}, 201 parsed; maxchangeid") {
    Fixture f;
    f.http.reply(201, R"({"changes":[
      {"orgId":"myorg","resource":"agentupgrade","id":"node1","operation":"modified",
       "resourceChanges":[{"changeId":1041,"lastUpdated":"t"}]},
      {"orgId":"IBM","resource":"agentfileversion","id":"IBM","operation":"modified","resourceChanges":[]}],
      "mostRecentChangeId":1043,"hitMaxRecords":false,"exchangeVersion":"2.154.0"})");
    auto c = f.ex.changes(1001, 1000);
    REQUIRE(c.has_value());
    const auto& req = f.http.requests.at(0);
    CHECK(req.method == "POST");
    CHECK(req.url == "https://hub.example:3090/v1/orgs/myorg/changes");
    auto body = body_of(req);
    CHECK(cJSON_GetArraySize(body.get()) == 2);
    CHECK(json::get_int(body.get(), "changeId").value() == 1001);
    CHECK(json::get_int(body.get(), "maxRecords").value() == 1000);
    REQUIRE(c->changes.size() == 2);
    CHECK(c->changes[0].org == "myorg");
    CHECK(c->changes[0].resource == "agentupgrade");
    CHECK(c->changes[0].id == "node1");
    CHECK(c->changes[0].operation == "modified");
    CHECK(c->changes[1].resource == "agentfileversion");
    CHECK(c->most_recent_change_id == 1043);
    CHECK_FALSE(c->hit_max_records);
    CHECK(c->exchange_version == "2.154.0");

    f.http.reply(
        201, R"({"changes":[{"orgId":"o","resource":5,"id":"n","operation":"x"}],"mostRecentChangeId":1})");
    CHECK(f.ex.changes(1, 10).error().code == Errc::parse);
    f.http.reply(201, R"({"changes":[],"mostRecentChangeId":"9"})");
    CHECK(f.ex.changes(1, 10).error().code == Errc::parse);
    f.http.reply(200, R"({"changes":[],"mostRecentChangeId":9})");  // anax: 200 is not a write success
    CHECK(f.ex.changes(1, 10).error().code == Errc::http);

    f.http.reply(200, R"({"maxChangeId":1043})");
    auto max = f.ex.max_change_id();
    REQUIRE(max.has_value());
    CHECK(*max == 1043);
    CHECK(f.http.requests.back().url == "https://hub.example:3090/v1/changes/maxchangeid");
    f.http.reply(200, R"({"maxChangeId":1.5})");
    CHECK(f.ex.max_change_id().error().code == Errc::parse);
  }

  TEST_CASE("changes is retried like a read (idempotent)") {
    Fixture f;
    f.http.reply(503);
    f.http.drop();
    f.http.reply(
        201, R"({"changes":[],"mostRecentChangeId":5,"hitMaxRecords":false,"exchangeVersion":"2.154.0"})");
    auto c = f.ex.changes(1, 1000);
    REQUIRE(c.has_value());
    CHECK(f.http.requests.size() == 3);
    CHECK(f.sleeper.waits.size() == 2);
  }

  TEST_CASE("group read: 200 with ETag gives the document and revision; If-None-Match; 304 is not_modified") {
    Fixture f;
    f.http.reply(200, kGroupBody, {{"etag", "\"42\""}});
    auto r = f.ex.read("line1", std::nullopt);
    REQUIRE(r.has_value());
    CHECK(f.http.requests.at(0).method == "GET");
    CHECK(f.http.requests.at(0).url == "https://hub.example:3090/v1/orgs/myorg/hagroups/line1");
    CHECK(f.http.header(0, "If-None-Match") == "");
    CHECK_FALSE(r->not_modified);
    CHECK(r->document.revision == 42);
    CHECK(r->document.name == "line1");
    CHECK(r->document.members == std::vector<std::string>{"n1", "n2"});
    CHECK(r->document.settings.paused);
    REQUIRE(r->document.entry("n1") != nullptr);
    CHECK(r->document.entry("n1")->epoch == 3);
    CHECK(r->document.entry("n1")->state == State::upgrading);

    f.http.reply(304, "", {{"etag", "\"42\""}});
    auto nm = f.ex.read("line1", 42);
    REQUIRE(nm.has_value());
    CHECK(nm->not_modified);
    CHECK(f.http.header(1, "If-None-Match") == "\"42\"");
  }

  TEST_CASE("group read on a hub without the extension: missing ETag or 403 is unsupported") {
    Fixture f;
    f.http.reply(200, kGroupBody);
    auto no_etag = f.ex.read("line1", std::nullopt);
    REQUIRE_FALSE(no_etag.has_value());
    CHECK(no_etag.error().code == Errc::unsupported);
    CHECK(no_etag.error().message.find("no ETag") != std::string::npos);

    f.http.reply(
        403,
        R"({"code":"access-denied","msg":"Access denied: 'myorg/node1' does not have authorization: READ_MY_NODES node=myorg/#"})");
    auto denied = f.ex.read("line1", std::nullopt);
    REQUIRE_FALSE(denied.has_value());
    CHECK(denied.error().code == Errc::unsupported);
    CHECK(denied.error().http_status == 403);
    CHECK(denied.error().message.find("READ_MY_NODES") != std::string::npos);
    CHECK(f.http.requests.size() == 2);  // 403 is not retried

    f.http.reply(404, R"({"nodeGroups":[]})");
    CHECK(f.ex.read("nope", std::nullopt).error().code == Errc::not_found);

    f.http.reply(200, kGroupBody, {{"etag", "\"abc\""}});
    CHECK(f.ex.read("line1", std::nullopt).error().code == Errc::unsupported);

    f.http.reply(200, R"({"nodeGroups":[{"name":"line1","agentUpgrade":{"n1":{"state":"dancing"}}}]})",
                 {{"etag", "\"5\""}});
    auto bad = f.ex.read("line1", std::nullopt);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::parse);
    CHECK(bad.error().message.find("dancing") != std::string::npos);

    f.http.reply(200, "{\"nodeGroups\":[", {{"etag", "\"5\""}});
    CHECK(f.ex.read("line1", std::nullopt).error().code == Errc::parse);
  }

  TEST_CASE("reads retry 503 and transport errors with full-jitter backoff, then succeed") {
    Fixture f;
    f.http.reply(503, R"({"code":"x","msg":"busy"})");
    f.http.drop();
    f.http.reply(200, kGroupBody, {{"etag", "\"7\""}});
    auto r = f.ex.read("line1", std::nullopt);
    REQUIRE(r.has_value());
    CHECK(r->document.revision == 7);
    CHECK(f.http.requests.size() == 3);
    REQUIRE(f.sleeper.waits.size() == 2);
    CHECK(f.sleeper.waits[0] <= 200ms);  // attempt 0: [0, base]
    CHECK(f.sleeper.waits[1] <= 400ms);  // attempt 1: [0, 2 * base]
  }

  TEST_CASE("reads give up after RetryPolicy::attempts; a stop request ends the retries") {
    Fixture f;
    for (int i = 0; i < 6; ++i) f.http.reply(503);
    auto r = f.ex.read("line1", std::nullopt);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::http);
    CHECK(r.error().http_status == 503);
    CHECK(r.error().transient());
    CHECK(f.http.requests.size() == 4);
    CHECK(f.sleeper.waits.size() == 3);

    Fixture g;
    g.sleeper.stop = true;
    g.http.drop();
    g.http.reply(200, kGroupBody, {{"etag", "\"7\""}});
    auto stopped = g.ex.read("line1", std::nullopt);
    REQUIRE_FALSE(stopped.has_value());
    CHECK(stopped.error().code == Errc::cancelled);
    CHECK(g.http.requests.size() == 1);
  }

  TEST_CASE("a call's budget bounds all its tries together: a slow hub cannot hold the loop") {
    // A hub that answers nothing until the client gives up (each try's timeout, at most 200 ms).
    struct SlowHub final : HttpClient {
      std::vector<std::chrono::milliseconds> timeouts;
      Result<HttpResponse> perform(const HttpRequest& req) override {
        timeouts.push_back(req.timeout);
        std::this_thread::sleep_for(std::min(req.timeout > 0ms ? req.timeout : 200ms, 200ms));
        return fail(Errc::transport, "Operation timed out");
      }
    } hub;
    FakeSleeper sleeper;
    Exchange ex(hub, ExchangeEndpoint{"https://hub/v1", "", "o", "n1"}, RetryPolicy{4, 1ms, 2ms, 300ms},
                sleeper);
    auto t0 = std::chrono::steady_clock::now();
    auto r = ex.get_node();
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::transport);
    CHECK(took < 550ms);  // 4 tries of 200 ms without the budget
    REQUIRE(hub.timeouts.size() >= 2);
    CHECK(hub.timeouts.size() < 4);
    CHECK(hub.timeouts[0] <= 300ms);
    CHECK(hub.timeouts[1] <= 100ms + 5ms);  // what was left
    // Writes (never retried) get the budget as their timeout too.
    hub.timeouts.clear();
    (void)ex.write_entry("g", "n1", Entry{}, 1);
    REQUIRE(hub.timeouts.size() == 1);
    CHECK(hub.timeouts[0] <= 300ms);
  }

  TEST_CASE("4xx answers are never retried") {
    for (long status : {400L, 401L, 403L, 404L}) {
      CAPTURE(status);
      Fixture f;
      f.http.reply(status, R"({"code":"c","msg":"m"})");
      f.http.reply(200, kNodeBody);
      auto r = f.ex.get_node();
      REQUIRE_FALSE(r.has_value());
      CHECK(f.http.requests.size() == 1);
      CHECK(f.sleeper.waits.empty());
    }
  }

  TEST_CASE("write_entry: PUT with If-Match and the entry JSON; 201 gives the new revision") {
    Fixture f;
    f.http.reply(201, R"({"code":"ok","msg":"updated"})", {{"etag", "\"43\""}});
    Entry e;
    e.state = State::waiting;
    e.version = "1.0.0";
    e.target_version = "2.0.0";
    e.waiting_since = "2026-11-25T20:00:00.000000Z";
    e.last_seen = "2026-11-25T20:00:01.000000Z";
    e.message = "waiting for n1";
    e.write_id = "abc";
    auto rev = f.ex.write_entry("line1", "n2", e, 42);
    REQUIRE(rev.has_value());
    CHECK(*rev == 43);
    const auto& req = f.http.requests.at(0);
    CHECK(req.method == "PUT");
    CHECK(req.url == "https://hub.example:3090/v1/orgs/myorg/hagroups/line1/agentupgrade/n2");
    CHECK(f.http.header(0, "If-Match") == "\"42\"");
    CHECK(f.http.header(0, "If-Match-Scope").empty());  // the whole group
    CHECK(req.body == json::print(entry_to_json(e).get()));

    f.http.reply(201, R"({"code":"ok","msg":"updated"})", {{"etag", "\"45\""}});
    REQUIRE(f.ex.write_entry("line1", "n2", e, 43, WriteCondition::entry).has_value());
    CHECK(f.http.header(1, "If-Match") == "\"43\"");
    CHECK(f.http.header(1, "If-Match-Scope") == "entry");
  }

  TEST_CASE("write_entry: 412 is conflict, 428 precondition, no ETag unsupported") {
    Fixture f;
    Entry e;
    f.http.reply(412, R"({"code":"precondition-failed","msg":"revision is 44"})");
    auto stale = f.ex.write_entry("line1", "node1", e, 42);
    REQUIRE_FALSE(stale.has_value());
    CHECK(stale.error().code == Errc::conflict);
    CHECK(stale.error().http_status == 412);
    f.http.reply(428);
    CHECK(f.ex.write_entry("line1", "node1", e, 42).error().code == Errc::precondition);
    f.http.reply(201, R"({"code":"ok","msg":""})");
    CHECK(f.ex.write_entry("line1", "node1", e, 42).error().code == Errc::unsupported);
    f.http.reply(403, R"({"code":"access-denied","msg":"not your entry"})");
    CHECK(f.ex.write_entry("line1", "n2", e, 42).error().code == Errc::forbidden);
    CHECK(f.sleeper.waits.empty());
  }

  TEST_CASE("write_entry is never retried: 503 and a lost response go back to the caller") {
    Fixture f;
    Entry e;
    f.http.reply(503);
    f.http.reply(201, "", {{"etag", "\"43\""}});
    auto busy = f.ex.write_entry("line1", "node1", e, 42);
    REQUIRE_FALSE(busy.has_value());
    CHECK(busy.error().code == Errc::http);
    CHECK(f.http.requests.size() == 1);

    Fixture g;
    g.http.drop();
    g.http.reply(201, "", {{"etag", "\"43\""}});
    auto lost = g.ex.write_entry("line1", "node1", e, 42);
    REQUIRE_FALSE(lost.has_value());
    CHECK(lost.error().code == Errc::transport);
    CHECK(g.http.requests.size() == 1);
    CHECK(g.sleeper.waits.empty());
  }

  TEST_CASE("admin routes: delete_entry, put_settings and remove_member") {
    Fixture f;
    f.http.reply(204, "", {{"etag", "\"50\""}});
    auto del = f.admin.delete_entry("line1", "n3", 49);
    REQUIRE(del.has_value());
    CHECK(*del == 50);
    CHECK(f.http.requests.at(0).method == "DELETE");
    CHECK(f.http.requests.at(0).url ==
          "https://hub.example:3090/v1/orgs/myorg/hagroups/line1/agentupgrade/n3");
    CHECK(f.http.header(0, "If-Match") == "\"49\"");

    Settings s;
    s.max_concurrent = 2;
    s.min_available = 3;
    s.paused = true;
    f.http.reply(201, R"({"code":"ok","msg":""})", {{"etag", "\"51\""}});
    auto put = f.admin.put_settings("line1", s, 50);
    REQUIRE(put.has_value());
    CHECK(*put == 51);
    const auto& req = f.http.requests.at(1);
    CHECK(req.method == "PUT");
    CHECK(req.url == "https://hub.example:3090/v1/orgs/myorg/hagroups/line1/agentupgrade");
    CHECK(f.http.header(1, "If-Match") == "\"50\"");
    auto body = body_of(req);
    CHECK(json::get_int(body.get(), "maxConcurrent").value() == 2);
    CHECK(json::get_int(body.get(), "minAvailable").value() == 3);
    CHECK(json::get_bool(body.get(), "paused").value());

    f.http.reply(412);
    CHECK(f.admin.put_settings("line1", s, 50).error().code == Errc::conflict);

    f.http.reply(204);
    REQUIRE(f.admin.remove_member("line1", "n3").has_value());
    CHECK(f.http.requests.back().method == "DELETE");
    CHECK(f.http.requests.back().url == "https://hub.example:3090/v1/orgs/myorg/hagroups/line1/nodes/n3");
    f.http.reply(
        404,
        R"({"code":"not-found","msg":"high availability node group member 'myorg/line1/n3' not found"})");
    auto gone = f.admin.remove_member("line1", "n3");
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().code == Errc::not_found);
    CHECK(gone.error().message.find("myorg/line1/n3") != std::string::npos);
  }
}

namespace {

// The stand-in on 127.0.0.1 with org o, its admin and node n1; Exchange calls are made as n1.
class StandinFixture {
 public:
  StandinFixture() {
    standin::HubOptions o;
    o.state_path = dir_.file("state.json");
    auto h = standin::InProcessHub::start(o);
    REQUIRE_MESSAGE(h.has_value(), h.error().describe());
    hub_ = std::move(*h);
    root_ = make_curl_http_client(options("root/root", "rootpw"));
    call("POST", "/v1/orgs/o", R"({"label":"o","description":"test"})", 201);
    call("POST", "/v1/orgs/o/users/admin", R"({"password":"adminpw","admin":true})", 201);
    call("PUT", "/v1/orgs/o/nodes/n1",
         R"({"token":"tok1","name":"n1","pattern":"","arch":"amd64","softwareVersions":{"horizon":"1.0.0"}})",
         201);
    node_http_ = make_curl_http_client(options("o/n1", "tok1"));
    ex = std::make_unique<Exchange>(*node_http_, ExchangeEndpoint{base() + "/v1", base() + "/css", "o", "n1"},
                                    RetryPolicy{3, 1ms, 2ms}, sleeper);
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(hub_->port()); }

  // A request as root; REQUIREs the status.
  void call(const std::string& method, const std::string& path, const std::string& body, long want) {
    auto r = root_->perform(HttpRequest{method, base() + path, {}, body});
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    REQUIRE_MESSAGE(r->status == want,
                    std::string(method + " " + path + ": " + std::to_string(r->status) + " " + r->body));
  }
  void put_data(const std::string& org, const std::string& type, const std::string& id,
                const std::string& data) {
    call("PUT", "/css/api/v1/objects/" + org + "/" + type + "/" + id + "/data", data, 204);
  }
  void put_meta(const std::string& org, const std::string& type, const std::string& id,
                const std::string& meta) {
    call("PUT", "/css/api/v1/objects/" + org + "/" + type + "/" + id, R"({"meta":)" + meta + "}", 204);
  }

  testing::FakeSleeper sleeper;
  std::unique_ptr<Exchange> ex;

 private:
  static HttpOptions options(const std::string& user, const std::string& password) {
    HttpOptions o;
    o.connect_timeout = 2s;
    o.total_timeout = 5s;
    o.basic_user = user;
    o.basic_password = password;
    return o;
  }

  testing::TempDir dir_;
  std::unique_ptr<standin::InProcessHub> hub_;
  std::unique_ptr<HttpClient> root_;
  std::unique_ptr<HttpClient> node_http_;
};

const std::string kHexA(64, 'a');
const std::string kHexB = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF";

}  // namespace

TEST_SUITE("exchange") {
  TEST_CASE("object metadata from the stand-in: the edge-sync-service fields; no data means no object") {
    StandinFixture f;
    const std::string type = "agent_software_files-2.0.0";
    f.put_data("IBM", type, "horizon.tar.gz", std::string(1234, 'x'));
    f.put_meta("IBM", type, "horizon.tar.gz",
               R"({"objectID":"horizon.tar.gz","objectType":")" + type +
                   R"(","description":"agent 2.0.0","hashAlgorithm":"SHA256","signature":"c2lnbmF0dXJl"})");
    auto m = f.ex->objects().get_object_metadata("IBM", type,
                                                 "horizon.tar.gz");  // a node reads org IBM's agent files
    REQUIRE_MESSAGE(m.has_value(), m.error().describe());
    CHECK(m->object_id == "horizon.tar.gz");
    CHECK(m->object_type == type);
    CHECK(m->size == 1234);
    CHECK(m->description == "agent 2.0.0");
    CHECK(m->hash_algorithm == "SHA256");
    CHECK(m->signature == "c2lnbmF0dXJl");
    CHECK(f.ex->objects().object_data_url("IBM", type, "horizon.tar.gz") ==
          f.base() + "/css/api/v1/objects/IBM/agent_software_files-2.0.0/horizon.tar.gz/data");

    // Data without a metadata PUT: the stand-in still describes it, unsigned.
    f.put_data("IBM", type, "agent-install.sh", "#!/bin/sh\n");
    auto bare = f.ex->objects().get_object_metadata("IBM", type, "agent-install.sh");
    REQUIRE_MESSAGE(bare.has_value(), bare.error().describe());
    CHECK(bare->size == 10);
    CHECK(bare->signature == "");
    CHECK(bare->hash_algorithm == "");

    // Metadata without data: objectSize 0, refused as anax refuses it.
    f.put_meta("IBM", type, "agent-install.cfg", R"({"objectID":"agent-install.cfg","description":"later"})");
    auto empty = f.ex->objects().get_object_metadata("IBM", type, "agent-install.cfg");
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().code == Errc::parse);
    CHECK(empty.error().message.find("objectSize") != std::string::npos);

    auto missing = f.ex->objects().get_object_metadata("IBM", type, "nothing");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == Errc::not_found);
  }

  TEST_CASE("object metadata: wrong types and another object's metadata are parse errors naming the field") {
    struct Case {
      const char* body;
      const char* field;
    };
    for (auto [body, field] :
         {Case{R"({"objectID":"f","objectType":"t","objectSize":"12"})", "objectSize"},
          Case{R"({"objectID":"f","objectType":"t","objectSize":1.5})", "objectSize"},
          Case{R"({"objectID":"f","objectType":"t","objectSize":12,"signature":7})", "signature"},
          Case{R"({"objectID":"f","objectType":"t","objectSize":12,"hashAlgorithm":[]})", "hashAlgorithm"},
          Case{R"({"objectID":"f","objectType":"t","objectSize":12,"description":{}})", "description"},
          Case{R"({"objectID":5,"objectType":"t","objectSize":12})", "objectID"},
          Case{R"({"objectType":"t","objectSize":12})", "objectID"},
          Case{R"({"objectID":"g","objectType":"t","objectSize":12})", "'g'"},
          Case{R"({"objectID":"f","objectType":"u","objectSize":12})", "'u'"},
          Case{R"({"objectID":"f","objectType":"t","objectSize":-1})", "objectSize"},
          Case{R"(["f"])", "must be an object"}, Case{R"({"objectID":)", "metadata"}}) {
      CAPTURE(body);
      Fixture f;
      f.http.reply(200, body);
      auto m = f.ex.objects().get_object_metadata("IBM", "t", "f");
      REQUIRE_FALSE(m.has_value());
      CHECK(m.error().code == Errc::parse);
      CHECK(m.error().message.find(field) != std::string::npos);
    }
    Fixture g;
    g.http.reply(503);
    g.http.reply(200, R"({"objectID":"f","objectType":"t","objectSize":12})");
    auto retried = g.ex.objects().get_object_metadata("IBM", "t", "f");  // a read: retried
    REQUIRE(retried.has_value());
    CHECK(g.http.requests.at(0).url == "https://hub.example:9443/css/api/v1/objects/IBM/t/f");

    FakeHttpClient http;
    FakeSleeper sleeper;
    Exchange no_css(http, ExchangeEndpoint{"http://h/v1", "", "o", "n"}, RetryPolicy{}, sleeper);
    CHECK(no_css.objects().get_object_metadata("IBM", "t", "f").error().code == Errc::config);
    CHECK(no_css.objects().get_signed_manifest("m").error().code == Errc::config);
    CHECK(http.requests.empty());
  }

  TEST_CASE("signed manifest: the bytes exactly as stored, the signature from the metadata, parsed") {
    StandinFixture f;
    // Odd spacing and key order: what is signed is the bytes, not a re-serialisation.
    const std::string manifest =
        "{ \"softwareUpgrade\" : {\"version\":\"2.0.0\", \"files\":[\"horizon.deb\",\"agent-install.sh\"],\n"
        "  \"sha256\":{\"horizon.deb\":\"" +
        kHexA + "\",\"agent-install.sh\":\"" + kHexB +
        "\"},\n"
        "  \"sizes\":{\"horizon.deb\":1048576,\"agent-install.sh\":0}},\n"
        "  \"certificateUpgrade\":{\"files\":[],\"version\":\"latest\"} }\n";
    f.put_data("o", "agent_upgrade_manifests", "man1", manifest);
    f.put_meta("o", "agent_upgrade_manifests", "man1",
               R"({"hashAlgorithm":"SHA256","signature":"AAEC/w=="})");

    for (const char* ref : {"man1", "o/man1"}) {
      CAPTURE(ref);
      auto m = f.ex->objects().get_signed_manifest(ref);
      REQUIRE_MESSAGE(m.has_value(), m.error().describe());
      CHECK(m->org == "o");
      CHECK(m->id == "man1");
      CHECK((m->bytes == manifest));
      CHECK(m->signature == "AAEC/w==");
      CHECK(m->manifest.software.version == "2.0.0");
      CHECK(m->manifest.software.files == std::vector<std::string>{"horizon.deb", "agent-install.sh"});
      CHECK(m->manifest.software.sha256.at("horizon.deb") == kHexA);
      CHECK(m->manifest.software.sha256.at("agent-install.sh") ==
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");  // lower-cased
      CHECK(m->manifest.software.sizes.at("horizon.deb") == 1048576u);
      CHECK(m->manifest.software.sizes.at("agent-install.sh") == 0u);
      CHECK(m->manifest.certificate.version == "latest");
      CHECK(m->manifest.configuration.files.empty());
    }
    // get_manifest parses the same document the same way.
    auto plain = f.ex->get_manifest("man1");
    REQUIRE_MESSAGE(plain.has_value(), plain.error().describe());
    CHECK(plain->software.sha256 == f.ex->objects().get_signed_manifest("man1")->manifest.software.sha256);
    CHECK(plain->software.sizes.size() == 2);

    // Data only (no metadata PUT): unsigned, "" signature; the caller decides.
    f.put_data("o", "agent_upgrade_manifests", "man2",
               R"({"softwareUpgrade":{"files":[],"version":"3.0.0"}})");
    auto unsigned_m = f.ex->objects().get_signed_manifest("man2");
    REQUIRE_MESSAGE(unsigned_m.has_value(), unsigned_m.error().describe());
    CHECK(unsigned_m->signature == "");
    CHECK(unsigned_m->manifest.software.version == "3.0.0");
    CHECK(unsigned_m->manifest.software.sha256.empty());

    CHECK(f.ex->objects().get_signed_manifest("missing").error().code == Errc::not_found);
    CHECK(f.ex->objects().get_signed_manifest("o/").error().code == Errc::parse);
  }

  TEST_CASE("manifest extension: wrong types are parse errors naming the field") {
    StandinFixture f;
    struct Case {
      std::string section;
      const char* field;
    };
    for (const auto& [section, field] :
         {Case{R"("sha256":["x"])", "softwareUpgrade.sha256"},
          Case{R"("sha256":{"a":"abc"})", "softwareUpgrade.sha256.a"},
          Case{R"("sha256":{"a":")" + std::string(64, 'g') + "\"}", "softwareUpgrade.sha256.a"},
          Case{R"("sha256":{"a":)" + std::string(64, '1') + "}", "softwareUpgrade.sha256.a"},
          Case{R"("sizes":[1])", "softwareUpgrade.sizes"},
          Case{R"("sizes":{"a":-1})", "softwareUpgrade.sizes.a"},
          Case{R"("sizes":{"a":"10"})", "softwareUpgrade.sizes.a"},
          Case{R"("sizes":{"a":1.5})", "softwareUpgrade.sizes.a"}}) {
      CAPTURE(section);
      f.put_data("o", "agent_upgrade_manifests", "bad",
                 R"({"softwareUpgrade":{"files":["a"],"version":"2.0.0",)" + section + "}}");
      auto m = f.ex->objects().get_signed_manifest("bad");
      REQUIRE_FALSE(m.has_value());
      CHECK(m.error().code == Errc::parse);
      CHECK(m.error().message.find(std::string("'") + field + "'") != std::string::npos);
      CHECK(f.ex->get_manifest("bad").error().code == Errc::parse);
    }
    // The extension is optional, also in the other sections.
    f.put_data("o", "agent_upgrade_manifests", "good",
               R"({"softwareUpgrade":{"files":["a"],"version":"2.0.0","sha256":null},)"
               R"("configurationUpgrade":{"files":["c"],"version":"1","sizes":{"c":3}}})");
    auto good = f.ex->objects().get_signed_manifest("good");
    REQUIRE_MESSAGE(good.has_value(), good.error().describe());
    CHECK(good->manifest.software.sha256.empty());
    CHECK(good->manifest.configuration.sizes.at("c") == 3u);
  }

  TEST_CASE("signed manifest: data whose size differs from the metadata's is refused") {
    Fixture f;
    f.http.reply(
        200, R"({"objectID":"m","objectType":"agent_upgrade_manifests","objectSize":5,"signature":"c2ln"})");
    f.http.reply(200, R"({"softwareUpgrade":{"files":[],"version":"2.0.0"}})");
    auto m = f.ex.objects().get_signed_manifest("m");
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().code == Errc::verification);
    CHECK(m.error().message.find("objectSize 5") != std::string::npos);
    REQUIRE(f.http.requests.size() == 2);
    CHECK(f.http.requests[0].url ==
          "https://hub.example:9443/css/api/v1/objects/myorg/agent_upgrade_manifests/m");
    CHECK(f.http.requests[1].url ==
          "https://hub.example:9443/css/api/v1/objects/myorg/agent_upgrade_manifests/m/data");
  }

  TEST_CASE("node policy from the stand-in: typed as anax types it, management properties win; 404 is none") {
    StandinFixture f;
    auto none = f.ex->get_node_policy();
    REQUIRE_MESSAGE(none.has_value(), none.error().describe());
    CHECK_FALSE(none->has_value());

    f.call("PUT", "/v1/orgs/o/nodes/n1/policy", R"({
      "properties":[
        {"name":"purpose","value":"upgrade-test"},
        {"name":"ram","value":4096,"type":"int"},
        {"name":"gpu","value":true,"type":"boolean"},
        {"name":"agentVersion","value":"2.1.0","type":"version"},
        {"name":"zones","value":"east, west,north","type":"list of strings"},
        {"name":"count","value":"12","type":"int"},
        {"name":"tier","value":"prod"}],
      "constraints":["a == b"],
      "deployment":{"properties":[{"name":"deployonly","value":"x"}],"constraints":[]},
      "management":{"properties":[{"name":"tier","value":"canary","type":"string"},
                                  {"name":"ring","value":2.5}],"constraints":[]},
      "nodePolicyVersion":"1"})",
           201);
    auto got = f.ex->get_node_policy();
    REQUIRE_MESSAGE(got.has_value(), got.error().describe());
    REQUIRE(got->has_value());
    const Properties& p = **got;
    using T = PropertyValue::Type;
    CHECK(p.size() == 8);
    CHECK(p.at("purpose").type == T::string);
    CHECK(p.at("purpose").text == "upgrade-test");
    CHECK(p.at("ram").type == T::number);
    CHECK(p.at("ram").number == 4096);
    CHECK(p.at("gpu").type == T::boolean);
    CHECK(p.at("gpu").boolean);
    CHECK(p.at("agentVersion").type == T::version);
    CHECK(p.at("agentVersion").text == "2.1.0");
    CHECK(p.at("zones").type == T::list);
    CHECK(p.at("zones").text == "east,west,north");
    CHECK(p.at("count").type == T::string);  // a string stays a string whatever "type" says
    CHECK(p.at("tier").text == "canary");    // management wins
    CHECK(p.at("ring").number == 2.5);
    CHECK_FALSE(p.count("deployonly"));  // deployment properties are not management ones
    auto holds =
        evaluate_constraints({"purpose == upgrade-test && ram >= 2048", "gpu == true",
                              "agentVersion in [2.0.0,3.0.0)", "zones in \"west\"", "tier == canary"},
                             p);
    REQUIRE_MESSAGE(holds.has_value(), holds.error().describe());
    CHECK(*holds);

    f.call("DELETE", "/v1/orgs/o/nodes/n1/policy", "", 204);
    auto gone = f.ex->get_node_policy();
    REQUIRE(gone.has_value());
    CHECK_FALSE(gone->has_value());
  }

  TEST_CASE("node policy: wrong types are parse errors naming the property; reads retry; 403 is an error") {
    struct Case {
      const char* body;
      const char* text;
    };
    for (auto [body, text] :
         {Case{R"({"properties":{"name":"a","value":"b"}})", "'properties'"},
          Case{R"({"properties":["a"]})", "properties item"},
          Case{R"({"properties":[{"value":"b"}]})", "name"},
          Case{R"({"properties":[{"name":7,"value":"b"}]})", "name"},
          Case{R"({"properties":[{"name":"","value":"b"}]})", "name"},
          Case{R"({"properties":[{"name":"a"}]})", "'a'"},
          Case{R"({"properties":[{"name":"a","value":null}]})", "'a'"},
          Case{R"({"properties":[{"name":"a","value":{"x":1}}]})", "'a'"},
          Case{R"({"properties":[{"name":"a","value":["x"],"type":"list of strings"}]})", "'a'"},
          Case{R"({"properties":[{"name":"a","value":"b","type":5}]})", "'a'"},
          Case{R"({"management":[]})", "'management'"},
          Case{R"({"management":{"properties":[{"name":"m","value":[]}]}})",
               "management.properties item 'm'"},
          Case{R"([])", "must be an object"}}) {
      CAPTURE(body);
      Fixture f;
      f.http.reply(200, body);
      auto p = f.ex.get_node_policy();
      REQUIRE_FALSE(p.has_value());
      CHECK(p.error().code == Errc::parse);
      CHECK(p.error().message.find(text) != std::string::npos);
      CHECK(f.http.requests.at(0).url == "https://hub.example:3090/v1/orgs/myorg/nodes/node1/policy");
    }
    Fixture g;
    g.http.reply(502);
    g.http.drop();
    g.http.reply(200, R"({"properties":[],"management":{"properties":[{"name":"m","value":"v"}]}})");
    auto retried = g.ex.get_node_policy();
    REQUIRE(retried.has_value());
    REQUIRE(retried->has_value());
    CHECK((*retried)->at("m").text == "v");
    CHECK(g.http.requests.size() == 3);

    Fixture h;
    h.http.reply(403, R"({"code":"access-denied","msg":"no"})");
    CHECK(h.ex.get_node_policy().error().code == Errc::forbidden);
  }
}
