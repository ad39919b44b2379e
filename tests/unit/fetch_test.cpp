// fetch_all and HttpClient::download with the real curl client, against the
// stand-in's CSS object routes and small cpp-httplib servers that misbehave.
#include "upgrade/fetch.h"

#include <doctest/doctest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness/harness.h"
#include "hub/in_process.h"
#include "support/fake_sleeper.h"
#include "support/recording_http.h"
#include "support/standin_hub.h"

using namespace agentd;
using namespace std::chrono_literals;
using agentd::harness::pattern;
using agentd::harness::slurp;
using agentd::testing::FakeSleeper;
using agentd::testing::RecordingHttp;

namespace {

bool exists(const std::string& path) {
  return std::filesystem::exists(path);
}

HttpOptions fast_options(const std::string& user = "", const std::string& password = "") {
  HttpOptions o;
  o.connect_timeout = 2s;
  o.total_timeout = 5s;
  o.low_speed_time = 5s;
  o.basic_user = user;
  o.basic_password = password;
  return o;
}

// The stand-in with org o, its admin and node n1; objects are put as root and
// fetched as the node (faults spare root).
class CssHub : public testing::StandinHub {
 public:
  CssHub() {
    seed_org();
    REQUIRE(
        call(
            "PUT", "/v1/orgs/o/nodes/n1", testing::kAdmin,
            R"({"token":"tok1","name":"n1","pattern":"","arch":"amd64","softwareVersions":{"horizon":"1.0.0"}})")
            .status == 201);
    node_ = make_curl_http_client(fast_options("o/n1", "tok1"));
  }

  std::string object_path(const std::string& id) const {
    return "/css/api/v1/objects/o/agent_software_files-2.0.0/" + id + "/data";
  }
  std::string object_url(const std::string& id) const { return url(object_path(id)); }

  void put_object(const std::string& id, const std::string& content) {
    REQUIRE(call("PUT", object_path(id), testing::kRoot, content).status == 204);
  }
  void set_faults(const std::string& body) {
    auto r = StandinHub::set_faults(body);
    REQUIRE_MESSAGE(r.status == 201, r.body);
  }

  HttpClient& node() { return *node_; }

 private:
  std::unique_ptr<HttpClient> node_;
};

// A small cpp-httplib server on 127.0.0.1, port 0, for behaviour the stand-in does not have.
struct PlainServer {
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
  ~PlainServer() {
    svr.stop();
    if (thread.joinable()) thread.join();
  }
};

// cpp-httplib cuts a reply to the request's Range by itself; these servers decide alone.
void no_auto_range(const httplib::Request& req) {
  const_cast<httplib::Request&>(req).ranges.clear();
}

FetchOptions quick_options(FakeSleeper* sleeper = nullptr) {
  FetchOptions o;
  o.retry = RetryPolicy{3, 10ms, 100ms};
  o.sleeper = sleeper;
  o.min_free_bytes = 0;
  return o;
}

}  // namespace

