// The anax stand-in (tests/anax) against the Exchange stand-in, both in process:
// anax's local API, its NMP worker, the agbot's lock, its cron executor and its
// state file. Worker and executor passes are called by the tests, one at a time.
#include <cjson/cJSON.h>
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "agentd/files.h"
#include "agentd/json.h"
#include "anax/anax.h"
#include "anax/in_process.h"
#include "hub/in_process.h"
#include "support/http_call.h"
#include "support/temp_dir.h"

using namespace agentd;
using namespace agentd::anax;
using testing::Res;

namespace {

constexpr const char* kRoot = "root/root:rootpw";
constexpr const char* kAdmin = "o/admin:adminpw";
constexpr const char* kN1 = "o/n1:tok1";
constexpr const char* kN2 = "o/n2:tok2";
constexpr const char* kBundle = "horizon-agent-linux-deb-amd64.tar.gz";

std::string str(const cJSON* o, const char* key) {
  auto v = json::get_string(o, key);
  return v ? *v : std::string("<missing>");
}

// A hub with org o, nodes n1 and n2 (version 1.0.0) in group g, the release 2.0.0
// (manifest o/agent-2.0.0 listing this node's bundle, the bundle in IBM's CSS) and
// the NMP p1; and an anax stand-in for n1.
class Node {
 public:
  explicit Node(bool in_group = true) {
    standin::HubOptions h;
    h.state_path = dir_.file("hub.json");
    h.agbot_log_path = dir_.file("agbot.jsonl");
    h.agbot_monitor_interval = std::chrono::milliseconds(0);
    auto hub = standin::InProcessHub::start(h);
    REQUIRE_MESSAGE(hub.has_value(), hub.error().describe());
    hub_ = std::move(*hub);
    REQUIRE(hub_call("POST", "/v1/orgs/o", kRoot, R"({"label":"o"})").status == 201);
    REQUIRE(
        hub_call("POST", "/v1/orgs/o/users/admin", kRoot, R"({"password":"adminpw","admin":true})").status ==
        201);
    for (const char* n : {"n1", "n2"})
      REQUIRE(
          hub_call("PUT", std::string("/v1/orgs/o/nodes/") + n, kAdmin,
                   R"({"token":"tok)" + std::string(n + 1) + R"(","softwareVersions":{"horizon":"1.0.0"}})")
              .status == 201);
    if (in_group)
      REQUIRE(hub_call("POST", "/v1/orgs/o/hagroups/g", kAdmin, R"({"members":["n1","n2"]})").status == 201);
    publish("p1", "2.0.0");
    write_version("1.0.0");
    start();
  }

  AnaxOptions options() const {
    AnaxOptions o;
    o.state_path = dir_.file("anax.json");
    o.exchange_url = "http://127.0.0.1:" + std::to_string(hub_->port()) + "/v1";
    o.org = "o";
    o.node = "n1";
    o.token = "tok1";
    o.work_dir = dir_.file("nmp");
    o.version_file = dir_.file("version");
    o.worker_interval = std::chrono::milliseconds(0);
    o.cron_interval = std::chrono::milliseconds(0);
    o.cron_file = dir_.file("cron");
    o.install_command = "echo \"$ANAX_NMP $ANAX_VERSION\" >> " + dir_.file("installs") + " && printf '" +
                        "%s\\n' \"$ANAX_VERSION\" > " + dir_.file("version");
    o.executor_log = dir_.file("executor.jsonl");
    o.download_log = dir_.file("downloads.jsonl");
    return o;
  }

  void start() {
    auto a = InProcessAnax::start(options());
    REQUIRE_MESSAGE(a.has_value(), a.error().describe());
    anax_ = std::move(*a);
  }
  void stop() { anax_.reset(); }

