// CurlHttpClient against an in-process cpp-httplib server on 127.0.0.1, port 0.
#include "agentd/http.h"

#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>

using namespace agentd;
using namespace std::chrono_literals;

namespace {

// A one-shot signal between the server thread and the test, waited on with a deadline.
class Gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool is_open() {
    std::lock_guard lock(mu_);
    return open_;
  }
  bool wait(std::chrono::milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct TestServer {
  httplib::Server svr;
  int port = 0;
  std::thread thread;

  void start() {
    port = svr.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    thread = std::thread([this] { svr.listen_after_bind(); });
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!svr.is_running() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    REQUIRE(svr.is_running());
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
  ~TestServer() {
    svr.stop();
    if (thread.joinable()) thread.join();
  }
};

HttpOptions fast_options() {
  HttpOptions o;
  o.connect_timeout = 2s;
  o.total_timeout = 5s;
  return o;
}

}  // namespace

TEST_SUITE("http") {
  TEST_CASE(
      "GET and PUT carry bodies, JSON headers, extra headers and Basic auth; response headers are "
      "lower-cased") {
    TestServer s;
    std::mutex mu;
    httplib::Request seen_get, seen_put;
    s.svr.Get("/v1/thing", [&](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu);
        seen_get = req;
      }
      res.set_header("ETag", "\"7\"");
      res.set_header("X-Mixed-Case", "Value");
      res.set_content(R"({"ok":true})", "application/json");
    });
    s.svr.Put("/v1/thing", [&](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu);
        seen_put = req;
      }
      res.status = 201;
      res.set_content("got:" + req.body, "application/json");
    });
    s.start();

    HttpOptions o = fast_options();
    o.basic_user = "myorg/node1";
    o.basic_password = "s3cret";
    auto client = make_curl_http_client(o);

    auto get = client->perform({"GET", s.url("/v1/thing"), {{"If-None-Match", "\"6\""}}, ""});
    REQUIRE(get.has_value());
    CHECK(get->status == 200);
    CHECK(get->body == R"({"ok":true})");
    CHECK(get->header("etag") == "\"7\"");
    CHECK(get->header("x-mixed-case") == "Value");
    CHECK(get->header("ETag") == "");  // lookups use lower-case names
    {
      std::lock_guard lock(mu);
      CHECK(seen_get.get_header_value("Authorization") == "Basic bXlvcmcvbm9kZTE6czNjcmV0");
      CHECK(seen_get.get_header_value("Accept") == "application/json");
      CHECK(seen_get.get_header_value("If-None-Match") == "\"6\"");
      CHECK_FALSE(seen_get.has_header("Content-Type"));
    }

    auto put = client->perform({"PUT", s.url("/v1/thing"), {{"If-Match", "\"7\""}}, R"({"state":"idle"})"});
    REQUIRE(put.has_value());
    CHECK(put->status == 201);
    CHECK(put->body == R"(got:{"state":"idle"})");
    std::lock_guard lock(mu);
    CHECK(seen_put.method == "PUT");
    CHECK(seen_put.body == R"({"state":"idle"})");
    CHECK(seen_put.get_header_value("Content-Type") == "application/json");
    CHECK(seen_put.get_header_value("If-Match") == "\"7\"");
    CHECK(seen_put.get_header_value("Authorization") == "Basic bXlvcmcvbm9kZTE6czNjcmV0");
  }

  TEST_CASE("custom methods: PATCH with a body, DELETE without; no auth header without credentials") {
    TestServer s;
    std::mutex mu;
    bool had_auth = false;
    std::string patch_body, delete_content_type = "unset";
    s.svr.Patch("/x", [&](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      patch_body = req.body;
      res.status = 201;
    });
    s.svr.Delete("/x", [&](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      had_auth = req.has_header("Authorization");
      delete_content_type = req.get_header_value("Content-Type");
      res.status = 204;
    });
    s.start();
    auto client = make_curl_http_client(fast_options());
    auto p = client->perform({"PATCH", s.url("/x"), {}, R"({"a":1})"});
    REQUIRE(p.has_value());
    CHECK(p->status == 201);
    auto d = client->perform({"DELETE", s.url("/x"), {}, ""});
    REQUIRE(d.has_value());
    CHECK(d->status == 204);
    CHECK(d->body.empty());
    std::lock_guard lock(mu);
    CHECK(patch_body == R"({"a":1})");
    CHECK_FALSE(had_auth);
    CHECK(delete_content_type == "");  // curl's form Content-Type is not sent for an empty body
  }

  TEST_CASE("requests reuse one connection") {
    TestServer s;
    std::mutex mu;
    std::set<int> client_ports;
    int requests = 0;
    auto record = [&](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      client_ports.insert(req.remote_port);
      ++requests;
      res.status = req.method == "GET" ? 200 : 201;
      res.set_content("{}", "application/json");
    };
    s.svr.Get("/r", record);
    s.svr.Put("/r", record);
    s.start();
    auto client = make_curl_http_client(fast_options());
    REQUIRE(client->perform({"GET", s.url("/r"), {}, ""}).has_value());
    REQUIRE(client->perform({"PUT", s.url("/r"), {}, "{}"}).has_value());
    REQUIRE(client->perform({"GET", s.url("/r"), {}, ""}).has_value());
    std::lock_guard lock(mu);
    CHECK(requests == 3);
    CHECK(client_ports.size() == 1);
  }

  TEST_CASE("a response over the size cap is too_large, by Content-Length or while streaming") {
    TestServer s;
    s.svr.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(10'000, 'x'), "application/json");
    });
    s.svr.Get("/big-chunked", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [](size_t offset, httplib::DataSink& sink) {
        if (offset >= 10'000) {
          sink.done();
          return true;
        }
        std::string chunk(500, 'y');
        return sink.write(chunk.data(), chunk.size());
      });
    });
    s.svr.Get("/small", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(1000, 'z'), "application/json");
    });
    s.start();
    HttpOptions o = fast_options();
    o.max_response_bytes = 1000;
    auto client = make_curl_http_client(o);

    auto big = client->perform({"GET", s.url("/big"), {}, ""});
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().code == Errc::too_large);

    auto chunked = client->perform({"GET", s.url("/big-chunked"), {}, ""});
    REQUIRE_FALSE(chunked.has_value());
    CHECK(chunked.error().code == Errc::too_large);

    auto small =
        client->perform({"GET", s.url("/small"), {}, ""});  // exactly at the cap; client still usable
    REQUIRE(small.has_value());
    CHECK(small->body.size() == 1000);
  }

  TEST_CASE("a hub slower than the total timeout is a transport error") {
    TestServer s;
    Gate release;
    s.svr.Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
      release.wait(10s);
      res.set_content("{}", "application/json");
    });
    s.start();
    HttpOptions o = fast_options();
    o.total_timeout = 300ms;
    auto client = make_curl_http_client(o);
    auto t0 = std::chrono::steady_clock::now();
    auto r = client->perform({"GET", s.url("/slow"), {}, ""});
    auto took = std::chrono::steady_clock::now() - t0;
    release.open();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK(r.error().transient());
    CHECK(r.error().message.find("/slow") != std::string::npos);
    CHECK(took < 5s);
  }

  TEST_CASE("TLS: 1.2 at least; HZN_MGMT_HUB_CERT_PATH is the only CA unless the system's are added") {
    HttpOptions o;
    CHECK(std::string(tls_policy(o).min_version) == "1.2");
    CHECK(tls_policy(o).system_cas);
    CHECK(tls_policy(o).ca_file.empty());
    o.ca_file = "/etc/agentd/hub-ca.pem";
    CHECK(tls_policy(o).ca_file == "/etc/agentd/hub-ca.pem");
    CHECK_FALSE(tls_policy(o).system_cas);  // pinned
    o.ca_file_adds_system = true;
    CHECK(tls_policy(o).system_cas);
  }

  TEST_CASE("a download trickled just above the low-speed limit ends at the request's own deadline") {
    TestServer s;
    std::atomic<bool> stop{false};
    s.svr.Get("/trickle", [&](const httplib::Request&, httplib::Response& res) {
      res.set_content_provider(1'000'000, "application/octet-stream",
                               [&](size_t, size_t, httplib::DataSink& sink) {
                                 if (stop.load()) return false;
                                 std::this_thread::sleep_for(20ms);  // the hub's pace: 1 KiB every 20 ms
                                 std::string chunk(1024, 'x');
                                 sink.write(chunk.data(), chunk.size());
                                 return true;
                               });
    });
    s.start();
    char tmpl[] = "/tmp/agentd-http-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::string path = std::string(tmpl) + "/file";
    auto client = make_curl_http_client(fast_options());
    HttpRequest req{"GET", s.url("/trickle"), {}, ""};
    req.timeout = 500ms;
    auto t0 = std::chrono::steady_clock::now();
    auto r = client->download(req, path, 0, 10'000'000, {});
    auto took = std::chrono::steady_clock::now() - t0;
    stop.store(true);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK(took < 4s);
    ::unlink(path.c_str());
    ::rmdir(tmpl);
  }

  TEST_CASE("connection refused is a transport error") {
    // A bound socket that never listens: connecting to its port is refused.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    const int port = ntohs(addr.sin_port);

    auto client = make_curl_http_client(fast_options());
    auto r = client->perform({"GET", "http://127.0.0.1:" + std::to_string(port) + "/v1", {}, ""});
    ::close(fd);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
    CHECK_FALSE(r.error().message.empty());
  }

  TEST_CASE("cancellation aborts a transfer in progress, and a request before it starts") {
    TestServer s;
    Gate arrived, release;
    std::atomic<int> hits{0};
    s.svr.Get("/wait", [&](const httplib::Request&, httplib::Response& res) {
      ++hits;
      arrived.open();
      release.wait(10s);
      res.set_content("{}", "application/json");
    });
    s.start();

    HttpOptions o = fast_options();
    o.total_timeout = 20s;
    o.cancelled = [&] { return arrived.is_open(); };
    auto client = make_curl_http_client(o);
    auto t0 = std::chrono::steady_clock::now();
    auto r = client->perform({"GET", s.url("/wait"), {}, ""});
    auto took = std::chrono::steady_clock::now() - t0;
    release.open();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::cancelled);
    CHECK(took < 8s);

    // Already cancelled: nothing is sent.
    auto again = client->perform({"GET", s.url("/wait"), {}, ""});
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().code == Errc::cancelled);
    CHECK(hits.load() == 1);
  }

  TEST_CASE("a CA file that does not exist is a transport error, not a crash") {
    TestServer s;
    s.svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{}", "application/json");
    });
    s.start();
    HttpOptions o = fast_options();
    o.ca_file = "/nonexistent/agentd-test-ca.pem";
    auto client = make_curl_http_client(o);
    auto r = client->perform({"GET", "https://127.0.0.1:" + std::to_string(s.port) + "/", {}, ""});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
  }

  TEST_CASE("only http and https URLs are fetched") {
    auto client = make_curl_http_client(fast_options());
    auto r = client->perform({"GET", "file:///etc/passwd", {}, ""});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::transport);
  }
}
