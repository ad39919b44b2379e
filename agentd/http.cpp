// The libcurl implementation of HttpClient (architecture.md: one easy handle per
// client for connection reuse, timeouts, low-speed limit, size cap, CA file).
#include "http.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>

#include "fd.h"

namespace agentd {

std::string HttpResponse::header(const std::string& lower_name) const {
  for (const auto& [name, value] : headers)
    if (name == lower_name) return value;
  return {};
}

Error http_status_error(const HttpResponse& r, std::string message) {
  Errc code = Errc::http;
  switch (r.status) {
    case 401: code = Errc::unauthorized; break;
    case 403: code = Errc::forbidden; break;
    case 404: code = Errc::not_found; break;
    case 409:
    case 412: code = Errc::conflict; break;
    case 413: code = Errc::too_large; break;
    case 428: code = Errc::precondition; break;
    default: break;
  }
  return Error{code, std::move(message), static_cast<int>(r.status)};
}

TlsPolicy tls_policy(const HttpOptions& o) {
  TlsPolicy p;
  p.ca_file = o.ca_file;
  // HZN_MGMT_HUB_CERT_PATH means "trust this CA": libcurl would keep its
  // built-in CA directory (/etc/ssl/certs on Debian) beside CURLOPT_CAINFO.
  p.system_cas = o.ca_file.empty() || o.ca_file_adds_system;
  return p;
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
  // curl_slist_append returns the same head (or a new one for an empty list).
  (void)list.release();
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

// Shared by perform() (Transfer) and download() (Download): both carry
// `cancelled`, `was_cancelled` and `callback_failed`.
template <class T>
int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept {
  auto* t = static_cast<T*>(user);
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

bool parse_u64(std::string_view s, std::uint64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

// "bytes <first>-<last>/<total>" (total may be "*", then 0); false when malformed.
bool parse_content_range(std::string_view v, std::uint64_t& first, std::uint64_t& last,
                         std::uint64_t& total) {
  if (!v.starts_with("bytes ")) return false;
  v.remove_prefix(6);
  auto dash = v.find('-');
  auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return false;
  if (!parse_u64(v.substr(0, dash), first) || !parse_u64(v.substr(dash + 1, slash - dash - 1), last) ||
      last < first)
    return false;
  std::string_view t = v.substr(slash + 1);
  total = 0;
  return t == "*" || (parse_u64(t, total) && total > last);
}

constexpr std::size_t kMaxErrorBody = 4096;
constexpr std::chrono::milliseconds kProgressEvery{250};

// What the download callbacks share with download(). As with Transfer, the
// callbacks never throw; a failure is recorded and the transfer aborted.
struct Download {
  int fd = -1;
  std::uint64_t offset = 0;
  std::uint64_t max_bytes = 0;
  const std::function<bool()>* cancelled = nullptr;
  const std::function<void(std::uint64_t, std::uint64_t)>* progress = nullptr;
  HttpResponse response;      // status and headers of the last response block
  bool decided = false;       // the final response's headers are in
  bool to_file = false;       // a 2xx: the body goes to the file
  std::uint64_t written = 0;  // bytes in the file
  std::uint64_t total = 0;    // expected size of the whole file, 0 when unknown
  std::chrono::steady_clock::time_point last_progress{};
  bool too_large = false;
  bool was_cancelled = false;
  bool callback_failed = false;
  Errc failure = Errc::internal;  // with failure_text: a file or protocol problem
  std::string failure_text;

  void report(bool force) {
    if (!progress || !*progress) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_progress < kProgressEvery) return;
    last_progress = now;
    (*progress)(written, total);
  }

  // Called once the final response's headers are complete: decides where the body goes.
  bool decide() {
    decided = true;
    const long status = response.status;
    if (status < 200 || status > 299) return true;  // an error body: kept (briefly) in memory
    std::uint64_t length = 0;
    const bool has_length = parse_u64(response.header("content-length"), length);
    if (status == 206) {
      std::uint64_t first = 0, last = 0, whole = 0;
      const std::string range = response.header("content-range");
      if (!parse_content_range(range, first, last, whole) || first != offset) {
        failure = Errc::http;
        failure_text =
            "206 with Content-Range '" + range + "' does not continue at byte " + std::to_string(offset);
        return false;
      }
      total = whole ? whole : last + 1;
    } else {
      // The server sent the whole file (it ignored or was not asked for a Range).
      total = has_length ? length : 0;
    }
    const std::uint64_t start = status == 206 ? offset : 0;
    if (total > max_bytes || (has_length && start + length > max_bytes)) {
      too_large = true;
      return false;
    }
    if (start == 0 && offset > 0 && (::ftruncate(fd, 0) != 0 || ::lseek(fd, 0, SEEK_SET) != 0)) {
      failure = Errc::io;
      failure_text = std::string("cannot truncate the file: ") + std::strerror(errno);
      return false;
    }
    written = start;
    to_file = true;
    report(true);
    return true;
  }
};

size_t on_download_header(char* data, size_t size, size_t count, void* user) noexcept {
  auto* d = static_cast<Download*>(user);
  const size_t n = size * count;
  try {
    std::string_view line(data, n);
    if (line.starts_with("HTTP/")) {
      // A new response block (after 1xx): only the last one counts.
      d->response.headers.clear();
      d->response.status = 0;
      auto sp = line.find(' ');
      std::uint64_t code = 0;
      if (sp != std::string_view::npos && line.size() >= sp + 4 && parse_u64(line.substr(sp + 1, 3), code))
        d->response.status = static_cast<long>(code);
      return n;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      // The blank line ending a block; 1xx blocks are followed by another.
      if (d->response.status >= 200 && !d->decided && !d->decide()) return 0;
      return n;
    }
    d->response.headers.emplace_back(lower(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
    return n;
  } catch (...) {
    d->callback_failed = true;
    return 0;
  }
}

size_t on_download_body(char* data, size_t size, size_t count, void* user) noexcept {
  auto* d = static_cast<Download*>(user);
  const size_t n = size * count;
  try {
    if (!d->decided && !d->decide()) return 0;
    if (!d->to_file) {
      std::string& body = d->response.body;
      body.append(data, std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, body.size())));
      return n;
    }
    if (d->written + n > d->max_bytes) {
      d->too_large = true;
      return 0;
    }
    for (size_t done = 0; done < n;) {
      ssize_t w = ::write(d->fd, data + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        d->failure = Errc::io;
        d->failure_text = std::string("cannot write the file: ") + std::strerror(w < 0 ? errno : EIO);
        return 0;
      }
      done += static_cast<size_t>(w);
    }
    d->written += n;
    d->report(false);
    return n;
  } catch (...) {
    d->callback_failed = true;
    return 0;
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

    CURLcode set = set_common(h, req.url, headers.get(), errbuf,
                              req.timeout.count() > 0 ? req.timeout : options_.total_timeout);
    auto opt = [&](CURLoption o, auto v) {
      if (set == CURLE_OK) set = curl_easy_setopt(h, o, v);
    };
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
    opt(CURLOPT_WRITEFUNCTION, &on_body);
    opt(CURLOPT_WRITEDATA, static_cast<void*>(&t));
    opt(CURLOPT_HEADERFUNCTION, &on_header);
    opt(CURLOPT_HEADERDATA, static_cast<void*>(&t));
    opt(CURLOPT_XFERINFOFUNCTION, &on_progress<Transfer>);
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

  Result<HttpResponse> download(const HttpRequest& req, const std::string& path, std::uint64_t offset,
                                std::uint64_t max_bytes,
                                const std::function<void(std::uint64_t, std::uint64_t)>& progress) override {
    if (!easy_) return fail(Errc::internal, "libcurl could not be initialised");
    if (req.method != "GET") return fail(Errc::internal, "download supports GET only, not " + req.method);
    if (options_.cancelled && options_.cancelled()) return fail(Errc::cancelled, "stop requested");
    const std::string what = "GET " + req.url;

    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd.get() < 0) return fail(Errc::io, "cannot open " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
      return fail(Errc::io, "cannot stat " + path + ": " + std::strerror(errno));
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size < offset)
      return fail(Errc::io, path + " has " + std::to_string(size) + " bytes, fewer than the offset " +
                                std::to_string(offset));
    if ((size > offset && ::ftruncate(fd.get(), static_cast<off_t>(offset)) != 0) ||
        ::lseek(fd.get(), static_cast<off_t>(offset), SEEK_SET) < 0)
      return fail(Errc::io, "cannot position " + path + ": " + std::strerror(errno));

    Download d;
    d.fd = fd.get();
    d.offset = offset;
    d.max_bytes = max_bytes;
    d.written = offset;
    d.cancelled = &options_.cancelled;
    d.progress = &progress;
    char errbuf[CURL_ERROR_SIZE] = {};

    SlistPtr headers;
    bool has_accept = false;
    for (const auto& [name, value] : req.headers) {
      if (lower(name) == "accept") has_accept = true;
      if (!append_header(headers, name + ": " + value)) return fail(Errc::internal, "out of memory");
    }
    bool ok = has_accept || append_header(headers, "Accept: */*");
    if (offset > 0) ok = ok && append_header(headers, "Range: bytes=" + std::to_string(offset) + "-");
    if (!ok) return fail(Errc::internal, "out of memory");

    CURL* h = easy_.get();
    curl_easy_reset(h);
    CURLcode set = set_common(h, req.url, headers.get(), errbuf, req.timeout);
    auto opt = [&](CURLoption o, auto v) {
      if (set == CURLE_OK) set = curl_easy_setopt(h, o, v);
    };
    opt(CURLOPT_HTTPGET, 1L);
    // Fewer, larger writes for big files (curl's default is 16 KiB); the
    // buffer goes with the next request's reset.
    opt(CURLOPT_BUFFERSIZE, 128L * 1024);
    opt(CURLOPT_WRITEFUNCTION, &on_download_body);
    opt(CURLOPT_WRITEDATA, static_cast<void*>(&d));
    opt(CURLOPT_HEADERFUNCTION, &on_download_header);
    opt(CURLOPT_HEADERDATA, static_cast<void*>(&d));
    opt(CURLOPT_XFERINFOFUNCTION, &on_progress<Download>);
    opt(CURLOPT_XFERINFODATA, static_cast<void*>(&d));
    if (set != CURLE_OK) {
      curl_easy_reset(h);
      return fail(Errc::internal, std::string("libcurl rejected an option: ") + curl_easy_strerror(set));
    }

    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_reset(h);  // nothing may point at our stack once we return

    // Whatever reached the file stays there for the next attempt to resume from.
    const int sync_errno = !d.to_file || ::fsync(fd.get()) == 0 ? 0 : errno;
    if (d.too_large)
      return fail(Errc::too_large, what + ": file exceeds " + std::to_string(max_bytes) + " bytes");
    if (d.was_cancelled) return fail(Errc::cancelled, what + ": stop requested");
    if (!d.failure_text.empty()) return fail(d.failure, what + " to " + path + ": " + d.failure_text);
    if (d.callback_failed) return fail(Errc::internal, what + ": failure while receiving the response");
    if (rc != CURLE_OK) {
      std::string text = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
      return fail(Errc::transport, what + ": " + text);
    }
    if (sync_errno != 0) return fail(Errc::io, "cannot fsync " + path + ": " + std::strerror(sync_errno));
    d.response.status = status;
    if (status == 416) {
      std::string range = d.response.header("content-range");
      return fail(Errc::http,
                  what + ": 416 range not satisfiable: asked for bytes from " + std::to_string(offset) +
                      (range.empty() ? std::string() : ", the server has '" + range + "'"),
                  416);
    }
    if (d.to_file) {
      d.report(true);
      d.response.body.clear();
    }
    return std::move(d.response);
  }

 private:
  // Options both kinds of request share: target, timeouts, TLS, credentials,
  // extra headers and the cancellation poll.
  CURLcode set_common(CURL* h, const std::string& url, curl_slist* headers, char* errbuf,
                      std::chrono::milliseconds timeout) {
    CURLcode set = CURLE_OK;
    auto opt = [&](CURLoption o, auto v) {
      if (set == CURLE_OK) set = curl_easy_setopt(h, o, v);
    };
    opt(CURLOPT_URL, url.c_str());
    opt(CURLOPT_PROTOCOLS_STR, "http,https");
    opt(CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for DNS timeouts: we are multi-threaded
    opt(CURLOPT_ERRORBUFFER, errbuf);
    opt(CURLOPT_USERAGENT, options_.user_agent.c_str());
    opt(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    if (timeout.count() > 0) opt(CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    opt(CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_limit_bytes);
    opt(CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.low_speed_time.count()));
    // TLS is always verified (exchange-api.md §1.5); only the trust anchors vary.
    opt(CURLOPT_SSL_VERIFYPEER, 1L);
    opt(CURLOPT_SSL_VERIFYHOST, 2L);
    opt(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!tls_.ca_file.empty()) opt(CURLOPT_CAINFO, tls_.ca_file.c_str());
    if (!tls_.system_cas) opt(CURLOPT_CAPATH, static_cast<const char*>(nullptr));
    if (!options_.basic_user.empty()) {
      opt(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
      opt(CURLOPT_USERNAME, options_.basic_user.c_str());
      opt(CURLOPT_PASSWORD, options_.basic_password.c_str());
    }
    opt(CURLOPT_HTTPHEADER, headers);
    opt(CURLOPT_NOPROGRESS, 0L);
    return set;
  }

  HttpOptions options_;
  TlsPolicy tls_ = tls_policy(options_);
  EasyPtr easy_;
};

}  // namespace

std::unique_ptr<HttpClient> make_curl_http_client(HttpOptions options) {
  return std::make_unique<CurlHttpClient>(std::move(options));
}

}  // namespace agentd
