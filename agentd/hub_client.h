// The request path the hub's clients share (Exchange, ObjectService,
// ExchangeAdmin): one HttpClient, reads retried on transient errors with
// full-jitter backoff, every request counted; and the mapping of an answer to
// Ok or a typed Error.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>
#include <string_view>

#include "backoff.h"
#include "http.h"
#include "result.h"

namespace agentd {

class Metrics;  // metrics.h
enum class HubRoute;

class HubClient {
 public:
  // `metrics`, when given, counts every request (each retry too) by route and outcome.
  HubClient(HttpClient& http, RetryPolicy retry, Sleeper& sleeper, Metrics* metrics = nullptr);

  // Reads (`retry`) retry transient failures (transport, 5xx, 408, 429); writes
  // never do (protocol.md §4.6: the caller re-reads before writing again).
  Result<HttpResponse> call(HttpRequest req, bool retry, HubRoute route);

 private:
  HttpClient& http_;
  RetryPolicy retry_;
  Sleeper& sleeper_;
  Metrics* metrics_;
  std::mt19937_64 rng_;  // backoff jitter
};

// Maps a hub response to Ok or a typed Error (http_status_error: 401, 403, 404,
// 409/412, 428, 5xx...), quoting the hub's {"code","msg"} when it sent one.
Status check_status(const HttpResponse& r, std::initializer_list<long> ok, const std::string& what);

// A path segment, percent-encoded: ids come from configuration and the hub.
std::string url_segment(std::string_view s);

// An If-Match / If-None-Match value: the revision quoted.
std::string quoted_revision(std::int64_t revision);

// The new revision of a conditional write (protocol.md §3: the ETag of the response).
Result<std::int64_t> written_revision(const HttpResponse& r, const std::string& what);

// Puts `what` (the request) in front of an error from a parser.
std::unexpected<Error> error_in(const std::string& what, Error e);

}  // namespace agentd
