#include "server.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

namespace agentd::standin {

namespace {

constexpr std::size_t kMaxBody = 256u * 1024u * 1024u;  // CSS objects may be agent packages

// More connections than any group the demo and the soak run (200 members beside
// anax) can hold open at once; see Server::Server.
constexpr std::size_t kMaxWorkers = 1024;

// cpp-httplib's ThreadPool with workers started on demand, up to `max`: one per
// connection open at once, never one waiting in the queue while the pool can grow,
// and no thousand idle threads for a test that opens three connections.
class GrowingPool : public httplib::TaskQueue {
 public:
  explicit GrowingPool(std::size_t max) : max_(max) {}
  ~GrowingPool() override { shutdown(); }
  GrowingPool(const GrowingPool&) = delete;
  GrowingPool& operator=(const GrowingPool&) = delete;

  void enqueue(std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(fn));
    if (idle_ < jobs_.size() && threads_.size() < max_) {
      threads_.emplace_back([this] { work(); });
    } else {
      cv_.notify_one();
    }
  }

  void shutdown() override {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads) t.join();
  }

 private:
  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return !jobs_.empty() || shutdown_; });
      --idle_;
      if (jobs_.empty()) return;  // shutting down with nothing left to serve
      std::function<void()> fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  const std::size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;  // workers waiting for a job
  bool shutdown_ = false;
};

// Response headers of every /v1 answer (exchange-api.md §1.3).
void add_exchange_headers(httplib::Response& res) {
  res.set_header("Cache-Control", "max-age=0, must-revalidate, no-cache, no-store");
  res.set_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-XSS-Protection", "1; mode=block");
}

// Closes the connection without a complete response: the status line and headers go
// out, then the chunked body aborts, so every HTTP client sees a transport error
// (curl: "transfer closed with outstanding read data remaining"). cpp-httplib offers
// no way to close a connection before the status line.
void drop_connection(httplib::Response& res) {
  res.status = 502;  // never a success, should a client ever look at it
  res.set_chunked_content_provider("application/json", [](std::size_t, httplib::DataSink&) { return false; });
}

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// Closes the connection `req` came on before any byte of a response goes out (the
// resetAfterCommit fault). cpp-httplib hands a handler no socket, so it is found
// among this process's descriptors by its two ports; shutdown() leaves the
// descriptor to cpp-httplib, whose write of the response then fails.
void reset_connection(const httplib::Request& req) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir("/proc/self/fd"), &closedir);
  if (!dir) return;
  while (const dirent* d = readdir(dir.get())) {
    char* end = nullptr;
    long fd = std::strtol(d->d_name, &end, 10);
    if (end == d->d_name || *end != '\0' || fd == dirfd(dir.get())) continue;
    struct stat st {};
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t n1 = sizeof local, n2 = sizeof peer;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &n1) != 0 ||
        getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &n2) != 0)
      continue;
    if (port_of(local) == req.local_port && port_of(peer) == req.remote_port) {
      ::shutdown(static_cast<int>(fd), SHUT_RDWR);
      return;
    }
  }
}

// {"code","msg"} as the Exchange answers (exchange-api.md §1.3).
Reply api(int status, const std::string& code, const std::string& msg) {
  Reply r;
  r.status = status;
  auto o = json::object();
  json::set(o.get(), "code", code);
  json::set(o.get(), "msg", msg);
  r.body = json::print(o.get());
  return r;
}

}  // namespace

void write_reply(const Reply& r, const std::string& path, httplib::Response& res) {
  res.status = r.status;
  if (path.rfind("/v1/", 0) == 0) add_exchange_headers(res);
  for (const auto& [k, v] : r.headers) res.set_header(k, v);
  if (!r.body.empty()) res.set_content(r.body, r.content_type);
}

Call to_call(const httplib::Request& req) {
  Call call;
  call.method = req.method == "HEAD" ? "GET" : req.method;
  call.path = req.path;
  for (const auto& [k, v] : req.params) call.params.emplace(k, v);
  for (const auto& [k, v] : req.headers) {
    std::string lower = k;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    call.headers.emplace(lower, v);
  }
  // Moved, not copied: object data may be hundreds of MiB (the request is not read again).
  // cpp-httplib's Request is a non-const object handed to handlers as const.
  call.body = std::move(const_cast<httplib::Request&>(req).body);
  return call;
}

