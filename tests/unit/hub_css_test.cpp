// The stand-in's CSS metadata, node policy and mid-body faults on object data,
// over HTTP on 127.0.0.1, port 0; the faults as the real curl client and
// fetch_all see them.
#include <cjson/cJSON.h>
#include <doctest/doctest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agentd/exchange.h"
#include "agentd/http.h"
#include "agentd/json.h"
#include "harness/harness.h"
#include "hub/in_process.h"
#include "support/fake_sleeper.h"
#include "support/recording_http.h"
#include "support/standin_hub.h"
#include "upgrade/fetch.h"
#include "upgrade/verify.h"

using namespace agentd;
using namespace std::chrono_literals;
using agentd::harness::pattern;
using agentd::harness::slurp;

namespace {

using testing::FakeSleeper;
using testing::kAdmin;
using testing::kRoot;
using testing::RecordingHttp;
using testing::Res;
constexpr const char* kAlice = "o/alice:alicepw";
constexpr const char* kBob = "o/bob:bobpw";
constexpr const char* kN1 = "o/n1:tok1";
constexpr const char* kN2 = "o/n2:tok2";

std::string str(const cJSON* o, const char* key) {
  auto v = json::get_string(o, key);
  return v ? *v : std::string("<missing>");
}

std::uint64_t size_of(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// The stand-in in this process with org o: admin, users alice and bob, nodes n1
// (owned by alice) and n2 (owned by bob). restart() keeps the state file.
class CssHub : public testing::StandinHub {
 public:
  CssHub() {
    seed_org();
    REQUIRE(call("POST", "/v1/orgs/o/users/alice", kAdmin, R"({"password":"alicepw"})").status == 201);
    REQUIRE(call("POST", "/v1/orgs/o/users/bob", kAdmin, R"({"password":"bobpw"})").status == 201);
    REQUIRE(call("PUT", "/v1/orgs/o/nodes/n1", kAlice, R"({"token":"tok1","name":"n1"})").status == 201);
    REQUIRE(call("PUT", "/v1/orgs/o/nodes/n2", kBob, R"({"token":"tok2","name":"n2"})").status == 201);
  }

  static std::string object_path(const std::string& id, bool data = true) {
    return "/css/api/v1/objects/o/agent_software_files-2.0.0/" + id + (data ? "/data" : "");
  }
  void put_object(const std::string& id, const std::string& content) {
    REQUIRE(call("PUT", object_path(id), kRoot, content).status == 204);
  }
  void set_faults(const std::string& body) {
    Res r = StandinHub::set_faults(body);
    REQUIRE_MESSAGE(r.status == 201, r.body);
  }
  json::Ptr body_fault() {
    Res r = call("GET", "/v1/standin/faults", kRoot);
    REQUIRE(r.status == 200);
    return json::clone(cJSON_GetObjectItemCaseSensitive(r.j(), "body"));
  }

  // A curl client authenticated as `user` (faults spare root: data is fetched as a node).
  std::unique_ptr<HttpClient> client(const std::string& user = "o/n1", const std::string& pw = "tok1") const {
    HttpOptions o;
    o.connect_timeout = 2s;
    o.total_timeout = 10s;
    o.low_speed_time = 5s;
    o.basic_user = user;
    o.basic_password = pw;
    return make_curl_http_client(o);
  }
};

struct Seen {
  std::string resource, id, operation;
};

std::vector<Seen> changes(CssHub& hub, const std::string& auth) {
  Res r = hub.call("POST", "/v1/orgs/o/changes", auth, R"({"changeId":0,"maxRecords":1000})");
  REQUIRE(r.status == 201);
  std::vector<Seen> out;
  const cJSON* c = nullptr;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(r.j(), "changes")) {
    out.push_back({str(c, "resource"), str(c, "id"), str(c, "operation")});
  }
  return out;
}

bool has_change(const std::vector<Seen>& v, const std::string& resource, const std::string& id,
                const std::string& operation) {
  for (const auto& s : v)
    if (s.resource == resource && s.id == id && s.operation == operation) return true;
  return false;
}

}  // namespace