TEST_SUITE("fetch") {
  TEST_CASE("file names: plain names only") {
    for (const char* ok : {"agent-2.0.0_amd64.deb", "horizon+cli.tar.gz", "a", "A.b-c_d+e"})
      CHECK(fetch_name_ok(ok));
    for (const std::string& bad :
         std::vector<std::string>{"", ".hidden", "..", "../etc/passwd", "a/b", "/abs", "a b", "a\\b",
                                  "x.part", "na\xc3\xafve", std::string("a\0b", 3), std::string(129, 'a')})
      CHECK_FALSE(fetch_name_ok(bad));
    CHECK(fetch_name_ok(std::string(128, 'a')));
  }

  TEST_CASE("the stand-in's object data honours Range: bytes=N-") {
    CssHub hub;
    const std::string content = pattern(1000);
    hub.put_object("obj", content);
    auto whole = hub.node().perform({"GET", hub.object_url("obj"), {}, ""});
    REQUIRE(whole.has_value());
    CHECK(whole->status == 200);
    CHECK((whole->body == content));
    CHECK(whole->header("accept-ranges") == "bytes");

    auto tail = hub.node().perform({"GET", hub.object_url("obj"), {{"Range", "bytes=600-"}}, ""});
    REQUIRE(tail.has_value());
    CHECK(tail->status == 206);
    CHECK(tail->header("content-range") == "bytes 600-999/1000");
    CHECK((tail->body == content.substr(600)));

    auto past = hub.node().perform({"GET", hub.object_url("obj"), {{"Range", "bytes=1000-"}}, ""});
    REQUIRE(past.has_value());
    CHECK(past->status == 416);
    CHECK(past->header("content-range") == "bytes */1000");

    // Other valid forms are ignored: the whole object, with no cutting by the HTTP library
    // either. (cpp-httplib itself answers 416 to a Range header it cannot parse.)
    for (const char* other : {"bytes=0-9", "bytes=-10", "bytes=0-0,5-"}) {
      auto r = hub.node().perform({"GET", hub.object_url("obj"), {{"Range", other}}, ""});
      REQUIRE(r.has_value());
      CHECK(r->status == 200);
      CHECK((r->body == content));
    }
  }

  TEST_CASE("download: streams to the file, resumes with Range, reports progress, refuses 416") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(3 * 1024 * 1024 + 17);
    hub.put_object("big", content);
    const std::string path = dir.file("big.part");

    std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
    auto progress = [&](std::uint64_t done, std::uint64_t total) { seen.emplace_back(done, total); };
    auto r = hub.node().download({"GET", hub.object_url("big"), {}, ""}, path, 0, content.size(), progress);
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->status == 200);
    CHECK(r->body.empty());
    CHECK((slurp(path) == content));
    REQUIRE(seen.size() >= 2);
    CHECK(seen.front().first == 0);
    CHECK(seen.back() == std::make_pair<std::uint64_t, std::uint64_t>(content.size(), content.size()));
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].first >= seen[i - 1].first);

    // Keep the first 1000 bytes (and cut whatever follows them), fetch the rest.
    std::filesystem::resize_file(path, 5000);
    seen.clear();
    r = hub.node().download({"GET", hub.object_url("big"), {}, ""}, path, 1000, content.size(), progress);
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(r->status == 206);
    CHECK((slurp(path) == content));
    REQUIRE_FALSE(seen.empty());
    CHECK(seen.front().first == 1000);

    // Nothing left to ask for.
    r = hub.node().download({"GET", hub.object_url("big"), {}, ""}, path, content.size(), content.size(), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::http);
    CHECK(r.error().http_status == 416);
    CHECK(r.error().message.find("range not satisfiable") != std::string::npos);
    CHECK((slurp(path) == content));  // untouched

    // An offset beyond the file is the caller's mistake, found before any request.
    r = hub.node().download({"GET", hub.object_url("big"), {}, ""}, dir.file("other"), 10, content.size(),
                            {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::io);

    // An error status leaves the file alone and carries the hub's text.
    const std::string kept = dir.write("kept.part", "abc");
    r = hub.node().download({"GET", hub.object_url("missing"), {}, ""}, kept, 3, 1000, {});
    REQUIRE(r.has_value());
    CHECK(r->status == 404);
    CHECK(r->body.find("not found") != std::string::npos);
    CHECK((slurp(kept) == "abc"));
  }

  TEST_CASE("download: a symlink planted at the .part file is not followed") {
    CssHub hub;
    testing::TempDir dir;
    hub.put_object("small", pattern(1000));
    const std::string victim = dir.write("victim", "precious");
    const std::string path = dir.file("small.part");
    REQUIRE(::symlink(victim.c_str(), path.c_str()) == 0);
    auto r = hub.node().download({"GET", hub.object_url("small"), {}, ""}, path, 0, 1000, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::io);
    CHECK((slurp(victim) == "precious"));
  }

  TEST_CASE("a client without download support says so") {
    struct PerformOnly final : HttpClient {
      Result<HttpResponse> perform(const HttpRequest&) override { return HttpResponse{}; }
    } client;
    auto r = client.download({"GET", "http://127.0.0.1:1/", {}, ""}, "/nonexistent/x", 0, 1, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::unsupported);
  }

  TEST_CASE("fetch_all: whole files, then nothing again; progress only grows") {
    CssHub hub;
    testing::TempDir dir;
    const std::string a = pattern(2 * 1024 * 1024 + 3, 1);
    const std::string b = pattern(4096, 2);
    hub.put_object("a", a);
    hub.put_object("b", b);
    std::vector<FetchItem> items{{"agent.deb", hub.object_url("a"), a.size(), 0},
                                 {"config.tar.gz", hub.object_url("b"), 0, 1'000'000}};
    RecordingHttp http(hub.node());
    std::vector<FetchProgress> seen;
    FetchOptions o = quick_options();
    o.progress = [&](const FetchProgress& p) { seen.push_back(p); };
    auto st = fetch_all(http, items, dir.path(), o);
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK((slurp(dir.file("agent.deb")) == a));
    CHECK((slurp(dir.file("config.tar.gz")) == b));
    CHECK_FALSE(exists(dir.file("agent.deb.part")));
    CHECK_FALSE(exists(dir.file("config.tar.gz.part")));
    CHECK(http.offsets == std::vector<std::uint64_t>{0, 0});

    REQUIRE(seen.size() >= 3);
    for (std::size_t i = 1; i < seen.size(); ++i) {
      CHECK(seen[i].all_done >= seen[i - 1].all_done);
      CHECK(seen[i].index >= seen[i - 1].index);
      if (seen[i].index == seen[i - 1].index) CHECK(seen[i].done >= seen[i - 1].done);
    }
    CHECK(seen.front().count == 2);
    CHECK(seen.front().total == a.size());
    CHECK(seen.front().all_total == 0);  // one size is unknown
    CHECK(seen.back().name == "config.tar.gz");
    CHECK(seen.back().done == b.size());
    CHECK(seen.back().all_done == a.size() + b.size());

    // Already complete: no request at all.
    http.offsets.clear();
    st = fetch_all(http, items, dir.path(), o);
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK(http.offsets.empty());
  }

  TEST_CASE("fetch_all resumes a half-written .part and transfers only the rest") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(1024 * 1024, 3);
    hub.put_object("a", content);
    const std::size_t half = content.size() / 2;
    // Bytes that differ from the object: had they been fetched again, the result would show it.
    dir.write("agent.deb.part", std::string(half, 'Z'));
    RecordingHttp http(hub.node());
    auto st =
        fetch_all(http, {{"agent.deb", hub.object_url("a"), content.size(), 0}}, dir.path(), quick_options());
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK(http.offsets == std::vector<std::uint64_t>{half});
    CHECK((slurp(dir.file("agent.deb")) == std::string(half, 'Z') + content.substr(half)));
    CHECK_FALSE(exists(dir.file("agent.deb.part")));

    // A .part already complete (stopped before the rename) needs no request; a final
    // file of the wrong size is fetched again.
    testing::TempDir dir2;
    dir2.write("one.part", content);
    dir2.write("two", "short");
    http.offsets.clear();
    st = fetch_all(
        http,
        {{"one", hub.object_url("a"), content.size(), 0}, {"two", hub.object_url("a"), content.size(), 0}},
        dir2.path(), quick_options());
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK(http.offsets == std::vector<std::uint64_t>{0});
    CHECK((slurp(dir2.file("one")) == content));
    CHECK((slurp(dir2.file("two")) == content));

    // Size unknown and the .part already whole: the hub answers 416 and the file starts over.
    testing::TempDir dir3;
    dir3.write("three.part", std::string(content.size(), 'Y'));
    http.offsets.clear();
    st = fetch_all(http, {{"three", hub.object_url("a"), 0, content.size()}}, dir3.path(), quick_options());
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK(http.offsets == std::vector<std::uint64_t>{content.size(), 0});
    CHECK((slurp(dir3.file("three")) == content));
  }

  TEST_CASE("a server that ignores Range: the file starts over cleanly") {
    const std::string content = pattern(200'000, 4);
    PlainServer s;
    std::mutex mu;
    std::vector<std::string> ranges;
    s.svr.Get("/f", [&](const httplib::Request& req, httplib::Response& res) {
      no_auto_range(req);
      {
        std::lock_guard lock(mu);
        ranges.push_back(req.get_header_value("Range"));
      }
      res.set_content(content, "application/octet-stream");
    });
    s.start();
    testing::TempDir dir;
    dir.write("f.part", std::string(150'000, 'Z'));  // longer than what a 200 brings first
    auto client = make_curl_http_client(fast_options());
    auto st = fetch_all(*client, {{"f", s.url("/f"), content.size(), 0}}, dir.path(), quick_options());
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK((slurp(dir.file("f")) == content));
    std::lock_guard lock(mu);
    CHECK(ranges == std::vector<std::string>{"bytes=150000-"});
  }

  TEST_CASE("a transfer cut off mid-body is resumed from where it stopped") {
    const std::string content = pattern(300'000, 5);
    PlainServer s;
    std::mutex mu;
    std::vector<std::string> ranges;
    s.svr.Get("/f", [&](const httplib::Request& req, httplib::Response& res) {
      no_auto_range(req);
      std::string range = req.get_header_value("Range");
      bool first = false;
      {
        std::lock_guard lock(mu);
        first = ranges.empty();
        ranges.push_back(range);
      }
      if (first) {
        // Announce the whole object, send 100000 bytes, then drop the connection.
        res.set_content_provider(content.size(), "application/octet-stream",
                                 [&](std::size_t offset, std::size_t, httplib::DataSink& sink) {
                                   if (offset >= 100'000) return false;
                                   return sink.write(content.data() + offset, 100'000 - offset);
                                 });
        return;
      }
      std::size_t from = std::stoul(range.substr(6));
      res.status = 206;
      res.set_header("Content-Range", "bytes " + std::to_string(from) + "-" +
                                          std::to_string(content.size() - 1) + "/" +
                                          std::to_string(content.size()));
      res.set_content(content.substr(from), "application/octet-stream");
    });
    s.start();
    testing::TempDir dir;
    FakeSleeper sleeper;
    auto client = make_curl_http_client(fast_options());
    auto st =
        fetch_all(*client, {{"f", s.url("/f"), content.size(), 0}}, dir.path(), quick_options(&sleeper));
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK((slurp(dir.file("f")) == content));
    CHECK(sleeper.waits.size() == 1);
    std::lock_guard lock(mu);
    CHECK(ranges == std::vector<std::string>{"", "bytes=100000-"});
  }

  TEST_CASE("a stop request aborts a download in progress and a backoff wait") {
    PlainServer s;
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    s.svr.Get("/slow", [&](const httplib::Request& req, httplib::Response& res) {
      no_auto_range(req);
      res.set_chunked_content_provider("application/octet-stream",
                                       [&](std::size_t offset, httplib::DataSink& sink) {
                                         if (offset == 0) return sink.write("0123456789", 10);
                                         std::unique_lock lock(mu);
                                         cv.wait_for(lock, 10s, [&] { return released; });
                                         sink.done();
                                         return true;
                                       });
    });
    s.start();
    testing::TempDir dir;
    std::atomic<bool> stop{false};
    HttpOptions o = fast_options();
    o.cancelled = [&] { return stop.load(); };
    auto client = make_curl_http_client(o);
    auto t0 = std::chrono::steady_clock::now();
    auto r = client->download({"GET", s.url("/slow"), {}, ""}, dir.file("slow.part"), 0, 1000,
                              [&](std::uint64_t, std::uint64_t) { stop = true; });  // the headers are in
    auto took = std::chrono::steady_clock::now() - t0;
    {
      std::lock_guard lock(mu);
      released = true;
    }
    cv.notify_all();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::cancelled);
    CHECK(took < 8s);

    CssHub hub;
    hub.put_object("a", "hello");
    hub.set_faults(R"({"errorRate":1.0,"errorStatus":503})");
    FakeSleeper sleeper;
    sleeper.on_sleep = [&] { sleeper.stop = true; };  // the stop request arrives during the wait
    auto st = fetch_all(hub.node(), {{"a", hub.object_url("a"), 5, 0}}, dir.path(), quick_options(&sleeper));
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::cancelled);
    CHECK(sleeper.waits.size() == 1);
  }

  TEST_CASE("a 206 that does not continue the file is refused and the file kept") {
    PlainServer s;
    s.svr.Get("/f", [&](const httplib::Request& req, httplib::Response& res) {
      no_auto_range(req);
      res.status = 206;
      res.set_header("Content-Range", "bytes 0-9/10");
      res.set_content("0123456789", "application/octet-stream");
    });
    s.start();
    testing::TempDir dir;
    const std::string path = dir.write("f.part", "abcde");
    auto client = make_curl_http_client(fast_options());
    auto r = client->download({"GET", s.url("/f"), {}, ""}, path, 5, 10, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == Errc::http);
    CHECK(r.error().message.find("does not continue at byte 5") != std::string::npos);
    CHECK((slurp(path) == "abcde"));
  }

  TEST_CASE("the size cap: too_large, and the .part is never renamed") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(100'000, 6);
    hub.put_object("a", content);
    RecordingHttp http(hub.node());

    // Cap from the manifest below the object's real size (Content-Length says so up front).
    auto st = fetch_all(http, {{"a", hub.object_url("a"), 0, 50'000}}, dir.path(), quick_options());
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::too_large);
    CHECK_FALSE(exists(dir.file("a")));
    CHECK(http.offsets.size() == 1);  // not retried

    // The manifest's size is smaller than what the hub serves.
    st = fetch_all(http, {{"a", hub.object_url("a"), 1000, 0}}, dir.path(), quick_options());
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::too_large);
    CHECK_FALSE(exists(dir.file("a")));

    // A size above the cap is refused before any request.
    http.offsets.clear();
    st = fetch_all(http, {{"a", hub.object_url("a"), 2000, 1000}}, dir.path(), quick_options());
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::too_large);
    CHECK(http.offsets.empty());

    // Chunked, so no length up front: writing stops at the cap.
    PlainServer s;
    s.svr.Get("/chunked", [&](const httplib::Request& req, httplib::Response& res) {
      no_auto_range(req);
      res.set_chunked_content_provider("application/octet-stream",
                                       [](std::size_t offset, httplib::DataSink& sink) {
                                         if (offset >= 100'000) {
                                           sink.done();
                                           return true;
                                         }
                                         std::string chunk(1000, 'c');
                                         return sink.write(chunk.data(), chunk.size());
                                       });
    });
    s.start();
    auto client = make_curl_http_client(fast_options());
    st = fetch_all(*client, {{"c", s.url("/chunked"), 0, 10'000}}, dir.path(), quick_options());
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::too_large);
    CHECK_FALSE(exists(dir.file("c")));
    REQUIRE(exists(dir.file("c.part")));
    CHECK(std::filesystem::file_size(dir.file("c.part")) <= 10'000);
  }

  TEST_CASE("names, duplicates and free space are checked before any request") {
    CssHub hub;
    testing::TempDir dir;
    hub.put_object("a", "hello");
    RecordingHttp http(hub.node());
    for (const char* bad : {"../escape", "sub/file", ".profile", "a.part"}) {
      auto st = fetch_all(http, {{"ok", hub.object_url("a"), 5, 0}, {bad, hub.object_url("a"), 5, 0}},
                          dir.path(), quick_options());
      REQUIRE_FALSE(st.has_value());
      CHECK(st.error().code == Errc::parse);
      CHECK(st.error().message.find("refusing file name") != std::string::npos);
    }
    auto st = fetch_all(http, {{"x", hub.object_url("a"), 5, 0}, {"x", hub.object_url("a"), 5, 0}},
                        dir.path(), quick_options());
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::parse);

    FetchOptions o = quick_options();
    o.min_free_bytes = std::numeric_limits<std::uint64_t>::max() / 2;
    st = fetch_all(http, {{"x", hub.object_url("a"), 5, 0}}, dir.path(), o);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::io);
    CHECK(st.error().message.find("not enough space in " + dir.path() + ": need ") != std::string::npos);
    CHECK(http.offsets.empty());
    CHECK(std::filesystem::is_empty(dir.path()));
  }

  TEST_CASE("404 is not retried; 503 is retried with backoff, resuming, up to the attempts") {
    CssHub hub;
    testing::TempDir dir;
    const std::string content = pattern(10'000, 7);
    hub.put_object("a", content);
    RecordingHttp http(hub.node());
    FakeSleeper sleeper;

    auto st = fetch_all(http, {{"m", hub.object_url("missing"), 10, 0}}, dir.path(), quick_options(&sleeper));
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::not_found);
    CHECK(st.error().http_status == 404);
    CHECK(http.offsets.size() == 1);
    CHECK(sleeper.waits.empty());
    CHECK_FALSE(exists(dir.file("m")));
    CHECK_FALSE(exists(dir.file("m.part")));  // an empty .part is not left behind

    // Every request fails: three attempts, two waits within the policy's bounds.
    hub.set_faults(R"({"errorRate":1.0,"errorStatus":503})");
    http.offsets.clear();
    st =
        fetch_all(http, {{"a", hub.object_url("a"), content.size(), 0}}, dir.path(), quick_options(&sleeper));
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().code == Errc::http);
    CHECK(st.error().http_status == 503);
    CHECK(st.error().transient());
    CHECK(st.error().message.find("gave up after 3 attempts") != std::string::npos);
    CHECK(http.offsets.size() == 3);
    REQUIRE(sleeper.waits.size() == 2);
    for (auto w : sleeper.waits) CHECK(w <= 100ms);

    // The hub recovers during the first wait: the second attempt succeeds.
    sleeper.waits.clear();
    sleeper.on_sleep = [&] { hub.set_faults(R"({"errorRate":0.0})"); };
    http.offsets.clear();
    st =
        fetch_all(http, {{"a", hub.object_url("a"), content.size(), 0}}, dir.path(), quick_options(&sleeper));
    REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    CHECK(http.offsets.size() == 2);
    CHECK(sleeper.waits.size() == 1);
    CHECK((slurp(dir.file("a")) == content));
  }
}
