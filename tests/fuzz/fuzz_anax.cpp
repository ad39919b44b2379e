// The anax agent's local API answers (agentd/anax.h): its status, node and
// node management jobs. Input: one byte choosing the call, then the body.
// A job's key never leads out of anax's working directory.
#include <cstdlib>

#include "agentd/anax.h"
#include "fuzz_common.h"

using namespace agentd;

namespace {
class ScriptedHttp final : public HttpClient {
 public:
  HttpResponse answer;
  Result<HttpResponse> perform(const HttpRequest&) override { return answer; }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string body(fuzz::bytes(data + 1, size - 1));
  ScriptedHttp http;
  http.answer.status = 200;
  http.answer.body = body;
  auto anax = make_anax_client(http, "http://localhost:8510");
  switch (data[0] % 4) {
    case 0: (void)anax->version(); break;
    case 1: (void)anax->node(); break;
    case 2: (void)anax->jobs(); break;
    case 3: {
      auto jobs = parse_anax_jobs(body);
      if (!jobs) break;
      for (const AnaxJob& j : *jobs) {
        // job_dir() is <workingDirectory>/<key>: the key must be no way out of it.
        const std::string key = "/" + j.policy + "/";
        if (key.find("/../") != std::string::npos || key.find("/./") != std::string::npos ||
            key.find("//") != std::string::npos)
          std::abort();
        (void)j.job_dir();
      }
      break;
    }
  }
  return 0;
}
