// The libcurl implementation of HttpClient (architecture.md: one easy handle per
// client for connection reuse, timeouts, low-speed limit, size cap, CA file).
#include "http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>

namespace agentd {

std::string HttpResponse::header(const std::string& lower_name) const {
  for (const auto& [name, value] : headers)
    if (name == lower_name) return value;
  return {};
}

namespace {

// libcurl requires curl_global_init once per process before any handle exists,
// and it is not ours to avoid: the state lives inside curl (and OpenSSL). A
// function-local static runs it exactly once, thread-safely, on first use and
// cleans up at exit; it holds no mutable state of ours.
struct CurlGlobal {
  CURLcode code;
  CurlGlobal() : code(curl_global_init(CURL_GLOBAL_DEFAULT)) {}
  ~CurlGlobal() {
    if (code == CURLE_OK) curl_global_cleanup();
  }
  CurlGlobal(const CurlGlobal&) = delete;
  CurlGlobal& operator=(const CurlGlobal&) = delete;
};

CURLcode ensure_curl_global() {
  static const CurlGlobal global;
  return global.code;
}

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// Appends one header line; false when curl is out of memory.
bool append_header(SlistPtr& list, const std::string& line) {
  curl_slist* grown = curl_slist_append(list.get(), line.c_str());
  if (!grown) return false;
  list.release();  // curl_slist_append returns the same head (or a new one for an empty list)
  list.reset(grown);
  return true;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return std::string(s);
}

// What the callbacks share with perform(). The callbacks never throw: a failure
// is recorded here and the transfer is aborted by returning an error to curl.
struct Transfer {
  std::size_t max_bytes = 0;
  const std::function<bool()>* cancelled = nullptr;
  HttpResponse response;
  bool too_large = false;
  bool was_cancelled = false;
  bool callback_failed = false;
};

size_t on_body(char* data, size_t size, size_t count, void* user) noexcept {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  try {
    if (t->response.body.size() + n > t->max_bytes) {
      t->too_large = true;
      return 0;  // CURLE_WRITE_ERROR
    }
    t->response.body.append(data, n);
    return n;
  } catch (...) {
    t->callback_failed = true;
    return 0;
  }
}

size_t on_header(char* data, size_t size, size_t count, void* user) noexcept {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  try {
    std::string_view line(data, n);
    if (line.starts_with("HTTP/")) {
      t->response.headers.clear();  // a new response (after 100 Continue): keep only the last block
      return n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return n;  // blank line ending the block
    std::string name = lower(trim(line.substr(0, colon)));
    std::string value = trim(line.substr(colon + 1));
    // Refuse an oversized body before it arrives.
    if (name == "content-length") {
      std::uint64_t len = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), len);
      if (ec == std::errc() && end == value.data() + value.size() && len > t->max_bytes) {
        t->too_large = true;
        return 0;
      }
    }
    t->response.headers.emplace_back(std::move(name), std::move(value));
    return n;
  } catch (...) {
    t->callback_failed = true;
    return 0;
  }
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept {
  auto* t = static_cast<Transfer*>(user);
  try {
    if (t->cancelled && *t->cancelled && (*t->cancelled)()) {
      t->was_cancelled = true;
      return 1;  // CURLE_ABORTED_BY_CALLBACK
    }
    return 0;
  } catch (...) {
    t->callback_failed = true;
    return 1;
  }
}

// Not thread-safe: one client per thread (the easy handle is the connection cache).
class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(HttpOptions options) : options_(std::move(options)) {
    if (ensure_curl_global() == CURLE_OK) easy_.reset(curl_easy_init());
  }

