// The Exchange stand-in (tests/hub) in this process on a port the OS chose, with
// its state file, write log and agbot log in a temporary directory that
// restart() keeps: the fixture the stand-in's own unit tests and the daemon's
// share. Tests seed what they need through the API, as an admin would.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agentd/json.h"
#include "hub/in_process.h"
#include "support/http_call.h"
#include "support/temp_dir.h"

namespace agentd::testing {

// "user:password" of the stand-in's root and of org o's admin (seed_org).
inline constexpr const char* kRoot = "root/root:rootpw";
inline constexpr const char* kAdmin = "o/admin:adminpw";

class StandinHub {
 public:
  // `options` without paths: they are the temporary directory's.
  explicit StandinHub(standin::HubOptions options = {}) : options_(std::move(options)) { start(); }
  StandinHub(const StandinHub&) = delete;
  StandinHub& operator=(const StandinHub&) = delete;
  ~StandinHub() { stop(); }

  void start() {
    standin::HubOptions o = options_;
    o.state_path = dir_.file("state.json");
    o.log_path = dir_.file("writes.jsonl");
    o.agbot_log_path = dir_.file("agbot.jsonl");
    auto h = standin::InProcessHub::start(o);
    REQUIRE_MESSAGE(h.has_value(), h.error().describe());
    in_process_ = std::move(*h);
  }
  void stop() { in_process_.reset(); }
  // Stops and starts again from the state file, on a new port.
  void restart() {
    stop();
    start();
  }

  int port() const { return in_process_->port(); }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  std::string url(const std::string& path) const { return base_url() + path; }
  standin::InProcessHub& in_process() { return *in_process_; }
  standin::Hub& hub() { return in_process_->hub(); }
  const TempDir& dir() const { return dir_; }

  Res call(const std::string& method, const std::string& path, const std::string& auth,
           const std::string& body = "", const httplib::Headers& headers = {}) const {
    return http_call(port(), method, path, auth, body, headers);
  }

  Res set_faults(const std::string& body) const { return call("PUT", "/v1/standin/faults", kRoot, body); }

  // Org o with its admin (kAdmin).
  void seed_org() const {
    REQUIRE(call("POST", "/v1/orgs/o", kRoot, R"({"label":"o","description":"test org"})").status == 201);
    REQUIRE(call("POST", "/v1/orgs/o/users/admin", kRoot, R"({"password":"adminpw","admin":true})").status ==
            201);
  }

  // The JSON lines of one of the hub's logs ("writes.jsonl", "agbot.jsonl").
  std::vector<json::Ptr> log_lines(const std::string& name = "writes.jsonl") const {
    std::vector<json::Ptr> out;
    std::ifstream f(dir_.file(name));
    std::string line;
    while (std::getline(f, line)) {
      auto p = json::parse(line, name + " line");
      REQUIRE(p.has_value());
      out.push_back(std::move(*p));
    }
    return out;
  }

 private:
  TempDir dir_;
  standin::HubOptions options_;
  std::unique_ptr<standin::InProcessHub> in_process_;
};

}  // namespace agentd::testing
