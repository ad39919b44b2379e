// Every answer of the Exchange and the CSS that agentd parses, through the
// typed calls of agentd/exchange.h. Input: one byte choosing the call and the
// status, the ETag up to a NUL, then the body.
#include <chrono>

#include "agentd/exchange.h"
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
  switch (selector % 11) {
    case 0: (void)ex.get_node(); break;
    case 1: (void)ex.list_management_policies(); break;
    case 2: (void)ex.get_manifest("o/m1"); break;
    case 3: (void)ex.get_signed_manifest("o/m1"); break;
    case 4: (void)ex.get_object_metadata("IBM", "agent_software_files-2.0.0", "a.deb"); break;
    case 5: (void)ex.get_node_policy(); break;
    case 6: (void)ex.agent_software_versions(); break;
    case 7: (void)ex.max_change_id(); break;
    case 8: (void)ex.changes(1, 1000); break;
    case 9: (void)ex.read("g", std::nullopt); break;
    case 10: (void)check_status(http.answer, {201}, "PUT x"); break;
  }
  return 0;
}
