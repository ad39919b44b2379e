// The harness's publishing helpers and body faults against the real
// exchange-standin process: objects, signed manifests and node policies read back
// through the Exchange client, across a restart of the hub.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "agentd/exchange.h"
#include "agentd/http.h"
#include "harness/harness.h"

using namespace agentd;
using namespace agentd::harness;
using namespace std::chrono_literals;

namespace {

struct NoWait final : Sleeper {
  bool sleep_for(std::chrono::milliseconds) override { return true; }
  bool stop_requested() override { return false; }
};

}  // namespace

TEST_SUITE("hub") {
  TEST_CASE("harness: objects, signed manifests, node policies and body faults through exchange-standin") {
    TempDir dir("agentd-hubcss");
    Hub hub(dir.path());
    hub.create_org("o");
    hub.create_user("o", "admin", "adminpw", true);
    hub.create_node("o", "n1", "tok1", {"o/admin", "adminpw"});
    const std::string manifest = R"({"softwareUpgrade":{"files":["f.bin"],"version":"2.0.0"}} )";
    hub.put_signed_manifest("o", "m1", manifest, "c2ln");
    const std::string data = pattern(50'000, 9);
    hub.put_object("IBM", "agent_software_files-2.0.0", "f.bin", data, "", "the agent");
    hub.put_node_policy("o", "n1", R"({"properties":[{"name":"purpose","value":"edge"}]})");

    HttpOptions o;
    o.connect_timeout = 2s;
    o.total_timeout = 5s;
    o.basic_user = "o/n1";
    o.basic_password = "tok1";
    auto http = make_curl_http_client(o);
    NoWait sleeper;
    Exchange ex(*http, ExchangeEndpoint{hub.exchange_url(), hub.css_url(), "o", "n1"},
                RetryPolicy{1, 1ms, 1ms}, sleeper);
    auto check_all = [&] {
      auto m = ex.objects().get_signed_manifest("m1");
      REQUIRE_MESSAGE(m.has_value(), m.error().describe());
      CHECK((m->bytes == manifest));
      CHECK(m->signature == "c2ln");
      auto meta = ex.objects().get_object_metadata("IBM", "agent_software_files-2.0.0", "f.bin");
      REQUIRE_MESSAGE(meta.has_value(), meta.error().describe());
      CHECK(meta->size == 50'000);
      CHECK(meta->description == "the agent");
      CHECK(meta->signature == "");
      auto policy = ex.get_node_policy();
      REQUIRE_MESSAGE(policy.has_value(), policy.error().describe());
      REQUIRE(policy->has_value());
      CHECK((*policy)->at("purpose").text == "edge");
    };
    check_all();
    hub.restart();  // a new process on the same port and state file
    check_all();

    Faults f;
    f.body = BodyFault{"truncate", 1000, 0, 1, "/f.bin/"};
    hub.set_faults(f);
    const std::string url = ex.objects().object_data_url("IBM", "agent_software_files-2.0.0", "f.bin");
    auto r = http->download({"GET", url, {}, ""}, dir.file("f.part"), 0, data.size(), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().transient());
    r = http->download({"GET", url, {}, ""}, dir.file("f.part"), 1000, data.size(), {});
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK((slurp(dir.file("f.part")) == data));
  }
}