json::Ptr faults_to_json(const Faults& f) {
  auto o = json::object();
  json::set(o.get(), "latencyMs", f.latency_ms);
  cJSON_AddNumberToObject(o.get(), "errorRate", f.error_rate);
  json::set(o.get(), "errorStatus", f.error_status);
  json::set(o.get(), "dropAfterCommit", f.drop_after_commit);
  json::set(o.get(), "resetAfterCommit", f.reset_after_commit);
  json::set(o.get(), "resetPathContains", f.reset_path_contains);
  auto p = json::array();
  for (const auto& id : f.partitioned) json::append(p.get(), id);
  json::set(o.get(), "partitioned", std::move(p));
  json::set(o.get(), "corrupt", f.corrupt);
  auto body = json::object();
  json::set(body.get(), "kind", f.body.kind);
  json::set(body.get(), "afterBytes", f.body.after_bytes);
  json::set(body.get(), "bytesPerSecond", f.body.bytes_per_second);
  json::set(body.get(), "count", f.body.count);
  json::set(body.get(), "pathContains", f.body.path_contains);
  json::set(o.get(), "body", std::move(body));
  return o;
}

std::string corrupt_body(const std::string& body, const std::string& how) {
  if (how == "truncated") return body.substr(0, body.size() / 2);
  if (how == "malformed") return "{\"nodeGroups\": [ <html>502 Bad Gateway</html>";
  if (how == "oversized") return body + std::string(8 * 1024 * 1024, ' ');
  if (how == "wrong-types") {
    // Every number (outside strings) becomes a string: "epoch":7 -> "epoch":"7".
    std::string out;
    bool in_string = false;
    for (std::size_t i = 0; i < body.size(); ++i) {
      char c = body[i];
      if (in_string) {
        out += c;
        if (c == '\\' && i + 1 < body.size())
          out += body[++i];
        else if (c == '"')
          in_string = false;
      } else if (c == '"') {
        in_string = true;
        out += c;
      } else if ((c >= '0' && c <= '9') || c == '-') {
        std::size_t j = i;
        while (j < body.size() && std::strchr("0123456789-+.eE", body[j])) ++j;
        out += '"' + body.substr(i, j - i) + '"';
        i = j - 1;
      } else {
        out += c;
      }
    }
    return out;
  }
  return body;
}