TEST_SUITE("hub") {
  TEST_CASE("CSS metadata: written or updated apart from the data, both kept; survives a restart") {
    CssHub hub;
    const std::string meta_path = CssHub::object_path("pkg.deb", false);
    const std::string meta =
        R"({"meta":{"objectID":"pkg.deb","objectType":"agent_software_files-2.0.0","description":"agent",)"
        R"("hashAlgorithm":"SHA256","signature":"c2lnLTE="}})";
    CHECK(hub.call("PUT", meta_path, kN1, meta).status == 403);  // nodes do not publish
    CHECK(hub.call("PUT", meta_path, "", meta).status == 401);
    CHECK(hub.call("GET", meta_path, kN1).status == 404);
    CHECK(hub.call("PUT", meta_path, kAlice, meta).status == 204);  // a user of the org may

    // Metadata without data: objectSize 0, and no data to fetch.
    Res m = hub.call("GET", meta_path, kN1);
    REQUIRE(m.status == 200);
    CHECK(json::get_int(m.j(), "objectSize").value_or(-1) == 0);
    CHECK(str(m.j(), "signature") == "c2lnLTE=");
    CHECK(hub.call("GET", CssHub::object_path("pkg.deb"), kN1).status == 404);

    const std::string content = pattern(5000);
    hub.put_object("pkg.deb", content);
    m = hub.call("GET", meta_path, kN1);
    REQUIRE(m.status == 200);
    CHECK(str(m.j(), "objectID") == "pkg.deb");
    CHECK(str(m.j(), "objectType") == "agent_software_files-2.0.0");
    CHECK(str(m.j(), "destinationOrgID") == "o");
    CHECK(json::get_int(m.j(), "objectSize").value_or(-1) == 5000);
    CHECK(str(m.j(), "description") == "agent");
    CHECK(str(m.j(), "hashAlgorithm") == "SHA256");
    CHECK(str(m.j(), "signature") == "c2lnLTE=");

    // A new signature leaves the data alone; new data leaves the metadata alone.
    REQUIRE(
        hub.call("PUT", meta_path, kRoot, R"({"meta":{"signature":"c2lnLTI=","description":"v2"}})").status ==
        204);
    CHECK((hub.call("GET", CssHub::object_path("pkg.deb"), kN1).body == content));
    const std::string content2 = pattern(7000, 2);
    hub.put_object("pkg.deb", content2);
    m = hub.call("GET", meta_path, kN1);
    CHECK(str(m.j(), "signature") == "c2lnLTI=");
    CHECK(str(m.j(), "description") == "v2");
    CHECK(json::get_int(m.j(), "objectSize").value_or(-1) == 7000);

    hub.restart();
    m = hub.call("GET", meta_path, kN1);
    REQUIRE(m.status == 200);
    CHECK(str(m.j(), "signature") == "c2lnLTI=");
    CHECK(str(m.j(), "hashAlgorithm") == "");  // the last PUT did not set it
    CHECK(json::get_int(m.j(), "objectSize").value_or(-1) == 7000);
    CHECK((hub.call("GET", CssHub::object_path("pkg.deb"), kN1).body == content2));

    // Bad metadata bodies are 400 and change nothing.
    for (const char* bad : {R"({})", R"({"meta":"x"})", R"({"meta":{"signature":7}})",
                            R"({"meta":{"description":[]}})", R"({"meta":{"objectID":"other.deb"}})",
                            R"({"meta":{"objectType":"agent_config_files-1"}})", "nope"}) {
      CAPTURE(bad);
      CHECK(hub.call("PUT", meta_path, kRoot, bad).status == 400);
    }
    CHECK(str(hub.call("GET", meta_path, kN1).j(), "signature") == "c2lnLTI=");
    // Another org's objects are not readable (only IBM's shared agent files are).
    CHECK(hub.call("GET", "/css/api/v1/objects/q/t/x", kN1).status == 403);
  }

  TEST_CASE("node policy: the node, its owner, an admin or root write it; 404 when none; change rows; kept") {
    CssHub hub;
    const std::string path = "/v1/orgs/o/nodes/n1/policy";
    const std::string policy =
        R"({"properties":[{"name":"purpose","value":"edge"},{"name":"ram","value":4096,"type":"int"}],)"
        R"("constraints":[],"deployment":{"properties":[],"constraints":[]},)"
        R"("management":{"properties":[{"name":"ring","value":"canary"}],"constraints":["a == b"]},)"
        R"("nodePolicyVersion":"1"})";
    Res none = hub.call("GET", path, kN1);
    CHECK(none.status == 404);
    CHECK(str(none.j(), "code") == "not-found");

    CHECK(hub.call("PUT", path, kBob, policy).status == 403);  // not the owner
    CHECK(hub.call("PUT", path, kN2, policy).status == 403);   // another node
    CHECK(hub.call("PUT", "/v1/orgs/o/nodes/zz/policy", kAdmin, policy).status == 404);
    CHECK(hub.call("PUT", path, kN1, R"({"properties":{}})").status == 400);
    CHECK(hub.call("PUT", path, kN1, R"({"properties":[{"value":"x"}]})").status == 400);
    CHECK(hub.call("PUT", path, kN1, R"({"management":[]})").status == 400);
    CHECK(hub.call("PUT", path, kN1, R"({"constraints":[1]})").status == 400);
    for (const char* who : {kN1, kAlice, kAdmin, kRoot}) {
      CAPTURE(who);
      Res put = hub.call("PUT", path, who, policy);
      CHECK(put.status == 201);
      CHECK(str(put.j(), "code") == "ok");
    }

    for (const char* who : {kN1, kAlice, kAdmin, kRoot}) {
      CAPTURE(who);
      Res got = hub.call("GET", path, who);
      REQUIRE(got.status == 200);
      const cJSON* props = cJSON_GetObjectItemCaseSensitive(got.j(), "properties");
      REQUIRE(cJSON_GetArraySize(props) == 2);
      CHECK(json::get_int(cJSON_GetArrayItem(props, 1), "value").value_or(0) == 4096);
      CHECK(str(cJSON_GetArrayItem(props, 1), "type") == "int");
      const cJSON* mgmt = cJSON_GetObjectItemCaseSensitive(got.j(), "management");
      CHECK(str(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mgmt, "properties"), 0), "value") ==
            "canary");
      CHECK(json::opt_string_array(mgmt, "constraints").value() == std::vector<std::string>{"a == b"});
      CHECK(str(got.j(), "nodePolicyVersion") == "1");
      CHECK(str(got.j(), "lastUpdated") != "");
    }
    CHECK(hub.call("GET", path, kN2).status == 403);
    CHECK(hub.call("GET", path, kBob).status == 403);

    // EX route/node/Policy.scala: category node, resource nodepolicies, "created/modified".
    CHECK(has_change(changes(hub, kN1), "nodepolicies", "n1", "created/modified"));
    CHECK_FALSE(has_change(changes(hub, kN2), "nodepolicies", "n1", "created/modified"));  // not its own

    hub.restart();
    Res kept = hub.call("GET", path, kN1);
    CHECK(kept.status == 200);
    CHECK(str(kept.j(), "nodePolicyVersion") == "1");

    CHECK(hub.call("DELETE", path, kN2).status == 403);
    CHECK(hub.call("DELETE", path, kAlice).status == 204);
    CHECK(hub.call("GET", path, kN1).status == 404);
    CHECK(hub.call("DELETE", path, kAlice).status == 404);
    CHECK(has_change(changes(hub, kN1), "nodepolicies", "n1", "deleted"));
  }

  TEST_CASE("body faults: parsed and shown; root, metadata and other paths are spared") {
    CssHub hub;
    for (const char* bad :
         {R"({"body":{"kind":"explode"}})", R"({"body":{"kind":"slow"}})",
          R"({"body":{"kind":"truncate","afterBytes":-1}})", R"({"body":{"kind":"truncate","count":-2}})",
          R"({"body":"truncate"})", R"({"body":{"kind":"slow","bytesPerSecond":"9"}})"}) {
      CAPTURE(bad);
      CHECK(hub.call("PUT", "/v1/standin/faults", kRoot, bad).status == 400);
    }
    hub.set_faults(R"({"body":{"kind":"truncate","afterBytes":10,"count":0,"pathContains":"/a.bin/"}})");
    auto shown = hub.body_fault();
    CHECK(str(shown.get(), "kind") == "truncate");
    CHECK(json::get_int(shown.get(), "afterBytes").value_or(-1) == 10);
    CHECK(str(shown.get(), "pathContains") == "/a.bin/");

    const std::string content = pattern(1000);
    hub.put_object("a.bin", content);
    hub.put_object("b.bin", content);
    CHECK((hub.call("GET", CssHub::object_path("a.bin"), kRoot).body == content));   // root is spared
    CHECK((hub.call("GET", CssHub::object_path("b.bin"), kN1).body == content));     // another path
    CHECK(hub.call("GET", CssHub::object_path("a.bin", false), kN1).status == 200);  // metadata
    CHECK(hub.call("GET", CssHub::object_path("a.bin"), kN1).status == -1);          // broken
    CHECK(hub.call("GET", CssHub::object_path("a.bin"), kN1).status == -1);          // count 0: every time
    hub.set_faults("{}");
    CHECK((hub.call("GET", CssHub::object_path("a.bin"), kN1).body == content));
  }

  TEST_CASE("truncate: a transient error and a .part to resume from, also for a 206; count runs out") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(100'000, 3);
    hub.put_object("obj", content);
    auto client = hub.client();
    const std::string url = hub.url(CssHub::object_path("obj"));
    const std::string part = dir.file("obj.part");
    hub.set_faults(R"({"body":{"kind":"truncate","afterBytes":30000,"count":2}})");

    auto r = client->download({"GET", url, {}, ""}, part, 0, content.size(), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK(r.error().transient());
    CHECK(size_of(part) == 30'000u);
    CHECK((slurp(part) == content.substr(0, 30'000)));

    // The resumed request (206) is cut 30000 bytes into its own body.
    r = client->download({"GET", url, {}, ""}, part, 30'000, content.size(), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().transient());
    CHECK(size_of(part) == 60'000u);
    CHECK(str(hub.body_fault().get(), "kind") == "");  // both damaged responses used up

    r = client->download({"GET", url, {}, ""}, part, 60'000, content.size(), {});
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->status == 206);
    CHECK((slurp(part) == content));
  }

  TEST_CASE(
      "wrong-length: a Content-Length larger than the body is an error even when the data is all there") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(20'000, 4);
    hub.put_object("obj", content);
    auto client = hub.client();
    const std::string url = hub.url(CssHub::object_path("obj"));
    hub.set_faults(R"({"body":{"kind":"wrong-length","afterBytes":1000000}})");

    auto r = client->download({"GET", url, {}, ""}, dir.file("a.part"), 0, 1'000'000, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK((slurp(dir.file("a.part")) == content));  // every byte came, the promised last one did not

    // With the expected size as the cap the announced length alone is refused.
    r = client->download({"GET", url, {}, ""}, dir.file("b.part"), 0, content.size(), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::too_large);

    hub.set_faults(R"({"body":{"kind":"wrong-length","afterBytes":500}})");
    r = client->download({"GET", url, {}, ""}, dir.file("c.part"), 0, 1'000'000, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK(size_of(dir.file("c.part")) == 500u);
  }

  TEST_CASE("slow: the transfer completes at about the rate asked for") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(24'000, 5);
    hub.put_object("obj", content);
    auto client = hub.client();
    // 4000 bytes at once, then 20000 at 50000 B/s: about 0.4 s.
    hub.set_faults(R"({"body":{"kind":"slow","afterBytes":4000,"bytesPerSecond":50000}})");
    auto t0 = std::chrono::steady_clock::now();
    auto r = client->download({"GET", hub.url(CssHub::object_path("obj")), {}, ""}, dir.file("obj.part"), 0,
                              content.size(), {});
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->status == 200);
    CHECK((slurp(dir.file("obj.part")) == content));
    CHECK(took >= 350ms);
    CHECK(took < 5s);
  }

  TEST_CASE("slow: stopping the server does not wait for a slow transfer") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(1'000'000, 6);
    hub.put_object("obj", content);
    hub.set_faults(R"({"body":{"kind":"slow","afterBytes":1000,"bytesPerSecond":1000}})");  // ~17 minutes
    std::atomic<std::uint64_t> got{0};
    Result<HttpResponse> result = fail(Errc::internal, "not run");
    auto client = hub.client();
    const std::string url = hub.url(CssHub::object_path("obj"));
    std::thread t([&] {
      result = client->download({"GET", url, {}, ""}, dir.file("obj.part"), 0, content.size(),
                                [&](std::uint64_t done, std::uint64_t) { got = done; });
    });
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (got.load() < 1000 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    CHECK(got.load() >= 1000u);
    auto t0 = std::chrono::steady_clock::now();
    hub.stop();
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    t.join();
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error().transient());
  }

  TEST_CASE(
      "error-midway: the transfer breaks, the next request is 503, fetch_all retries to the whole file") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(80'000, 7);
    hub.put_object("obj", content);
    hub.set_faults(R"({"body":{"kind":"error-midway","afterBytes":20000,"count":1,"pathContains":"/obj/"}})");

    // By hand: broken, then 503 once, then the rest.
    auto client = hub.client();
    const std::string url = hub.url(CssHub::object_path("obj"));
    const std::string part = dir.file("manual.part");
    auto r = client->download({"GET", url, {}, ""}, part, 0, content.size(), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK(size_of(part) == 20'000u);
    r = client->download({"GET", url, {}, ""}, part, 20'000, content.size(), {});
    REQUIRE(r.has_value());
    CHECK(r->status == 503);
    CHECK(size_of(part) == 20'000u);  // an error status leaves the file alone
    r = client->download({"GET", url, {}, ""}, part, 20'000, content.size(), {});
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->status == 206);
    CHECK((slurp(part) == content));

    // fetch_all with retries gets through the same sequence.
    hub.set_faults(R"({"body":{"kind":"error-midway","afterBytes":20000,"count":1}})");
    RecordingHttp http(*client);
    FakeSleeper sleeper;
    FetchOptions options;
    options.retry = RetryPolicy{5, 1ms, 2ms};
    options.sleeper = &sleeper;
    options.min_free_bytes = 0;
    auto st = fetch_all(http, {{"obj", url, content.size(), 0}}, dir.path(), options);
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK(http.outcomes == std::vector<std::string>{"error transport", "ok 503", "ok 206"});
    CHECK(http.offsets == std::vector<std::uint64_t>{0, 20'000, 20'000});
    CHECK(sleeper.waits.size() == 2);
    auto sha = sha256_file(dir.file("obj"), content.size());
    REQUIRE(sha.has_value());
    CHECK(*sha == sha256_hex(content));
  }
}