  Result<HttpResponse> perform(const HttpRequest& req) override {
    if (!easy_) return fail(Errc::internal, "libcurl could not be initialised");
    if (options_.cancelled && options_.cancelled()) return fail(Errc::cancelled, "stop requested");

    CURL* h = easy_.get();
    // Options start from defaults each time; live connections, DNS and TLS session caches stay.
    curl_easy_reset(h);

    Transfer t;
    t.max_bytes = options_.max_response_bytes;
    t.cancelled = &options_.cancelled;
    char errbuf[CURL_ERROR_SIZE] = {};

    SlistPtr headers;
    bool has_accept = false;
    for (const auto& [name, value] : req.headers) {
      if (lower(name) == "accept") has_accept = true;
      if (!append_header(headers, name + ": " + value)) return fail(Errc::internal, "out of memory");
    }
    bool ok = has_accept || append_header(headers, "Accept: application/json");
    ok = ok && append_header(headers, "Expect:");  // no 100-continue round trip for bodies
    const bool is_get = req.method == "GET";
    if (!is_get) {
      // With an empty body also remove curl's form Content-Type.
      ok =
          ok && append_header(headers, req.body.empty() ? "Content-Type:" : "Content-Type: application/json");
    }
    if (!ok) return fail(Errc::internal, "out of memory");

    CURLcode set = CURLE_OK;
    auto opt = [&](CURLoption o, auto v) {
      if (set == CURLE_OK) set = curl_easy_setopt(h, o, v);
    };
    opt(CURLOPT_URL, req.url.c_str());
    opt(CURLOPT_PROTOCOLS_STR, "http,https");
    opt(CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: we are multi-threaded
    opt(CURLOPT_ERRORBUFFER, errbuf);
    opt(CURLOPT_USERAGENT, options_.user_agent.c_str());
    opt(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    opt(CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
    opt(CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_limit_bytes);
    opt(CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.low_speed_time.count()));
    // TLS is always verified (exchange-api.md §1.5); only the trust anchors vary.
    opt(CURLOPT_SSL_VERIFYPEER, 1L);
    opt(CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options_.ca_file.empty()) opt(CURLOPT_CAINFO, options_.ca_file.c_str());
    if (!options_.basic_user.empty()) {
      opt(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      opt(CURLOPT_USERNAME, options_.basic_user.c_str());
      opt(CURLOPT_PASSWORD, options_.basic_password.c_str());
    }
    if (is_get) {
      opt(CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
      opt(CURLOPT_NOBODY, 1L);
    } else {
      opt(CURLOPT_CUSTOMREQUEST, req.method.c_str());
      // Always send a (possibly empty) body so PUT/POST/DELETE carry Content-Length.
      opt(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      opt(CURLOPT_POSTFIELDS, req.body.c_str());
    }
    opt(CURLOPT_HTTPHEADER, headers.get());
    opt(CURLOPT_WRITEFUNCTION, &on_body);
    opt(CURLOPT_WRITEDATA, static_cast<void*>(&t));
    opt(CURLOPT_HEADERFUNCTION, &on_header);
    opt(CURLOPT_HEADERDATA, static_cast<void*>(&t));
    opt(CURLOPT_NOPROGRESS, 0L);
    opt(CURLOPT_XFERINFOFUNCTION, &on_progress);
    opt(CURLOPT_XFERINFODATA, static_cast<void*>(&t));
    if (set != CURLE_OK)
      return fail(Errc::internal, std::string("libcurl rejected an option: ") + curl_easy_strerror(set));

    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    // Nothing may point at our stack, `headers` or `req` once we return; live
    // connections survive the reset.
    curl_easy_reset(h);

    const std::string what = req.method + " " + req.url;
    if (t.too_large)
      return fail(Errc::too_large,
                  what + ": response exceeds " + std::to_string(options_.max_response_bytes) + " bytes");
    if (t.was_cancelled) return fail(Errc::cancelled, what + ": stop requested");
    if (t.callback_failed) return fail(Errc::internal, what + ": failure while receiving the response");
    if (rc != CURLE_OK) {
      std::string text = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
      return fail(Errc::transport, what + ": " + text);
    }
    t.response.status = status;
    return std::move(t.response);
  }

 private:
  HttpOptions options_;
  EasyPtr easy_;
};

}  // namespace

std::unique_ptr<HttpClient> make_curl_http_client(HttpOptions options) {
  return std::make_unique<CurlHttpClient>(std::move(options));
}

}  // namespace agentd