Result<Faults> parse_faults(const std::string& body) {
  auto root = json::parse(body, "faults");
  if (!root) return std::unexpected(root.error());
  const cJSON* o = root->get();
  if (!cJSON_IsObject(o)) return fail(Errc::parse, "faults must be a JSON object");
  Faults f;
  auto latency = json::opt_int(o, "latencyMs", 0);
  auto status = json::opt_int(o, "errorStatus", 503);
  auto drop = json::opt_int(o, "dropAfterCommit", 0);
  auto reset = json::opt_int(o, "resetAfterCommit", 0);
  auto reset_path = json::opt_string(o, "resetPathContains");
  if (!reset) return std::unexpected(reset.error());
  if (!reset_path) return std::unexpected(reset_path.error());
  if (*reset < 0) return fail(Errc::parse, "resetAfterCommit must not be negative");
  auto partitioned = json::opt_string_array(o, "partitioned");
  if (!latency) return std::unexpected(latency.error());
  if (!status) return std::unexpected(status.error());
  if (!drop) return std::unexpected(drop.error());
  if (!partitioned) return std::unexpected(partitioned.error());
  auto corrupt = json::opt_string(o, "corrupt");
  if (!corrupt) return std::unexpected(corrupt.error());
  if (!corrupt->empty() && *corrupt != "truncated" && *corrupt != "malformed" && *corrupt != "wrong-types" &&
      *corrupt != "oversized")
    return fail(Errc::parse, "corrupt must be one of truncated, malformed, wrong-types, oversized");
  f.corrupt = *corrupt;
  if (*latency < 0 || *latency > 600'000) return fail(Errc::parse, "latencyMs must be 0..600000");
  if (*status < 400 || *status > 599) return fail(Errc::parse, "errorStatus must be 400..599");
  if (*drop < 0) return fail(Errc::parse, "dropAfterCommit must not be negative");
  const cJSON* rate = cJSON_GetObjectItemCaseSensitive(o, "errorRate");
  if (rate && !cJSON_IsNull(rate)) {
    if (!cJSON_IsNumber(rate) || rate->valuedouble < 0.0 || rate->valuedouble > 1.0)
      return fail(Errc::parse, "errorRate must be a number in 0..1");
    f.error_rate = rate->valuedouble;
  }
  const cJSON* bf = cJSON_GetObjectItemCaseSensitive(o, "body");
  if (bf && !cJSON_IsNull(bf)) {
    if (!cJSON_IsObject(bf)) return fail(Errc::parse, "body must be an object");
    auto kind = json::opt_string(bf, "kind");
    auto after = json::opt_int(bf, "afterBytes", 0);
    auto speed = json::opt_int(bf, "bytesPerSecond", 0);
    auto count = json::opt_int(bf, "count", 0);
    auto contains = json::opt_string(bf, "pathContains");
    if (!kind) return std::unexpected(kind.error());
    if (!after) return std::unexpected(after.error());
    if (!speed) return std::unexpected(speed.error());
    if (!count) return std::unexpected(count.error());
    if (!contains) return std::unexpected(contains.error());
    if (!kind->empty() && *kind != "truncate" && *kind != "wrong-length" && *kind != "slow" &&
        *kind != "error-midway")
      return fail(Errc::parse, "body.kind must be one of truncate, wrong-length, slow, error-midway");
    if (*after < 0) return fail(Errc::parse, "body.afterBytes must not be negative");
    if (*count < 0) return fail(Errc::parse, "body.count must not be negative");
    if (*speed < 0 || (*kind == "slow" && *speed == 0))
      return fail(Errc::parse, "body.bytesPerSecond must be greater than 0 for slow");
    f.body = BodyFault{*kind, *after, *speed, *count, *contains};
  }
  f.latency_ms = *latency;
  f.error_status = static_cast<int>(*status);
  f.drop_after_commit = *drop;
  f.reset_after_commit = *reset;
  f.reset_path_contains = *reset_path;
  f.partitioned = std::move(*partitioned);
  return f;
}

Server::Server(Hub& hub) : hub_(hub), rng_(std::random_device{}()) {
  // cpp-httplib gives each connection a worker until it has been idle for the
  // keep-alive timeout: a connection asked every 2 s or oftener (a lease holder, the
  // head of the queue, a download) keeps its worker for up to keep-alive-max-count
  // requests, and a connection beyond the pool waits in its queue meanwhile. With
  // 100 members (agentd's one or two connections each, an anax stand-in's, the
  // demo's) a fixed pool of 64 left new callers unanswered for 20 s: the pool grows
  // to one worker per open connection instead. (The listen backlog is raised to
  // match in tests/CMakeLists.txt: cpp-httplib's 5 drops SYNs of a burst of connects.)
  http_.new_task_queue = [] { return new GrowingPool(kMaxWorkers); };
  http_.set_keep_alive_max_count(100);
  http_.set_keep_alive_timeout(2);  // also bounds how long stop() waits for idle connections
  http_.set_read_timeout(30, 0);
  http_.set_write_timeout(30, 0);
  // Headers and body go out as separate writes; without this each response waits
  // out the delayed-ACK timer (about 40 ms on loopback).
  http_.set_tcp_nodelay(true);
  http_.set_payload_max_length(kMaxBody);
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { serve(req, res); };
  http_.Get(".*", handler);
  http_.Put(".*", handler);
  http_.Post(".*", handler);
  http_.Patch(".*", handler);
  http_.Delete(".*", handler);
}

Server::~Server() {
  stop();
}

Result<int> bind_http(httplib::Server& http, const std::string& host, int port) {
  // Debian's cpp-httplib is a compiled library that listens with a backlog of 5: a
  // burst of connects (a hundred members at once, each reconnecting after the
  // keep-alive timeout) loses SYNs and waits out TCP's retransmission, a second and
  // more. Linux takes a second listen() on the bound socket as a new backlog.
  auto listening = std::make_shared<int>(-1);
  http.set_socket_options([listening](socket_t sock) {
    httplib::default_socket_options(sock);
    *listening = sock;
  });
  int bound = port;
  if (port == 0) {
    bound = http.bind_to_any_port(host);
    if (bound <= 0) return fail(Errc::io, "cannot bind " + host + ":0");
  } else if (!http.bind_to_port(host, port)) {
    return fail(Errc::io, "cannot bind " + host + ":" + std::to_string(port));
  }
  if (*listening >= 0 && ::listen(*listening, SOMAXCONN) != 0)
    return fail(Errc::io, "cannot raise the listen backlog on " + host + ":" + std::to_string(bound));
  return bound;
}

Result<int> Server::bind(const std::string& host, int port) {
  return bind_http(http_, host, port);
}

void Server::run() {
  http_.listen_after_bind();
}

void Server::stop() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();  // slow responses give up instead of holding their workers
  http_.stop();
}

