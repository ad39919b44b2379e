// HttpClient: the daemon's only way onto the network. No curl types here
// (style.md: aktualizr's HttpInterface); CurlHttpClient is the implementation.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "result.h"

namespace agentd {

struct HttpRequest {
  std::string method = "GET";  // GET, PUT, POST, PATCH, DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, e.g. If-Match
  std::string body;  // sent with Content-Type: application/json when non-empty
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string header(const std::string& lower_name) const;   // "" when absent
};

struct HttpOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{30'000};
  long low_speed_limit_bytes = 100;         // abort when slower than this...
  std::chrono::seconds low_speed_time{20};  // ...for this long
  std::size_t max_response_bytes = 4 * 1024 * 1024;
  std::string ca_file;  // HZN_MGMT_HUB_CERT_PATH; empty: system store
  std::string user_agent = "agentd";
  std::string basic_user;      // "org/node"
  std::string basic_password;  // node token
  // Polled during transfers; returning true aborts with Errc::cancelled (SIGTERM).
  std::function<bool()> cancelled;
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Transport failures (refused, reset, timeout, TLS) are Errc::transport; an
  // oversized body is Errc::too_large. Any HTTP status is a successful Result:
  // mapping statuses to errors is the caller's job (exchange.cpp).
  virtual Result<HttpResponse> perform(const HttpRequest& req) = 0;
};

// One easy handle per client, so connections are reused (architecture.md).
std::unique_ptr<HttpClient> make_curl_http_client(HttpOptions options);

}  // namespace agentd