  // The manifest o/agent-<version> and the NMP `nmp` pointing at it (created, enabled).
  void publish(const std::string& nmp, const std::string& version) {
    std::string manifest = R"({"softwareUpgrade":{"files":[")" + std::string(kBundle) +
                           R"(","horizon-agent-linux-rpm-amd64.tar.gz"],"version":")" + version + R"("}})";
    REQUIRE(hub_call("PUT", "/css/api/v1/objects/o/agent_upgrade_manifests/agent-" + version + "/data",
                     kAdmin, manifest)
                .status == 204);
    if (hub_call("GET", "/v1/orgs/IBM", kRoot).status == 404)
      REQUIRE(hub_call("POST", "/v1/orgs/IBM", kRoot, "{}").status == 201);
    REQUIRE(hub_call("PUT",
                     "/css/api/v1/objects/IBM/agent_software_files-" + version + "/" + kBundle + "/data",
                     kRoot, "bundle " + version)
                .status == 204);
    REQUIRE(
        hub_call("POST", "/v1/orgs/o/managementpolicies/" + nmp, kAdmin,
                 R"({"label":"up","enabled":true,"start":"now","agentUpgradePolicy":{"manifest":"o/agent-)" +
                     version + R"("}})")
            .status == 201);
  }

  Res hub_call(const std::string& method, const std::string& path, const std::string& auth,
               const std::string& body = "") {
    return testing::http_call(hub_->port(), method, path, auth, body);
  }
  Res api(const std::string& method, const std::string& path, const std::string& body = "") {
    return testing::http_call(anax_->port(), method, path, "", body);
  }
  Res put_status(const std::string& status, const std::string& nmp = "o/p1") {
    return api("PUT", "/nodemanagement/status/" + nmp,
               R"({"agentUpgradePolicyStatus":{"status":")" + status + R"(","errorMessage":"because"}})");
  }

  Anax& anax() { return anax_->anax(); }
  standin::Hub& hub() { return hub_->hub(); }
  std::string local(const std::string& key = "o/p1") {
    auto records = anax().records();
    auto it = records.find(key);
    return it == records.end() ? std::string("<none>") : it->second.status;
  }
  // The status on the Exchange, "<none>" without one.
  std::string exchange(const std::string& nmp = "p1", const std::string& node = "n1") {
    Res r = hub_call("GET", "/v1/orgs/o/nodes/" + node + "/managementStatus/" + nmp, kAdmin);
    const cJSON* one = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r.j(), "managementStatus"), ("o/" + nmp).c_str());
    if (!one) return "<none>";
    return str(cJSON_GetObjectItemCaseSensitive(one, "agentUpgradePolicyStatus"), "status");
  }
  void exchange_put(const std::string& status, const std::string& nmp = "p1") {
    REQUIRE(hub_call("PUT", "/v1/orgs/o/nodes/n1/managementStatus/" + nmp, kN1,
                     R"({"agentUpgradePolicyStatus":{"scheduledTime":"2026-01-01T00:00:00Z","status":")" +
                         status + R"("}})")
                .status == 201);
  }
  std::string exchange_version() {
    Res r = hub_call("GET", "/v1/orgs/o/nodes/n1", kAdmin);
    const cJSON* n =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r.j(), "nodes"), "o/n1");
    return str(cJSON_GetObjectItemCaseSensitive(n, "softwareVersions"), "horizon");
  }
  void write_version(const std::string& v) { dir_.write("version", v + "\n"); }
  std::string file(const std::string& name) const { return dir_.file(name); }
  std::string read(const std::string& name) const { return read_file(dir_.file(name), 1 << 20).value_or(""); }
  // Runs worker passes until the record of o/p1 is `status` (at most `passes`).
  bool passes_until(const std::string& status, int passes = 3) {
    for (int i = 0; i < passes && local() != status; ++i) anax().worker_pass();
    return local() == status;
  }

 private:
  testing::TempDir dir_;
  std::unique_ptr<standin::InProcessHub> hub_;
  std::unique_ptr<InProcessAnax> anax_;
};

}  // namespace