bool Server::wait_until(std::chrono::steady_clock::time_point when) {
  std::unique_lock lock(stop_mu_);
  return !stop_cv_.wait_until(lock, when, [this] { return stopping_; });
}

bool Server::is_running() const {
  return http_.is_running();
}

Faults Server::faults() const {
  std::lock_guard lock(mu_);
  return faults_;
}

void Server::set_faults(Faults f) {
  std::lock_guard lock(mu_);
  faults_ = std::move(f);
}

std::map<std::string, Server::Counts> Server::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Server::count(const std::string& caller, const Call& call, const Reply& r) {
  if (caller.empty()) return;
  bool group_read = false;
  bool file_read = false;
  if (call.method == "GET") {
    file_read = call.path.find("/agent_software_files-") != std::string::npos && call.path.ends_with("/data");
    // /v1/orgs/{org}/hagroups/{g}
    std::size_t slashes = std::count(call.path.begin(), call.path.end(), '/');
    group_read = call.path.find("/hagroups/") != std::string::npos && slashes == 5;
  }
  std::lock_guard lock(mu_);
  Counts& c = stats_[caller];
  ++c.total;
  if (r.status == 304) ++c.not_modified;
  if (r.status == 412) ++c.conflicts;
  if (group_read) ++c.group_reads;
  if (file_read && r.status >= 200 && r.status < 300) ++c.file_reads;
  if (r.write && r.status >= 200 && r.status < 300) ++c.writes;
}

Reply Server::standin(const Call& call) {
  auto who = hub_.authenticate(call.header("authorization"));
  if (!who) return api(401, "invalid-credentials", "invalid.credentials");
  if (!who->is_root())
    return api(403, "access-denied",
               "Access denied: '" + who->full() + "' does not have authorization: STANDIN_FAULTS");
  if (call.path == "/v1/standin/faults" && call.method == "GET") {
    Reply r;
    r.body = json::print(faults_to_json(faults()).get());
    return r;
  }
  if (call.path == "/v1/standin/stats" && call.method == "GET") {
    auto requests = json::object();
    for (const auto& [caller, c] : stats()) {
      auto o = json::object();
      json::set(o.get(), "total", c.total);
      json::set(o.get(), "notModified", c.not_modified);
      json::set(o.get(), "groupReads", c.group_reads);
      json::set(o.get(), "conflicts", c.conflicts);
      json::set(o.get(), "writes", c.writes);
      json::set(o.get(), "fileReads", c.file_reads);
      json::set(requests.get(), caller.c_str(), std::move(o));
    }
    auto root = json::object();
    json::set(root.get(), "requests", std::move(requests));
    Reply r;
    r.body = json::print(root.get());
    return r;
  }
  if (call.path == "/v1/standin/faults" && call.method == "PUT") {
    auto f = parse_faults(call.body);
    if (!f) return api(400, "invalid-input", f.error().message);
    set_faults(std::move(*f));
    return api(201, "ok", "faults updated");
  }
  return api(404, "not-found", "unrecognized route");
}

void Server::serve(const httplib::Request& req, httplib::Response& res) {
  // The hub answers Range itself (CSS object data, resumable downloads).
  // cpp-httplib would otherwise cut every reply to the requested range once more,
  // even a 200 or an error. Its Request is a non-const object handed to us as const.
  const_cast<httplib::Request&>(req).ranges.clear();
  Call call = to_call(req);

  if (call.path.rfind("/v1/standin/", 0) == 0) {
    write_reply(standin(call), call.path, res);
    return;
  }

  std::string authorization = call.header("authorization");
  auto who = hub_.authenticate(authorization);
  bool root = who && who->is_root();
  if (!root) {
    Faults f = faults();
    std::string user = basic_user(authorization);
    if (!user.empty() && std::find(f.partitioned.begin(), f.partitioned.end(), user) != f.partitioned.end()) {
      drop_connection(res);
      return;
    }
    if (f.latency_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(f.latency_ms));
    if (take_fail_next(call.path)) {
      write_reply(api(503, "internal_error", "injected fault: the last transfer of this object broke"),
                  call.path, res);
      return;
    }
    if (f.error_rate > 0.0) {
      bool hit = false;
      {
        std::lock_guard lock(mu_);
        hit = std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < f.error_rate;
      }
      if (hit) {
        write_reply(api(f.error_status, "internal_error", "injected fault"), call.path, res);
        return;
      }
    }
  }

  Reply r = hub_.handle(call);
  // The anax stand-in (tests/anax) uses the node's credentials too: counted apart.
  std::string caller = basic_user(authorization);
  if (!caller.empty() && call.header("user-agent").rfind("anax-standin", 0) == 0) caller += "#anax";
  count(caller, call, r);
  if (!root && call.method == "GET" && r.status == 200) {
    std::string how = faults().corrupt;
    if (!how.empty()) r.body = corrupt_body(r.body, how);
  }

  if (!root && r.write && r.status >= 200 && r.status < 300) {
    std::lock_guard lock(mu_);
    if (faults_.drop_after_commit > 0) {
      --faults_.drop_after_commit;
      drop_connection(res);
      return;
    }
    if (faults_.reset_after_commit > 0 && call.path.find(faults_.reset_path_contains) != std::string::npos) {
      --faults_.reset_after_commit;
      reset_connection(req);
      drop_connection(res);
      return;
    }
  }
  if (r.file) {
    // HEAD sends no body, so there is nothing to damage.
    stream(r, call.path, root || req.method == "HEAD" ? BodyFault{} : take_body_fault(call.path), res);
    return;
  }
  write_reply(r, call.path, res);
}

