// The request path the hub's clients share (hub_client.h).
#include "hub_client.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <utility>

#include "exchange_parse.h"
#include "group.h"
#include "metrics.h"

namespace agentd {

namespace {

bool transient_status(long s) {
  return s >= 500 || s == 408 || s == 429;
}

}  // namespace

HubClient::HubClient(HttpClient& http, RetryPolicy retry, Sleeper& sleeper, Metrics* metrics)
    : http_(http), retry_(retry), sleeper_(sleeper), metrics_(metrics), rng_(std::random_device{}()) {}

Result<HttpResponse> HubClient::call(HttpRequest req, bool retry, HubRoute route) {
  using std::chrono::milliseconds;
  using Steady = std::chrono::steady_clock;
  const int attempts = retry ? std::max(1, retry_.attempts) : 1;
  const bool bounded = retry_.budget > milliseconds{0};
  const Steady::time_point deadline = bounded ? Steady::now() + retry_.budget : Steady::time_point::max();
  auto left = [&] { return std::chrono::duration_cast<milliseconds>(deadline - Steady::now()); };
  for (int attempt = 0;; ++attempt) {
    if (bounded) req.timeout = std::max(left(), milliseconds{1});
    auto r = http_.perform(req);
    if (metrics_) metrics_->hub_request(route, r ? r->status : 0);
    const bool transient = r ? transient_status(r->status) : r.error().transient();
    if (!transient || attempt + 1 >= attempts) return r;
    const milliseconds backoff = full_jitter(attempt, retry_.base, retry_.cap, rng_);
    if (bounded && left() <= backoff) return r;  // no time for another try: the last answer stands
    if (!sleeper_.sleep_for(backoff))
      return fail(Errc::cancelled, req.method + " " + req.url + ": stop requested while retrying");
  }
}

Status check_status(const HttpResponse& r, std::initializer_list<long> ok, const std::string& what) {
  if (std::find(ok.begin(), ok.end(), r.status) != ok.end()) return {};
  std::string message = what + ": hub answered " + std::to_string(r.status);
  if (std::string text = hub_error_text(r.body); !text.empty()) message += " (" + text + ")";
  return std::unexpected(http_status_error(r, std::move(message)));
}

std::string url_segment(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string quoted_revision(std::int64_t revision) {
  return "\"" + std::to_string(revision) + "\"";
}

Result<std::int64_t> written_revision(const HttpResponse& r, const std::string& what) {
  const std::string etag = r.header("etag");
  if (etag.empty())
    return fail(Errc::unsupported,
                what + ": hub accepted the write but sent no ETag (no coordination extension)");
  auto revision = parse_etag(etag);
  if (!revision) return error_in(what, revision.error());
  return *revision;
}

std::unexpected<Error> error_in(const std::string& what, Error e) {
  e.message = what + ": " + e.message;
  return std::unexpected(std::move(e));
}

}  // namespace agentd
