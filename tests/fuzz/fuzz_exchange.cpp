// Every answer of the Exchange and the CSS that agentd parses: the pure parsers
// of agentd/exchange_parse.h, and the calls whose checks go beyond them (the
// signed manifest, the group read with its ETag, status mapping) through the
// typed calls of agentd/exchange.h. Input: one byte choosing the call and the
// status, the ETag up to a NUL, then the body.
#include <chrono>

#include "agentd/exchange.h"
#include "agentd/exchange_parse.h"
#include "fuzz_common.h"

using namespace agentd;

namespace {

class ScriptedHttp final : public HttpClient {
 public:
  HttpResponse answer;
  Result<HttpResponse> perform(const HttpRequest&) override { return answer; }
};

class NoSleep final : public Sleeper {
 public:
  bool sleep_for(std::chrono::milliseconds) override { return true; }
  bool stop_requested() override { return false; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const unsigned selector = data[0];
  auto parts = fuzz::split(fuzz::bytes(data + 1, size - 1), '\0', 2);
  static const long kStatuses[] = {200, 201, 204, 304, 403, 404, 412, 500};
  ScriptedHttp http;
  http.answer.status = kStatuses[(selector >> 4) % 8];
  http.answer.headers = {{"etag", parts[0]}, {"content-type", "application/json"}};
  http.answer.body = parts.size() > 1 ? parts[1] : std::string();
  NoSleep sleeper;
  Exchange ex(http, ExchangeEndpoint{"https://hub/v1", "https://hub/css", "o", "n1"},
              RetryPolicy{1, std::chrono::milliseconds{0}, std::chrono::milliseconds{0}}, sleeper);
  const std::string& body = http.answer.body;
  switch (selector % 11) {
    case 0: (void)parse_node(body, "o", "n1"); break;
    case 1: (void)parse_management_policies(body); break;
    case 2: (void)parse_manifest(body); break;
    case 3: (void)ex.objects().get_signed_manifest("o/m1"); break;
    case 4: (void)parse_object_metadata(body, "agent_software_files-2.0.0", "a.deb"); break;
    case 5: (void)parse_node_policy(body); break;
    case 6: (void)parse_agent_software_versions(body); break;
    case 7: (void)parse_max_change_id(body); break;
    case 8: (void)parse_changes(body); break;
    case 9: (void)ex.read("g", std::nullopt); break;
    case 10: (void)check_status(http.answer, {201}, "PUT x"); break;
  }
  return 0;
}