BodyFault Server::take_body_fault(const std::string& path) {
  std::lock_guard lock(mu_);
  BodyFault& f = faults_.body;
  if (f.kind.empty() || path.find(f.path_contains) == std::string::npos) return {};
  BodyFault taken = f;
  if (f.count > 0 && --f.count == 0) f = BodyFault{};  // that was the last one to damage
  return taken;
}

bool Server::take_fail_next(const std::string& path) {
  std::lock_guard lock(mu_);
  return fail_next_.erase(path) > 0;
}

namespace {
constexpr std::size_t kStreamChunk = 64 * 1024;
constexpr std::size_t kSlowChunkMax = 4 * 1024;
}  // namespace

// Sends a file body with a content provider, so a large object never sits in
// memory, and breaks it as `fault` says. Returning false from the provider makes
// cpp-httplib close the connection; it stops calling it once the server stops.
void Server::stream(const Reply& r, const std::string& path, BodyFault fault, httplib::Response& res) {
  res.status = r.status;
  for (const auto& [k, v] : r.headers) res.set_header(k, v);
  const std::uint64_t length = r.file->length();
  if (length == 0) return;  // an empty object: no body to send or break
  struct State {
    std::shared_ptr<const FileBody> file;
    BodyFault fault;
    std::uint64_t limit;  // bytes sent before the connection is closed
    std::chrono::steady_clock::time_point start;
    std::vector<char> buffer;
  };
  auto st = std::make_shared<State>();
  st->file = r.file;
  st->fault = std::move(fault);
  st->limit = length;
  const std::string& kind = st->fault.kind;
  const auto after = static_cast<std::uint64_t>(std::max<std::int64_t>(st->fault.after_bytes, 0));
  if (kind == "truncate" || kind == "wrong-length" || kind == "error-midway")
    st->limit = std::min(after, length);
  st->start = std::chrono::steady_clock::now();
  const std::uint64_t declared = kind == "wrong-length" ? length + 1 : length;

  auto provider = [this, st, path, after](std::size_t offset, std::size_t, httplib::DataSink& sink) -> bool {
    if (offset >= st->limit) {
      if (st->fault.kind == "error-midway") {
        std::lock_guard lock(mu_);
        fail_next_.insert(path);
      }
      return false;  // close the connection mid-body
    }
    std::size_t chunk = kStreamChunk;
    if (st->fault.kind == "slow" && offset >= after) {
      const auto rate = static_cast<std::uint64_t>(st->fault.bytes_per_second);
      chunk = static_cast<std::size_t>(std::clamp<std::uint64_t>(rate / 10, 1, kSlowChunkMax));
      chunk = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, st->limit - offset));
      // A chunk goes out when the rate allows its last byte: never faster than asked.
      const auto due = st->start + std::chrono::microseconds((offset + chunk - after) * 1'000'000 / rate);
      if (!wait_until(due)) return false;
    } else if (st->fault.kind == "slow") {
      chunk = static_cast<std::size_t>(std::min<std::uint64_t>(kStreamChunk, after - offset));
    }
    chunk = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, st->limit - offset));
    st->buffer.resize(chunk);
    auto got = st->file->read(offset, st->buffer.data(), chunk);
    if (!got) {
      std::fprintf(stderr, "exchange-standin: %s\n", got.error().describe().c_str());
      return false;
    }
    return sink.write(st->buffer.data(), *got);
  };
  res.set_content_provider(static_cast<std::size_t>(declared), r.content_type, std::move(provider));
}

}  // namespace agentd::standin
