// An HttpClient that passes everything to a real one and records each
// download's offset and outcome ("ok 206", "error transport").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agentd/http.h"

namespace agentd::testing {

class RecordingHttp final : public HttpClient {
 public:
  explicit RecordingHttp(HttpClient& inner) : inner_(inner) {}
  Result<HttpResponse> perform(const HttpRequest& req) override { return inner_.perform(req); }
  Result<HttpResponse> download(const HttpRequest& req, const std::string& path, std::uint64_t offset,
                                std::uint64_t max_bytes,
                                const std::function<void(std::uint64_t, std::uint64_t)>& progress) override {
    offsets.push_back(offset);
    auto r = inner_.download(req, path, offset, max_bytes, progress);
    outcomes.push_back(r ? "ok " + std::to_string(r->status)
                         : std::string("error ") + to_string(r.error().code));
    return r;
  }

  std::vector<std::uint64_t> offsets;
  std::vector<std::string> outcomes;

 private:
  HttpClient& inner_;
};

}  // namespace agentd::testing