TEST_SUITE("anax") {
  TEST_CASE("anax: local API status, node, records and nextjob; bad nextjob queries are 500") {
    Node node;
    Res r = node.api("GET", "/status");
    CHECK(r.status == 200);
    CHECK(str(cJSON_GetObjectItemCaseSensitive(r.j(), "configuration"), "horizon_version") == "1.0.0");
    r = node.api("GET", "/node");
    CHECK(str(r.j(), "id") == "n1");
    CHECK(str(r.j(), "organization") == "o");
    CHECK(str(r.j(), "ha_group") == "");  // not read from the Exchange yet
    CHECK(str(cJSON_GetObjectItemCaseSensitive(r.j(), "configstate"), "state") == "configured");
    CHECK(node.api("GET", "/nodemanagement/status").body == "{}");
    CHECK(node.api("GET", "/nodemanagement/status/p1").status == 404);
    CHECK(node.api("GET", "/nodemanagement/nextjob?type=agentUpgrade&ready=true").body == "{}");
    CHECK(node.api("GET", "/nodemanagement/nextjob?type=agentImage").status == 500);
    CHECK(node.api("GET", "/nodemanagement/nextjob?type=agentUpgrade&ready=yes").status == 500);
    CHECK(node.api("GET", "/nodemanagement/nothing").status == 404);

    node.anax().worker_pass();
    CHECK(str(node.api("GET", "/node").j(), "ha_group") == "g");
    r = node.api("GET", "/nodemanagement/status/o/p1");
    REQUIRE(r.status == 200);
    const cJSON* rec = cJSON_GetObjectItemCaseSensitive(r.j(), "o/p1");
    const cJSON* st = cJSON_GetObjectItemCaseSensitive(rec, "agentUpgradePolicyStatus");
    const cJSON* in = cJSON_GetObjectItemCaseSensitive(rec, "agentUpgradeInternal");
    CHECK(str(st, "status") == "ha node waiting");
    CHECK(str(st, "workingDirectory") == node.file("nmp"));
    CHECK(str(cJSON_GetObjectItemCaseSensitive(st, "upgradedVersions"), "softwareVersion") == "2.0.0");
    CHECK(str(st, "scheduledTime").back() == 'Z');
    CHECK(str(in, "manifest") == "o/agent-2.0.0");
    CHECK(json::get_int(in, "downloadAttempts").value_or(-1) == 0);
    CHECK(cJSON_GetObjectItemCaseSensitive(in, "latestMap") != nullptr);
    CHECK(node.api("GET", "/nodemanagement/status/p1").body == r.body);  // {nmp} is in the node's org
    CHECK(node.api("GET", "/nodemanagement/nextjob?type=agentUpgrade&ready=false").body == "{}");
    CHECK(node.api("GET", "/nodemanagement/nextjob?type=agentUpgrade").body == r.body);
  }

  TEST_CASE(
      "anax: the worker takes the NMP, downloads this node's bundle, and waits for the agbot (409, then "
      "201)") {
    Node node;
    // n2 holds the group's lock.
    REQUIRE(node.hub_call("POST", "/org/o/hagroup/g/nodemanagement/n2/p1", kN2).status == 201);
    node.anax().worker_pass();
    CHECK(node.local() == "ha node waiting");
    CHECK(node.exchange() == "ha node waiting");
    CHECK(node.read("nmp/o/p1/" + std::string(kBundle)) == "bundle 2.0.0");
    CHECK(!std::filesystem::exists(node.file("nmp/o/p1/horizon-agent-linux-rpm-amd64.tar.gz")));
    CHECK(node.read("downloads.jsonl")
              .find(R"("nmp":"o/p1","version":"2.0.0","file":")" + std::string(kBundle) +
                    R"(","bytes":12)") != std::string::npos);
    // The hub counts anax's requests apart from the node's own (agentd's).
    Res stats = node.hub_call("GET", "/v1/standin/stats", kRoot);
    const cJSON* requests = cJSON_GetObjectItemCaseSensitive(stats.j(), "requests");
    CHECK(cJSON_GetObjectItemCaseSensitive(requests, "o/n1#anax") != nullptr);
    CHECK(cJSON_GetObjectItemCaseSensitive(requests, "o/n1") == nullptr);
    node.anax().worker_pass();  // the agbot answers 409
    CHECK(node.local() == "ha node waiting");
    CHECK(node.hub_call("DELETE", "/ha/upgradingnode/o/g", kAdmin).status == 200);
    node.anax().worker_pass();  // 201
    CHECK(node.local() == "downloaded");
    CHECK(node.exchange() == "downloaded");
    CHECK(node.api("GET", "/nodemanagement/nextjob?type=agentUpgrade&ready=true").body.find("o/p1") !=
          std::string::npos);
    CHECK(node.hub_call("GET", "/ha/upgradingnode", kAdmin).body.find(R"("nodeId":"n1")") !=
          std::string::npos);
  }

  TEST_CASE("anax: without a group a job goes straight to downloaded, and no other job starts meanwhile") {
    Node node(false);
    node.publish("p2", "3.0.0");
    node.anax().worker_pass();
    auto records = node.anax().records();
    REQUIRE(records.size() == 2);
    int downloaded = 0, waiting = 0;
    for (const auto& [k, r] : records) {
      downloaded += r.status == "downloaded";
      waiting += r.status == "waiting";
    }
    CHECK(downloaded == 1);
    CHECK(waiting == 1);
    node.anax().worker_pass();
    CHECK(node.local("o/p2") == "waiting");
  }

  TEST_CASE(
      "anax: status PUT: a flat body is a 201 that changes nothing, the nested one changes the record") {
    Node node;
    CHECK(node.put_status("initiated").status == 404);  // no record yet
    REQUIRE(node.passes_until("ha node waiting"));
    Res r = node.api("PUT", "/nodemanagement/status/o/p1", R"({"status":"initiated"})");
    CHECK(r.status == 201);
    CHECK(r.body.front() == '"');
    CHECK(node.local() == "ha node waiting");
    CHECK(node.api("PUT", "/nodemanagement/status/o/p1", "{not json").status == 400);
    r = node.put_status("initiated");
    CHECK(r.status == 201);
    CHECK(node.local() == "initiated");
    CHECK(node.exchange() == "initiated");
    auto rec = node.anax().records().at("o/p1");
    CHECK(rec.error_message == "because");
    CHECK(!rec.start_time.empty());
    // The same status again: nothing saved, the error message neither.
    CHECK(node.api("PUT", "/nodemanagement/status/p1",
                   R"({"agentUpgradePolicyStatus":{"status":"initiated","errorMessage":"other"}})")
              .status == 201);
    CHECK(node.anax().records().at("o/p1").error_message == "because");
    CHECK(node.anax().records().at("o/p1").start_time == rec.start_time);
    // No validation of status strings.
    CHECK(node.put_status("whatever").status == 201);
    CHECK(node.local() == "whatever");
  }

  TEST_CASE(
      "anax: status PUT is a 500 when the Exchange is down, and after the local change when its write "
      "fails") {
    Node node;
    REQUIRE(node.passes_until("ha node waiting"));
    // The NMP is gone from the Exchange: its status write fails (FK), after the local change.
    REQUIRE(node.hub_call("DELETE", "/v1/orgs/o/managementpolicies/p1", kAdmin).status == 204);
    CHECK(node.put_status("initiated").status == 500);
    CHECK(node.local() == "initiated");
    CHECK(node.put_status("initiated").status == 201);  // a retry is a no-op
    CHECK(node.exchange() == "<none>");
  }

  TEST_CASE("anax: status PUT with the Exchange unreachable is a 500 and changes nothing") {
    // Its own hub, stopped: the version check fails.
    testing::TempDir dir;
    standin::HubOptions h;
    h.state_path = dir.file("hub.json");
    auto hub = standin::InProcessHub::start(h);
    REQUIRE(hub.has_value());
    int port = (*hub)->port();
    hub->reset();
    AnaxOptions o;
    o.state_path = dir.file("anax.json");
    o.exchange_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    o.org = "o";
    o.node = "n1";
    o.work_dir = dir.file("nmp");
    o.worker_interval = o.cron_interval = std::chrono::milliseconds(0);
    Record waiting;
    waiting.status = "waiting";
    auto records = json::object();
    json::set(records.get(), "o/p1", record_to_json(waiting, o.work_dir));
    dir.write("anax.json", R"({"recordedVersion":"1.0.0","records":)" + json::print(records.get()) + "}");
    auto a = InProcessAnax::start(o);
    REQUIRE(a.has_value());
    Res r = testing::http_call((*a)->port(), "PUT", "/nodemanagement/status/o/p1", "",
                               R"({"agentUpgradePolicyStatus":{"status":"initiated"}})");
    CHECK(r.status == 500);
    CHECK((*a)->anax().records().at("o/p1").status == "waiting");
  }

  TEST_CASE(
      "anax: successful records the running version, PATCHes the Exchange node, removes the job's files") {
    Node node(false);
    REQUIRE(node.passes_until("downloaded"));
    REQUIRE(std::filesystem::exists(node.file("nmp/o/p1")));
    CHECK(node.put_status("initiated").status == 201);
    node.write_version("2.0.0");  // the install
    CHECK(node.anax().recorded_version() == "1.0.0");
    CHECK(node.put_status("successful").status == 201);
    CHECK(node.anax().recorded_version() == "2.0.0");
    CHECK(node.exchange_version() == "2.0.0");
    CHECK(node.exchange() == "successful");
    CHECK(!node.anax().records().at("o/p1").end_time.empty());
    CHECK(!std::filesystem::exists(node.file("nmp/o/p1")));
    CHECK(str(cJSON_GetObjectItemCaseSensitive(node.api("GET", "/status").j(), "configuration"),
              "horizon_version") == "2.0.0");
  }

  TEST_CASE(
      "anax: its recorded version is stale after an out-of-band upgrade; equal versions need no action") {
    Node node(false);
    node.write_version("2.0.0");               // someone else installed 2.0.0; anax still records 1.0.0
    REQUIRE(node.passes_until("downloaded"));  // so it downloads 2.0.0 again
    CHECK(node.put_status("successful").status == 201);
    CHECK(node.anax().recorded_version() == "2.0.0");
    node.publish("p2", "2.0.0");
    node.anax().worker_pass();
    CHECK(node.local("o/p2") == "no action required");
    CHECK(node.exchange("p2") == "no action required");
  }

  TEST_CASE(
      "anax: Exchange statuses: others' values are overwritten, reset is obeyed, unknown ones deleted") {
    Node node;
    REQUIRE(node.passes_until("downloaded"));
    node.exchange_put("initiated");  // agentd writing the Exchange directly
    node.anax().worker_pass();
    CHECK(node.exchange() == "downloaded");
    CHECK(node.local() == "downloaded");
    node.exchange_put("reset");
    node.anax().worker_pass();  // waiting, then downloaded again in the same pass
    CHECK(node.local() == "ha node waiting");
    CHECK(node.exchange() == "ha node waiting");
    REQUIRE(
        node.hub_call("POST", "/v1/orgs/o/managementpolicies/p9", kAdmin,
                      R"({"label":"x","enabled":false,"agentUpgradePolicy":{"manifest":"o/agent-2.0.0"}})")
            .status == 201);
    node.exchange_put("successful", "p9");  // a status anax has no record of
    node.anax().worker_pass();
    CHECK(node.exchange("p9") == "<none>");
    CHECK(node.local("o/p9") == "<none>");  // disabled: never taken
  }

  TEST_CASE("anax: a disabled NMP loses its record and its Exchange status") {
    Node node(false);
    REQUIRE(node.passes_until("downloaded"));
    REQUIRE(
        node.hub_call("PUT", "/v1/orgs/o/managementpolicies/p1", kAdmin,
                      R"({"label":"up","enabled":false,"agentUpgradePolicy":{"manifest":"o/agent-2.0.0"}})")
            .status == 201);
    node.anax().worker_pass();
    CHECK(node.local() == "<none>");
    CHECK(node.exchange() == "<none>");
  }

  TEST_CASE("anax: reset puts records back to waiting") {
    Node node(false);
    REQUIRE(node.passes_until("downloaded"));
    CHECK(node.api("PUT", "/nodemanagement/reset/o/zz").status == 404);
    CHECK(node.api("PUT", "/nodemanagement/reset/o/p1").status == 200);
    CHECK(node.local() == "waiting");
    CHECK(node.exchange() == "waiting");
    REQUIRE(node.passes_until("downloaded"));
    CHECK(node.api("PUT", "/nodemanagement/reset").status == 200);
    CHECK(node.local() == "waiting");
  }

  TEST_CASE("anax: records survive a restart; download started goes back to waiting, downloaded stays") {
    Node node;
    node.publish("p2", "3.0.0");
    node.anax().worker_pass();  // one job in ha node waiting, the other waiting
    node.stop();
    std::string state = node.read("anax.json");
    auto root = json::parse(state, "state");
    REQUIRE(root.has_value());
    // As if killed during a download (p2) and after the lock (p1).
    cJSON* records = cJSON_GetObjectItemCaseSensitive(root->get(), "records");
    for (auto [key, status] : {std::pair{"o/p1", "downloaded"}, std::pair{"o/p2", "download started"}}) {
      cJSON* st = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(records, key),
                                                   "agentUpgradePolicyStatus");
      REQUIRE(st);
      json::set(st, "status", status);
    }
    REQUIRE(write_file_atomic(node.file("anax.json"), json::print(root->get())));
    node.start();
    CHECK(node.local("o/p1") == "downloaded");
    CHECK(node.local("o/p2") == "waiting");
  }

  TEST_CASE("anax: the cron executor installs a downloaded job only while the cron file exists") {
    Node node(false);
    REQUIRE(node.passes_until("downloaded"));
    node.anax().executor_pass();
    CHECK(node.local() == "downloaded");
    CHECK(node.read("executor.jsonl") == "");
    REQUIRE(write_file_atomic(node.file("cron"), "* * * * * root agent-auto-upgrade.sh\n"));
    node.anax().executor_pass();
    CHECK(node.local() == "successful");
    CHECK(node.exchange() == "successful");
    CHECK(node.read("installs") == "o/p1 2.0.0\n");
    CHECK(node.anax().recorded_version() == "2.0.0");
    CHECK(node.exchange_version() == "2.0.0");
    std::string log = node.read("executor.jsonl");
    CHECK(log.find(R"("event":"run","nmp":"o/p1","version":"2.0.0")") != std::string::npos);
    CHECK(log.find(R"("event":"done","nmp":"o/p1","exit":0)") != std::string::npos);
    node.anax().executor_pass();  // nothing left to do
    CHECK(node.read("installs") == "o/p1 2.0.0\n");
  }

  TEST_CASE("anax: a failing install ends the executor's job failed, with the output as the error") {
    Node node(false);
    node.stop();
    AnaxOptions o = node.options();
    o.install_command = "echo broken >&2; exit 3";
    std::filesystem::remove(node.file("anax.json"));
    auto a = InProcessAnax::start(o);
    REQUIRE(a.has_value());
    for (int i = 0; i < 3 && (*a)->anax().records()["o/p1"].status != "downloaded"; ++i)
      (*a)->anax().worker_pass();
    REQUIRE(write_file_atomic(node.file("cron"), "cron\n"));
    (*a)->anax().executor_pass();
    auto rec = (*a)->anax().records().at("o/p1");
    CHECK(rec.status == "failed");
    CHECK(rec.error_message == "broken");
    CHECK(node.read("executor.jsonl").find(R"("exit":3)") != std::string::npos);
  }

  TEST_CASE("anax: the agbot lock is released by the hub's monitor once anax's own status is final") {
    Node node;
    REQUIRE(node.passes_until("downloaded"));
    node.hub().monitor_agbot_locks();
    CHECK(node.hub_call("GET", "/ha/upgradingnode", kAdmin).body != "[]");
    CHECK(node.put_status("initiated").status == 201);
    node.write_version("2.0.0");
    CHECK(node.put_status("successful").status == 201);
    node.hub().monitor_agbot_locks();
    CHECK(node.hub_call("GET", "/ha/upgradingnode", kAdmin).body == "[]");
  }
}
