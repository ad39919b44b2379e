// The stand-in's HTTP side: cpp-httplib routes every request to Hub::handle and
// injects the faults set through /v1/standin/faults (root only):
//   latencyMs        delay before handling
//   errorRate        fraction of requests answered errorStatus without doing anything
//   dropAfterCommit  the next N accepted writes commit, then lose their response
//                    (status line and headers go out, the body breaks)
//   resetAfterCommit the next N accepted writes commit, then their connection is
//                    closed before a single byte of the response, as a hub or proxy
//                    that dies after the commit does; a client that reused the
//                    connection sends the request again on a fresh one (libcurl:
//                    "Connection died, retrying a fresh connect"), protocol.md §4.6.
//                    resetPathContains: only writes whose path contains it ("" = all)
//   partitioned      "org/node" callers whose requests get no response at all
//   corrupt          bodies of successful GETs are damaged: "truncated" (first half),
//                    "malformed" (not JSON), "wrong-types" (numbers become strings),
//                    "oversized" (padded past 8 MiB); "" leaves them alone (CSS object
//                    data is streamed and never corrupted: see "body")
//   body             CSS object data responses (200 and 206) break mid-body:
//                    {"kind":K,"afterBytes":N,"bytesPerSecond":R,"count":C,"pathContains":P}
//                    K = "truncate": the right Content-Length, N bytes, then the
//                        connection closes;
//                        "wrong-length": a Content-Length one byte larger than the
//                        response, N bytes (at most all of them), then the connection
//                        closes (a client must notice the short body);
//                        "slow": N bytes at full speed, the rest at R bytes/s;
//                        "error-midway": N bytes, the connection closes, and the next
//                        request for the same path is answered 503 once;
//                        "" = none.
//                    N counts bytes of this response (a 206 too). C = how many
//                    responses to damage (the fault is cleared after the last one);
//                    0 = every one. P = only data paths containing it ("" = all).
// Faults spare root and the /v1/standin routes, so a test can always steer the hub.
// GET /v1/standin/stats (root only) counts the requests of every caller, for the
// demo and the benchmarks: {"requests":{"o/n1":{"total":N,"notModified":N,
// "groupReads":N,"writes":N,"conflicts":N}}}; requests of the anax stand-in
// (User-Agent anax-standin) are counted under "o/n1#anax".
#pragma once

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "agentd/json.h"
#include "agentd/result.h"
#include "hub.h"

namespace agentd::standin {

struct BodyFault {
  std::string kind;  // "", truncate, wrong-length, slow, error-midway
  std::int64_t after_bytes = 0;
  std::int64_t bytes_per_second = 0;  // slow only; > 0
  std::int64_t count = 0;             // responses to damage; 0 = every one
  std::string path_contains;
};

struct Faults {
  std::int64_t latency_ms = 0;
  double error_rate = 0.0;
  int error_status = 503;
  std::int64_t drop_after_commit = 0;
  std::int64_t reset_after_commit = 0;
  std::string reset_path_contains;
  std::vector<std::string> partitioned;  // "org/node"
  std::string corrupt;                   // "", truncated, malformed, wrong-types, oversized
  BodyFault body;                        // CSS object data only
};

// Damages a successful GET's JSON body as the `corrupt` fault says.
std::string corrupt_body(const std::string& body, const std::string& how);

// A cpp-httplib request as the hub's Call (its body is moved out), and a Reply as
// the response; also used by the anax stand-in (tests/anax).
Call to_call(const httplib::Request& req);
void write_reply(const Reply& r, const std::string& path, httplib::Response& res);

// Binds `http` to `host:port` (0: a port chosen by the OS) and returns the port.
Result<int> bind_http(httplib::Server& http, const std::string& host, int port);

json::Ptr faults_to_json(const Faults& f);
// Absent fields take their defaults; wrong types and out-of-range values are errors.
Result<Faults> parse_faults(const std::string& body);

class Server {
 public:
  explicit Server(Hub& hub);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds `host:port` (0: a port chosen by the OS) and returns the port.
  Result<int> bind(const std::string& host, int port);
  // Serves until stop(); call after bind(), usually on its own thread.
  void run();
  void stop();
  bool is_running() const;

  Faults faults() const;
  void set_faults(Faults f);

  struct Counts {
    std::int64_t total = 0;
    std::int64_t not_modified = 0;  // answered 304
    std::int64_t group_reads = 0;   // GET .../hagroups/{g}
    std::int64_t writes = 0;        // accepted state-changing requests
    std::int64_t conflicts = 0;     // answered 412 (a stale If-Match)
    std::int64_t file_reads = 0;    // release files fetched: GET .../agent_software_files-*/.../data
  };
  std::map<std::string, Counts> stats() const;

 private:
  void serve(const httplib::Request& req, httplib::Response& res);
  Reply standin(const Call& call);
  void count(const std::string& caller, const Call& call, const Reply& r);
  // The body fault that applies to this data response (kind "" = none), counted.
  BodyFault take_body_fault(const std::string& path);
  // True (once) when an error-midway fault broke the last response for `path`.
  bool take_fail_next(const std::string& path);
  void stream(const Reply& r, const std::string& path, BodyFault fault, httplib::Response& res);
  // Waits until `when`; false when stop() came first.
  bool wait_until(std::chrono::steady_clock::time_point when);

  Hub& hub_;
  httplib::Server http_;
  mutable std::mutex mu_;  // guards faults_, fail_next_, rng_ and stats_
  Faults faults_;
  std::set<std::string> fail_next_;  // paths whose next request gets 503 (error-midway)
  std::map<std::string, Counts> stats_;
  std::mt19937_64 rng_;
  std::mutex stop_mu_;  // guards stopping_; slow responses wait on stop_cv_
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

}  // namespace agentd::standin
