// HttpClient: the daemon's only way onto the network. No curl types here
// (style.md: aktualizr's HttpInterface); CurlHttpClient is the implementation.
#pragma once

#include <chrono>
#include <cstdint>
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
  // Limit for this whole request (a download too); 0 = HttpOptions::total_timeout
  // for perform(), none for download(). A caller bounds a request by what its
  // loop can afford.
  std::chrono::milliseconds timeout{0};
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string header(const std::string& lower_name) const;   // "" when absent
};

// A response the caller did not want, as an Error carrying its status; the one
// mapping of HTTP statuses to categories (Exchange calls and downloads alike):
// 401 unauthorized, 403 forbidden, 404 not_found, 409 and 412 conflict (412: a
// stale If-Match revision, protocol.md §3), 413 too_large, 428 precondition,
// anything else http (Error::transient() then tells 5xx, 408 and 429 apart).
Error http_status_error(const HttpResponse& r, std::string message);

struct HttpOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{30'000};
  long low_speed_limit_bytes = 100;         // abort when slower than this...
  std::chrono::seconds low_speed_time{20};  // ...for this long
  std::size_t max_response_bytes = 4 * 1024 * 1024;
  std::string ca_file;               // HZN_MGMT_HUB_CERT_PATH; empty: the system's CAs
  bool ca_file_adds_system = false;  // with ca_file: trust the system's CAs too
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

  // Streams a GET's body into the file `path`, never holding it in memory.
  // The file keeps its first `offset` bytes (anything after them is cut) and the
  // request asks for the rest with `Range: bytes=<offset>-` when offset > 0. A 206
  // whose Content-Range starts at `offset` appends; a 200 (the server ignored
  // Range) rewrites the file from byte 0. A file that would grow beyond
  // `max_bytes` is Errc::too_large (writing stops there); a 416 is Errc::http.
  // The file is fsynced once the body is complete. `progress(done, total)`
  // (bytes in the file; total 0 when unknown) is called a few times a second at
  // most, and once at the end. The low-speed limit, the connect timeout,
  // cancellation and req.timeout apply; HttpOptions::total_timeout does not (a
  // large file may take long).
  // Other statuses are successful Results as with perform(): the file is left
  // as it was and `body` holds the start of the error text; after a 2xx `body`
  // is empty.
  virtual Result<HttpResponse> download(
      const HttpRequest& req, const std::string& path, std::uint64_t offset, std::uint64_t max_bytes,
      const std::function<void(std::uint64_t done, std::uint64_t total)>& progress) {
    (void)req, (void)path, (void)offset, (void)max_bytes, (void)progress;
    return fail(Errc::unsupported, "this HTTP client cannot download to a file");
  }
};

// What every request requires of TLS and which CAs it trusts, as the client
// applies it (pure, so tests can see it without a TLS server).
struct TlsPolicy {
  const char* min_version = "1.2";  // TLS 1.0 and 1.1 are refused
  std::string ca_file;              // "": the system's CAs
  bool system_cas = true;           // false: ca_file alone is trusted (pinned)
};
TlsPolicy tls_policy(const HttpOptions& options);

// One easy handle per client, so connections are reused (architecture.md).
std::unique_ptr<HttpClient> make_curl_http_client(HttpOptions options);

}  // namespace agentd
