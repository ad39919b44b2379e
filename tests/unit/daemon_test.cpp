// The Daemon (agentd/daemon.h) driven pass by pass: a FakeClock, a scripted
// Upgrader, recording Notifier and Logger, a StateFile in a temp dir, and the
// Exchange over curl talking to the stand-in hub in this process on 127.0.0.1,
// port 0. A GroupStore decorator injects the store faults of protocol.md §4.6.
#include "agentd/daemon.h"

#include <cjson/cJSON.h>
#include <doctest/doctest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agentd/exchange.h"
#include "agentd/files.h"
#include "agentd/http.h"
#include "agentd/json.h"
#include "agentd/log.h"
#include "check/invariants.h"
#include "hub/hub.h"
#include "hub/in_process.h"
#include "hub/server.h"
#include "support/fake_anax.h"
#include "support/standin_hub.h"
#include "support/temp_dir.h"

using namespace agentd;
using namespace agentd::standin;
using namespace std::chrono_literals;
using agentd::testing::Res;

namespace {

using testing::kAdmin;
using testing::kRoot;
const std::string kFrom = "1.0.0";
const std::string kTo = "2.0.0";

std::string token_of(const std::string& node) {
  return "tok-" + node;
}

// ---- the stand-in hub, in process -------------------------------------------------

// Org o with an admin, nodes n1..n3 running 1.0.0, policy p1 naming 2.0.0 through
// manifest o/m1 (no patterns or constraints: it applies to every node).
class StandIn : public testing::StandinHub {
 public:
  explicit StandIn(Mode mode = Mode::full) : StandinHub(options(mode)) { seed(); }

  void make_group(const std::string& name, const std::vector<std::string>& members) {
    auto m = json::array();
    for (const auto& id : members) json::append(m.get(), id);
    auto body = json::object();
    json::set(body.get(), "members", std::move(m));
    REQUIRE(call("POST", "/v1/orgs/o/hagroups/" + name, kAdmin, json::print(body.get())).status == 201);
  }

  // The group document as the admin sees it (full mode only: needs the ETag).
  GroupDocument group(const std::string& name) {
    Res r = call("GET", "/v1/orgs/o/hagroups/" + name, kAdmin);
    REQUIRE(r.status == 200);
    auto rev = parse_etag(r.etag);
    REQUIRE(rev.has_value());
    auto doc = parse_group_document(r.body, *rev);
    REQUIRE(doc.has_value());
    return std::move(*doc);
  }

  std::optional<Entry> entry(const std::string& group_name, const std::string& node) {
    GroupDocument d = group(group_name);
    if (const Entry* e = d.entry(node)) return *e;
    return std::nullopt;
  }

  // An entry write with If-Match of the current revision, as `auth` (an admin, or the node).
  void put_entry(const std::string& group_name, const std::string& node, const std::string& auth,
                 const Entry& e) {
    std::int64_t rev = group(group_name).revision;
    Res r = call("PUT", "/v1/orgs/o/hagroups/" + group_name + "/agentupgrade/" + node, auth,
                 json::print(entry_to_json(e).get()), {{"If-Match", "\"" + std::to_string(rev) + "\""}});
    REQUIRE(r.status == 201);
  }

  void put_settings(const std::string& group_name, const std::string& body) {
    std::int64_t rev = group(group_name).revision;
    Res r = call("PUT", "/v1/orgs/o/hagroups/" + group_name + "/agentupgrade", kAdmin, body,
                 {{"If-Match", "\"" + std::to_string(rev) + "\""}});
    REQUIRE(r.status == 201);
  }

  // The node's agentUpgradePolicyStatus for p1: {status, errorMessage}.
  std::pair<std::string, std::string> mgmt_status(const std::string& node) {
    Res r = call("GET", "/v1/orgs/o/nodes/" + node + "/managementStatus/p1", kAdmin);
    REQUIRE(r.status == 200);
    auto j = json::parse(r.body, "status");
    REQUIRE(j.has_value());
    const cJSON* s = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j->get(), "managementStatus"),
                                         "o/p1"),
        "agentUpgradePolicyStatus");
    if (!s) return {"<none>", ""};
    return {json::opt_string(s, "status").value_or("<bad>"),
            json::opt_string(s, "errorMessage").value_or("<bad>")};
  }

  std::string horizon_version(const std::string& node) {
    Res r = call("GET", "/v1/orgs/o/nodes/" + node, kAdmin);
    REQUIRE(r.status == 200);
    auto j = json::parse(r.body, "node");
    REQUIRE(j.has_value());
    const cJSON* n = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j->get(), "nodes"),
                                                      ("o/" + node).c_str());
    return json::opt_string(cJSON_GetObjectItemCaseSensitive(n, "softwareVersions"), "horizon")
        .value_or("<bad>");
  }

  std::string write_log_path() const { return dir().file("writes.jsonl"); }

  // Actors ("o/n1", ...) of every accepted write in the hub's write log.
  std::vector<std::string> write_log_actors() const {
    std::vector<std::string> out;
    for (const auto& line : log_lines()) out.push_back(json::opt_string(line.get(), "actor").value_or("?"));
    return out;
  }

 private:
  static HubOptions options(Mode mode) {
    HubOptions o;
    o.mode = mode;
    return o;
  }

  void seed() {
    seed_org();
    for (const char* id : {"n1", "n2", "n3"}) {
      std::string node = id;
      REQUIRE(call("PUT", "/v1/orgs/o/nodes/" + node, kAdmin,
                   R"({"token":")" + token_of(node) + R"(","name":")" + node +
                       R"(","pattern":"","arch":"amd64","softwareVersions":{"horizon":")" + kFrom + R"("}})")
                  .status == 201);
    }
    REQUIRE(call("POST", "/v1/orgs/o/managementpolicies/p1", kAdmin,
                 R"({"label":"upgrade","enabled":true,"start":"now",)"
                 R"("agentUpgradePolicy":{"manifest":"o/m1","allowDowngrade":false}})")
                .status == 201);
    REQUIRE(call("PUT", "/css/api/v1/objects/o/agent_upgrade_manifests/m1/data", kAdmin,
                 R"({"softwareUpgrade":{"files":["agent.deb"],"version":")" + kTo + R"("}})")
                .status == 204);
  }
};

// ---- recording fakes ----------------------------------------------------------------

// What happened, in order, across members and their job threads ("n1:install",
// "n1:write:upgrading", ...).
class Events {
 public:
  void add(std::string e) {
    std::lock_guard<std::mutex> lk(mu_);
    list_.push_back(std::move(e));
  }
  std::vector<std::string> list() const {
    std::lock_guard<std::mutex> lk(mu_);
    return list_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> list_;
};

class RecordingLogger final : public Logger {
 public:
  void log(Level level, std::string_view event, std::initializer_list<Field> fields) override {
    std::string line = format_line(level, event, fields);
    if (std::getenv("AGENTD_TEST_LOG")) std::fprintf(stderr, "%s\n", line.c_str());
    std::lock_guard<std::mutex> lk(mu_);
    lines_.push_back(std::move(line));
  }
  int count(const std::string& event) const {
    std::lock_guard<std::mutex> lk(mu_);
    return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) {
      return l.find(" event=" + event + " ") != std::string::npos || l.ends_with(" event=" + event);
    }));
  }
  // The last `n` lines, to show with a failure.
  std::string tail(std::size_t n = 60) const {
    std::lock_guard<std::mutex> lk(mu_);
    std::string out;
    for (std::size_t i = lines_.size() > n ? lines_.size() - n : 0; i < lines_.size(); ++i)
      out += lines_[i] + "\n";
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

class RecordingNotifier final : public Notifier {
 public:
  void notify(const std::string& state) override {
    std::lock_guard<std::mutex> lk(mu_);
    sent_.push_back(state);
  }
  std::chrono::milliseconds watchdog_interval() const override { return 0ms; }
  std::vector<std::string> sent() const {
    std::lock_guard<std::mutex> lk(mu_);
    return sent_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> sent_;
};

// Records every step with its Target and the state file as it was when the step
// began; results are scripted per step; a held step blocks until released, so a
// test can act while it is "in progress". restart brings the target version up,
// rollback the previous one.
class FakeUpgrader final : public Upgrader {
 public:
  struct Call {
    std::string step;
    Target target;
    std::optional<PersistedState> file;
  };

  FakeUpgrader(std::string node, std::string version, std::string state_path, Events& events)
      : node_(std::move(node)),
        version_(std::move(version)),
        state_path_(std::move(state_path)),
        events_(events) {}

  Result<std::string> running_version() override {
    std::lock_guard<std::mutex> lk(mu_);
    return version_;
  }
  Status prepare(const Target& t, const ProgressFn& progress) override {
    JobProgress p;
    {
      std::lock_guard<std::mutex> lk(mu_);
      p = progress_;
    }
    if (!p.text.empty() && progress) progress(p);
    return step("prepare", t);
  }
  // The agent version running now, as an earlier process left it.
  void set_version(std::string v) {
    std::lock_guard<std::mutex> lk(mu_);
    version_ = std::move(v);
  }
  // What prepare reports as its progress before it (perhaps) holds.
  void progress(JobProgress p) {
    std::lock_guard<std::mutex> lk(mu_);
    progress_ = std::move(p);
  }
  Status install(const Target& t) override { return step("install", t); }
  Status restart(const Target& t) override { return step("restart", t); }
  Status check_health(const Target& t) override { return step("check_health", t); }
  Status rollback(const Target& t) override { return step("rollback", t); }

  void script(const std::string& name, Status result) {
    std::lock_guard<std::mutex> lk(mu_);
    results_[name] = std::move(result);
  }
  void hold(const std::string& name) {
    std::lock_guard<std::mutex> lk(mu_);
    holds_.insert(name);
  }
  // True while a call of `name` is blocked by hold().
  bool holding(const std::string& name) const {
    std::lock_guard<std::mutex> lk(mu_);
    return holding_ == name;
  }
  bool holding_any() const {
    std::lock_guard<std::mutex> lk(mu_);
    return !holding_.empty();
  }
  void release(const std::string& name, Status result = {}) {
    std::lock_guard<std::mutex> lk(mu_);
    holds_.erase(name);
    released_ = std::move(result);
    cv_.notify_all();
  }
  // Teardown: a held step ends as cancelled, so the daemon's job thread can be joined.
  void release_all() {
    std::lock_guard<std::mutex> lk(mu_);
    holds_.clear();
    released_ = fail(Errc::cancelled, "test ended");
    cv_.notify_all();
  }
  std::vector<Call> calls() const {
    std::lock_guard<std::mutex> lk(mu_);
    return calls_;
  }
  std::vector<std::string> steps() const {
    std::vector<std::string> out;
    for (const auto& c : calls()) out.push_back(c.step);
    return out;
  }
  int count(const std::string& name) const {
    auto s = steps();
    return static_cast<int>(std::count(s.begin(), s.end(), name));
  }
  std::optional<Call> first(const std::string& name) const {
    for (auto& c : calls())
      if (c.step == name) return c;
    return std::nullopt;
  }

 private:
  Status step(const std::string& name, const Target& t) {
    Call c{name, t, std::nullopt};
    if (auto f = StateFile(state_path_).load(); f && *f) c.file = **f;
    events_.add(node_ + ":" + name);
    std::unique_lock<std::mutex> lk(mu_);
    calls_.push_back(c);
    Status result = results_.count(name) ? results_[name] : Status{};
    if (holds_.count(name)) {
      holding_ = name;
      cv_.wait(lk, [&] { return holds_.count(name) == 0; });
      holding_.clear();
      result = released_;
    }
    if (result && name == "restart") version_ = t.version;
    if (result && name == "rollback") version_ = t.previous_version;
    return result;
  }

  const std::string node_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string version_;
  const std::string state_path_;
  Events& events_;
  std::map<std::string, Status> results_;
  JobProgress progress_;
  std::set<std::string> holds_;
  std::string holding_;
  Status released_;
  std::vector<Call> calls_;
};

// The GroupStore between the daemon and the Exchange: records every write and
// injects faults on the ones a test picks.
enum class Fault {
  none,
  lose_response,  // the write lands, then the response is lost (Errc::transport)
  not_sent,       // the request never reaches the hub (Errc::transport)
};

class FaultyStore final : public GroupStore {
 public:
  struct Write {
    Entry entry;
    bool performed = false;     // the hub accepted it
    std::optional<Errc> error;  // what the daemon was told
    int reads_before = 0;       // group reads the daemon had made when it sent this
  };

  FaultyStore(GroupStore& inner, std::string node, Events& events)
      : inner_(inner), node_(std::move(node)), events_(events) {}

  std::function<void(const Entry&)> before_write;  // runs first on every write
  std::function<Fault(const Entry&)> fault;        // none when unset

  Result<GroupRead> read(const std::string& group, std::optional<std::int64_t> if_none_match) override {
    ++reads;
    return inner_.read(group, if_none_match);
  }
  Result<std::int64_t> write_entry(const std::string& group, const std::string& node, const Entry& entry,
                                   std::int64_t if_revision, WriteCondition condition) override {
    if (before_write) before_write(entry);
    Fault f = fault ? fault(entry) : Fault::none;
    Write w{entry, false, std::nullopt, reads};
    if (f == Fault::not_sent) {
      w.error = Errc::transport;
      writes.push_back(w);
      return fail(Errc::transport, "injected: connection reset before the request was sent");
    }
    auto r = inner_.write_entry(group, node, entry, if_revision, condition);
    w.performed = r.has_value();
    if (!r) w.error = r.error().code;
    if (r) events_.add(node_ + ":write:" + to_string(entry.state));
    if (r && f == Fault::lose_response) w.error = Errc::transport;
    writes.push_back(w);
    if (r && f == Fault::lose_response)
      return fail(Errc::transport, "injected: response lost after the write landed");
    return r;
  }

  std::vector<Entry> performed() const {
    std::vector<Entry> out;
    for (const auto& w : writes)
      if (w.performed) out.push_back(w.entry);
    return out;
  }

  std::vector<Write> writes;
  int reads = 0;

 private:
  GroupStore& inner_;
  std::string node_;
  Events& events_;
};

// Fault `f` on the first write of an entry in each state (the transition into it).
std::function<Fault(const Entry&)> first_into_each_state(Fault f) {
  auto seen = std::make_shared<std::set<State>>();
  return [=](const Entry& e) { return seen->insert(e.state).second ? f : Fault::none; };
}

// States of successive writes with repeats (heartbeats, renewals) folded.
std::vector<State> transitions(const std::vector<Entry>& writes) {
  std::vector<State> out;
  for (const auto& e : writes)
    if (out.empty() || out.back() != e.state) out.push_back(e.state);
  return out;
}

std::string describe(const std::vector<State>& states) {
  std::string out;
  for (State s : states) out += std::string(out.empty() ? "" : ",") + to_string(s);
  return out;
}

// Distinct epochs / acquireTimes / waitingSince values the member wrote while
// holding a lease or waiting: one of each per acquisition / wait.
std::set<std::int64_t> lease_epochs(const std::vector<Entry>& writes) {
  std::set<std::int64_t> out;
  for (const auto& e : writes)
    if (holds_lease(e.state)) out.insert(e.epoch);
  return out;
}
std::set<std::string> acquire_times(const std::vector<Entry>& writes) {
  std::set<std::string> out;
  for (const auto& e : writes)
    if (holds_lease(e.state)) out.insert(e.acquire_time);
  return out;
}
std::set<std::string> waits(const std::vector<Entry>& writes) {
  std::set<std::string> out;
  for (const auto& e : writes)
    if (e.state == State::waiting) out.insert(e.waiting_since);
  return out;
}

std::vector<json::Ptr> read_json_lines(const std::string& path) {
  std::vector<json::Ptr> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    auto j = json::parse(line, "json line");
    REQUIRE(j.has_value());
    out.push_back(std::move(*j));
  }
  return out;
}

// The lines of a steps.jsonl that begin a step.
std::vector<json::Ptr> begun_steps(const std::string& path) {
  std::vector<json::Ptr> out;
  for (auto& j : read_json_lines(path))
    if (json::opt_string(j.get(), "phase").value_or("") == "begin") out.push_back(std::move(j));
  return out;
}

// Records every management status report (policy, status), then passes it on.
class RecordingStatus final : public StatusReporter {
 public:
  explicit RecordingStatus(StatusReporter& next) : next_(next) {}
  Status report(const std::string& policy, const ManagementStatus& ms) override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      reports_.push_back(ms.status);
    }
    return next_.report(policy, ms);
  }
  std::vector<std::string> reports() const {
    std::lock_guard<std::mutex> lk(mu_);
    return reports_;
  }

 private:
  StatusReporter& next_;
  mutable std::mutex mu_;
  std::vector<std::string> reports_;
};

// ---- one member: a Daemon with all its parts ------------------------------------------

// Shared by every member of a test: one stop-signal waiter (jobs wake it), one clock.
struct Env {
  SignalWaiter waiter;
  FakeClock clock;
  Events events;
};

Config member_config(const StandIn& hub, const std::string& node, const std::string& state_dir) {
  Config c;
  c.exchange_url = hub.base_url() + "/v1";
  c.css_url = hub.base_url() + "/css";
  c.org = "o";
  c.node_id = node;
  c.state_dir = state_dir;
  c.lease_duration = 3'000ms;
  c.heartbeat = 500ms;
  c.idle_heartbeat = 30'000ms;
  c.changes_interval = 2'000ms;
  c.fast_poll = 200ms;
  c.poll = 500ms;
  c.connect_timeout = 2'000ms;
  c.http_timeout = 5'000ms;
  return c;
}

std::unique_ptr<HttpClient> member_http(const Config& c) {
  HttpOptions o;
  o.connect_timeout = c.connect_timeout;
  o.total_timeout = c.http_timeout;
  o.basic_user = c.org + "/" + c.node_id;
  o.basic_password = token_of(c.node_id);
  return make_curl_http_client(o);
}

// Wraps a member's HTTP client (a test's fault between the daemon and the hub).
using HttpWrap = std::function<std::unique_ptr<HttpClient>(std::unique_ptr<HttpClient>)>;

// A test's change to a member's intervals (the Daemon copies them when it is built).
using ConfigTweak = std::function<void(Config&)>;

Config tweaked(Config c, const ConfigTweak& tweak) {
  if (tweak) tweak(c);
  return c;
}

struct Member {
  Member(Env& env, StandIn& hub, const std::string& node, const std::string& state_path = {},
         testing::FakeAnax* beside = nullptr, const HttpWrap& wrap = {}, const ConfigTweak& tweak = {})
      : config(tweaked(member_config(hub, node, dir.path()), tweak)),
        http(wrap ? wrap(member_http(config)) : member_http(config)),
        exchange(*http, ExchangeEndpoint{config.exchange_url, config.css_url, config.org, config.node_id},
                 RetryPolicy{2, 20ms, 100ms}, env.waiter),
        store(exchange, node, env.events),
        state_file(state_path.empty() ? dir.file("state.json") : state_path),
        upgrader(node, kFrom, state_file.path(), env.events),
        to_hub(exchange),
        to_anax(beside ? *beside : no_anax),
        status(beside ? static_cast<StatusReporter&>(to_anax) : to_hub),
        daemon(DaemonParts{config, env.clock, exchange, store, status, upgrader, log, state_file, notifier,
                           env.waiter, dir.file("steps.jsonl"), std::hash<std::string>{}(node) | 1, beside}) {
    if (beside) beside->running_version = [this] { return *upgrader.running_version(); };
  }
  ~Member() { upgrader.release_all(); }  // a held step must end before the daemon joins it

  const Local& local() const { return daemon.state().local; }
  PersistedState file() const {
    auto f = state_file.load();
    REQUIRE(f.has_value());
    REQUIRE(f->has_value());
    return **f;
  }

  testing::TempDir dir;
  Config config;
  std::unique_ptr<HttpClient> http;
  Exchange exchange;
  FaultyStore store;
  RecordingLogger log;
  RecordingNotifier notifier;
  StateFile state_file;
  FakeUpgrader upgrader;
  ExchangeStatusReporter to_hub;
  testing::FakeAnax no_anax;
  AnaxStatusReporter to_anax;
  RecordingStatus status;  // every report, then on to the hub (or to anax)
  Daemon daemon;
};

// One pass of every member, then the fake clock moves on to the earliest next wake
// (at most 250 ms at a time), until `done` holds. While a member's job runs on its
// thread (and the test does not hold it), waits for the job's wake-up instead of
// moving the clock. False after `fake_limit` of fake time or 15 s of real time.
bool run_until(Env& env, const std::vector<Member*>& members, const std::function<bool()>& done,
               Mono fake_limit = 30'000ms) {
  const auto real_deadline = std::chrono::steady_clock::now() + 15s;
  const Mono fake_end = env.clock.mono() + fake_limit;
  int spins = 0;  // passes in a row after which a daemon wanted to run again at once
  for (;;) {
    for (Member* m : members) m->daemon.tick();
    if (done()) return true;
    bool spinning = spins > 500;  // run() would loop without sleeping
    if (spinning) MESSAGE("a daemon's next_wake() stayed in the past for " << spins << " passes in a row");
    if (spinning || std::chrono::steady_clock::now() > real_deadline || env.clock.mono() > fake_end) {
      for (Member* m : members)
        MESSAGE(m->config.node_id << ": state=" << std::string(to_string(m->local().state))
                                  << " progress=" << std::string(to_string(m->local().progress))
                                  << " job_running=" << m->local().job_running
                                  << " next_wake-now=" << (m->daemon.next_wake() - env.clock.mono()).count()
                                  << "ms status=\"" << m->daemon.status_text() << "\"\n"
                                  << m->log.tail());
      return false;
    }
    bool job_in_flight = std::any_of(members.begin(), members.end(), [](Member* m) {
      return m->local().job_running && !m->upgrader.holding_any();
    });
    if (job_in_flight) {
      (void)env.waiter.sleep_for(100ms);  // returns at the job's wake()
      continue;
    }
    Mono now = env.clock.mono();
    Mono wake = now + 250ms;
    for (Member* m : members) wake = std::min(wake, m->daemon.next_wake());
    spins = wake <= now ? spins + 1 : 0;
    env.clock.advance(std::max(wake - now, Mono{1}));
  }
}

// Runs for `d` of fake time, calling `each` after every pass.
void run_for(
    Env& env, const std::vector<Member*>& members, Mono d, const std::function<void()>& each = [] {}) {
  const Mono end = env.clock.mono() + d;
  REQUIRE(run_until(
      env, members,
      [&] {
        each();
        return env.clock.mono() >= end;
      },
      d + 1'000ms));
}

bool started(Member& m) {
  auto r = m.daemon.start();
  if (r) MESSAGE("start() returned " << *r << "\n" << m.log.tail());
  return !r.has_value();
}

std::string read_text(const std::string& path) {
  auto t = read_file(path, 1 << 20);
  REQUIRE(t.has_value());
  return *t;
}

const std::vector<State> kFullCycle{State::idle,      State::preparing, State::waiting,
                                    State::upgrading, State::verifying, State::succeeded};
const std::vector<std::string> kSteps{"prepare", "install", "restart", "check_health"};

// Every request "METHOD URL" a member made, passed on to the hub unchanged.
class RequestLog final : public HttpClient {
 public:
  explicit RequestLog(std::unique_ptr<HttpClient> inner) : inner_(std::move(inner)) {}
  Result<HttpResponse> perform(const HttpRequest& req) override {
    {
      std::lock_guard lock(mu_);
      lines_.push_back(req.method + " " + req.url);
    }
    return inner_->perform(req);
  }
  void clear() {
    std::lock_guard lock(mu_);
    lines_.clear();
  }
  // Requests of `method` whose URL contains `part`.
  int count(const std::string& method, const std::string& part) const {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) {
      return l.starts_with(method + " ") && l.find(part) != std::string::npos;
    }));
  }

 private:
  std::unique_ptr<HttpClient> inner_;
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

// A changes feed stuck at one id that keeps saying more rows are waiting
// (hitMaxRecords) without moving forward; everything else goes to the hub.
class StuckChangesFeed final : public HttpClient {
 public:
  explicit StuckChangesFeed(std::unique_ptr<HttpClient> inner) : inner_(std::move(inner)) {}
  Result<HttpResponse> perform(const HttpRequest& req) override {
    if (req.method == "POST" && req.url.ends_with("/orgs/o/changes")) {
      ++posts;
      return HttpResponse{201, R"({"changes":[],"mostRecentChangeId":0,"hitMaxRecords":true})", {}};
    }
    return inner_->perform(req);
  }
  std::atomic<int> posts{0};

 private:
  std::unique_ptr<HttpClient> inner_;
};

}  // namespace

TEST_SUITE("daemon") {
  TEST_CASE(
      "a changes feed saying hitMaxRecords without progress is polled at its interval, not in a tight loop") {
    Env env;
    StandIn hub;
    StuckChangesFeed* feed = nullptr;
    Member m(env, hub, "n3", {}, nullptr, [&](std::unique_ptr<HttpClient> inner) {
      auto f = std::make_unique<StuckChangesFeed>(std::move(inner));
      feed = f.get();
      return f;
    });
    REQUIRE(started(m));
    for (int i = 0; i < 20; ++i) m.daemon.tick();  // no time passes
    CHECK(feed->posts.load() == 1);
    CHECK(m.daemon.next_wake() > env.clock.mono());
    env.clock.advance(m.config.changes_interval);
    for (int i = 0; i < 20; ++i) m.daemon.tick();
    CHECK(feed->posts.load() == 2);
  }

  TEST_CASE("a node in no HA group upgrades at once: prepare, install, restart, health; no group writes") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1", "n2"});  // a group exists, but n3 is not in it
    Member m(env, hub, "n3");
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));

    CHECK(m.upgrader.steps() == kSteps);
    for (const auto& c : m.upgrader.calls()) {
      CAPTURE(c.step);
      CHECK(c.target.version == kTo);
      CHECK(c.target.manifest == "o/m1");
      if (c.step != "prepare") CHECK(c.target.previous_version == kFrom);  // the rollback target
    }
    CHECK(m.store.reads == 0);
    CHECK(m.store.writes.empty());
    auto actors = hub.write_log_actors();
    CHECK(std::count(actors.begin(), actors.end(), "o/n3") == 0);

    CHECK(hub.mgmt_status("n3").first == "successful");
    CHECK(hub.horizon_version("n3") == kTo);
    PersistedState f = m.file();
    CHECK(f.group.empty());
    CHECK(f.policy == "o/p1");
    CHECK(f.local.state == State::succeeded);
    CHECK(f.local.version == kTo);
    CHECK(f.local.target == kTo);
    CHECK(f.local.progress == Progress::none);
    run_for(env, {&m}, 2'000ms);
    CHECK(m.daemon.status_text() == "not in an HA group; up to date at " + kTo);
    CHECK(m.upgrader.steps() == kSteps);  // nothing runs again
  }

  TEST_CASE("anti-rollback: a policy allowing a downgrade does not move the node back without its consent") {
    Env env;
    StandIn hub;
    REQUIRE(hub.call("PUT", "/v1/orgs/o/managementpolicies/p1", kAdmin,
                     R"({"label":"upgrade","enabled":true,"start":"now",)"
                     R"("agentUpgradePolicy":{"manifest":"o/m1","allowDowngrade":true}})")
                .status == 201);
    SUBCASE("refused: nothing runs, and the floor records what ran") {
      Member m(env, hub, "n3");
      m.upgrader.set_version("3.0.0");  // the hub's manifest names 2.0.0
      REQUIRE(started(m));
      run_for(env, {&m}, 3'000ms);
      CHECK(m.upgrader.steps().empty());
      CHECK(read_text(m.dir.file("version-floor-horizon")) == "3.0.0\n");
      CHECK(m.local().version == "3.0.0");
    }
    SUBCASE("the node's own AGENTD_ALLOW_DOWNGRADE lets it go back") {
      Member m(env, hub, "n3");
      m.upgrader.set_version("3.0.0");
      m.config.allow_downgrade = true;
      REQUIRE(started(m));
      REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));
      CHECK(m.upgrader.steps() == kSteps);
      CHECK(m.local().version == kTo);
    }
  }

  TEST_CASE("a policy whose constraint agentd cannot evaluate: precheck failed in its status, nothing runs") {
    Env env;
    StandIn hub;
    REQUIRE(
        hub.call("PUT", "/v1/orgs/o/managementpolicies/p1", kAdmin,
                 R"({"label":"upgrade","enabled":true,"start":"now","constraints":["purpose ~= \"edge\""],)"
                 R"("agentUpgradePolicy":{"manifest":"o/m1","allowDowngrade":false}})")
            .status == 201);
    Member m(env, hub, "n3");
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return hub.mgmt_status("n3").first != "<none>"; }));
    auto [st, err] = hub.mgmt_status("n3");
    CHECK(st == "precheck failed");
    CHECK(err.find("purpose ~=") != std::string::npos);
    run_for(env, {&m}, 3'000ms);
    CHECK(m.upgrader.steps().empty());
  }

  TEST_CASE("a policy's startWindow delays the start by a random time within the window") {
    Env env;
    StandIn hub;
    REQUIRE(hub.call("PUT", "/v1/orgs/o/managementpolicies/p1", kAdmin,
                     R"({"label":"upgrade","enabled":true,"start":"now","startWindow":600,)"
                     R"("agentUpgradePolicy":{"manifest":"o/m1","allowDowngrade":false}})")
                .status == 201);
    Member m(env, hub, "n3");  // in no group: nothing else delays it
    REQUIRE(started(m));
    Wall start = env.clock.wall();
    const std::string prefix = "waiting for the startWindow of o/p1 until ";
    REQUIRE(run_until(env, {&m}, [&] {
      return m.daemon.status_text().rfind(prefix, 0) == 0 || !m.upgrader.steps().empty();
    }));
    // The draw is seeded per node, so this is not left to chance: n3's delay is not 0.
    REQUIRE(m.daemon.status_text().rfind(prefix, 0) == 0);
    CHECK(m.upgrader.steps().empty());
    Wall not_before;
    REQUIRE(parse_time(m.daemon.status_text().substr(prefix.size()), &not_before));
    CHECK(not_before > start);
    CHECK(not_before < start + std::chrono::seconds{600});
    // Nothing starts before the drawn time; the daemon sleeps until it and then upgrades.
    REQUIRE(run_until(
        env, {&m}, [&] { return !m.upgrader.steps().empty(); }, Mono{700'000}));
    CHECK(env.clock.wall() >= not_before);
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));
    CHECK(m.upgrader.steps() == kSteps);
  }

  TEST_CASE(
      "a grouped member joins, prepares, waits, acquires, installs, restarts, verifies and releases; "
      "each write is persisted as pending first") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    // Inside every write: the state file already names this write as pending
    // (protocol.md §4.2, §4.6), and records the previous write as landed.
    std::vector<std::string> problems;
    std::string last_landed;
    m.store.before_write = [&](const Entry& e) {
      PersistedState f = m.file();
      if (f.pending_write_id != e.write_id)
        problems.push_back(std::string("write ") + to_string(e.state) + ": file has pendingWriteId '" +
                           f.pending_write_id + "', write carries '" + e.write_id + "'");
      if (f.local.last_write_id != last_landed)
        problems.push_back(std::string("write ") + to_string(e.state) + ": file has lastWriteId '" +
                           f.local.last_write_id + "', last landed write was '" + last_landed + "'");
      last_landed = e.write_id;  // no fault here: every write lands
    };
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));

    CHECK(problems.empty());
    for (const auto& p : problems) MESSAGE(p);
    auto writes = m.store.performed();
    CHECK(describe(transitions(writes)) == describe(kFullCycle));
    REQUIRE_FALSE(writes.empty());
    CHECK(writes.front().state == State::idle);  // join: the member's first entry
    CHECK(writes.front().version == kFrom);
    CHECK(writes.front().target_version.empty());

    auto epochs = lease_epochs(writes);
    REQUIRE(epochs.size() == 1);
    const std::int64_t epoch = *epochs.begin();
    CHECK(epoch > 0);
    CHECK(m.upgrader.steps() == kSteps);

    // Each disruptive step was recorded as begun, under the lease, before it began.
    auto install = m.upgrader.first("install");
    REQUIRE(install);
    REQUIRE(install->file);
    CHECK(install->file->local.progress == Progress::install_begun);
    CHECK(install->file->local.state == State::upgrading);
    CHECK(install->file->local.epoch == epoch);
    CHECK(install->target.previous_version == kFrom);
    auto restart = m.upgrader.first("restart");
    REQUIRE(restart);
    REQUIRE(restart->file);
    CHECK(restart->file->local.progress == Progress::restart_begun);
    CHECK(restart->file->local.epoch == epoch);
    // Order across the hub and the node (first occurrences; renewals fall anywhere between).
    std::vector<std::string> order = env.events.list();
    auto pos = [&](const std::string& e) { return std::find(order.begin(), order.end(), e) - order.begin(); };
    CHECK(pos("n1:write:waiting") < pos("n1:write:upgrading"));
    CHECK(pos("n1:prepare") < pos("n1:write:waiting"));
    CHECK(pos("n1:write:upgrading") < pos("n1:install"));
    CHECK(pos("n1:install") < pos("n1:restart"));
    CHECK(pos("n1:restart") < pos("n1:write:verifying"));
    CHECK(pos("n1:write:verifying") < pos("n1:check_health"));
    CHECK(pos("n1:check_health") < pos("n1:write:succeeded"));
    CHECK(pos("n1:write:succeeded") < static_cast<std::ptrdiff_t>(order.size()));

    // protocol.md §7 I3: the member's step log names each disruptive step with its epoch,
    // once as it begins and once as it ends.
    auto all_steps = read_json_lines(m.dir.file("steps.jsonl"));
    REQUIRE(all_steps.size() == 4);
    CHECK(json::opt_string(all_steps[1].get(), "phase").value_or("") == "end");
    auto steps = begun_steps(m.dir.file("steps.jsonl"));
    REQUIRE(steps.size() == 2);
    CHECK(json::opt_string(steps[0].get(), "step").value_or("") == "install");
    CHECK(json::opt_string(steps[1].get(), "step").value_or("") == "restart");
    for (const auto& s : steps) {
      CHECK(json::opt_int(s.get(), "epoch", -1).value_or(-1) == epoch);
      CHECK(json::opt_string(s.get(), "node").value_or("") == "n1");
      CHECK(json::opt_string(s.get(), "group").value_or("") == "g");
      CHECK(json::opt_string(s.get(), "version").value_or("") == kTo);
    }

    auto entry = hub.entry("g", "n1");
    REQUIRE(entry);
    CHECK(entry->state == State::succeeded);
    CHECK(entry->version == kTo);
    CHECK(entry->epoch == epoch);
    CHECK(entry->renew_time.empty());  // lease fields removed on release (§4.5)
    CHECK(hub.mgmt_status("n1").first == "successful");
    CHECK(hub.horizon_version("n1") == kTo);  // the reporter's `successful` records the version
    // Every transition reported once, with anax's strings, in order (exchange-api.md §4.3).
    std::string reported;
    for (const auto& r : m.status.reports()) reported += r + ";";
    CHECK(reported == "waiting;download started;downloaded;ha node waiting;initiated;successful;");
    PersistedState f = m.file();
    CHECK(f.group == "g");
    CHECK(f.pending_write_id.empty());
    CHECK(f.local.state == State::succeeded);
    CHECK(f.local.version == kTo);
    CHECK(f.local.progress == Progress::none);
    CHECK(f.local.last_write_id == entry->write_id);
  }

  TEST_CASE(
      "a write that lands but whose response is lost is recognised by its writeId, never written twice") {
    // protocol.md §4.6, for every transition of one cycle: the first write into each
    // state lands on the hub and its response is lost.
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    m.store.fault = first_into_each_state(Fault::lose_response);
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && m.local().progress == Progress::none;
    }));
    run_for(env, {&m}, 4'000ms);  // longer than a lease: whatever would follow, follows

    const auto& all = m.store.writes;
    int lost = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (!all[i].performed || all[i].error != Errc::transport) continue;
      ++lost;
      CAPTURE(i);
      REQUIRE(i + 1 < all.size());
      CHECK(all[i + 1].reads_before > all[i].reads_before);  // judged on a fresh read
    }
    CHECK(lost == static_cast<int>(kFullCycle.size()));
    CHECK(m.log.count("write-unknown") == lost);
    CHECK(m.log.count("write-recovered") == lost);

    auto writes = m.store.performed();
    CHECK(describe(transitions(writes)) == describe(kFullCycle));
    CHECK(lease_epochs(writes).size() == 1);  // one acquisition
    CHECK(acquire_times(writes).size() == 1);
    CHECK(waits(writes).size() == 1);  // one place in the queue
    CHECK(m.upgrader.steps() == kSteps);
    for (const auto& c : m.upgrader.calls()) {
      CAPTURE(c.step);
      if (c.step != "prepare") CHECK(c.target.previous_version == kFrom);  // the rollback target survives
    }
    CHECK(m.local().version == kTo);
    PersistedState f = m.file();
    CHECK(f.pending_write_id.empty());
    CHECK(f.local.previous_version == kFrom);
    CHECK(f.local.progress == Progress::none);
    auto entry = hub.entry("g", "n1");
    REQUIRE(entry);
    CHECK(entry->state == State::succeeded);
    CHECK(entry->version == kTo);
    CHECK(hub.mgmt_status("n1").first == "successful");
    CHECK(hub.horizon_version("n1") == kTo);
  }

  TEST_CASE(
      "a committed write whose connection dies before the response: the re-sent copy's 412 is judged by "
      "writeId, so the member keeps the lease it won and the release it wrote") {
    // protocol.md §4.6: the hub commits the acquire and the release, then closes the
    // kept-alive connection before answering; libcurl sends the PUT again on a fresh
    // connection with the same If-Match and gets 412 for its own committed write.
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    std::set<State> reset_once;
    m.store.before_write = [&](const Entry& e) {
      bool transition = m.local().state != e.state;
      if ((e.state == State::upgrading || e.state == State::succeeded) && transition &&
          reset_once.insert(e.state).second)
        REQUIRE(hub.call("PUT", "/v1/standin/faults", kRoot,
                         R"({"resetAfterCommit":1,"resetPathContains":"/agentupgrade/n1"})")
                    .status == 201);
    };
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && m.local().progress == Progress::none;
    }));
    run_for(env, {&m}, 4'000ms);  // longer than a lease: whatever would follow, follows

    // Both writes came back as 412 although they had landed.
    int conflicts = 0;
    for (const auto& w : m.store.writes)
      if (w.error == Errc::conflict) ++conflicts;
    CHECK(conflicts == 2);
    CHECK(m.log.count("write-recovered") == 2);
    CHECK(m.log.count("entry-changed") == 0);  // never mistaken for an admin's write

    // On the hub: one acquisition, one release, and the member stays at the target.
    std::vector<Entry> hub_writes;
    for (const auto& line : read_json_lines(hub.write_log_path())) {
      const cJSON* au = cJSON_GetObjectItemCaseSensitive(line.get(), "agentUpgrade");
      auto e = parse_entry(cJSON_GetObjectItemCaseSensitive(au, "n1"));
      if (e) hub_writes.push_back(*e);
    }
    CHECK(describe(transitions(hub_writes)) == describe(kFullCycle));
    CHECK(lease_epochs(hub_writes).size() == 1);
    CHECK(m.upgrader.steps() == kSteps);
    auto entry = hub.entry("g", "n1");
    REQUIRE(entry);
    CHECK(entry->state == State::succeeded);
    CHECK(entry->version == kTo);
    CHECK(m.local().version == kTo);
  }

  TEST_CASE(
      "a holder fenced by an admin during a long install stays disrupted until the install ends; "
      "no peer installs meanwhile") {
    // protocol.md §4.4, §6 (amended): a force-release (or the admin DELETE of the
    // entry) ends the lease, not the install; the next member waits for its end.
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1", "n2"});
    Member m1(env, hub, "n1");
    Member m2(env, hub, "n2");
    m1.upgrader.hold("install");
    m2.upgrader.hold("install");
    REQUIRE(started(m1));
    REQUIRE(started(m2));
    REQUIRE(run_until(env, {&m1, &m2},
                      [&] { return m1.upgrader.holding("install") || m2.upgrader.holding("install"); }));
    Member& a = m1.upgrader.holding("install") ? m1 : m2;
    Member& b = &a == &m1 ? m2 : m1;
    const std::string holder = a.config.node_id;
    std::string how;
    SUBCASE("force-release as agentctl writes it: upgrading without a lease") {
      how = "agentctl";
      Entry e = *hub.entry("g", holder);
      e.lease_duration_seconds = 0;
      e.acquire_time.clear();
      e.renew_time.clear();
      e.write_id.clear();
      e.message = "force-released by o/admin";
      hub.put_entry("g", holder, kAdmin, e);
    }
    SUBCASE("force-release to idle, as another admin tool may write it") {
      how = "idle";
      Entry e = *hub.entry("g", holder);
      e.state = State::idle;
      e.target_version.clear();
      e.lease_duration_seconds = 0;
      e.acquire_time.clear();
      e.renew_time.clear();
      e.write_id.clear();
      e.message = "force-released by o/admin";
      hub.put_entry("g", holder, kAdmin, e);
    }
    SUBCASE("admin DELETE of the entry") {
      how = "delete";
      std::int64_t rev = hub.group("g").revision;
      REQUIRE(hub.call("DELETE", "/v1/orgs/o/hagroups/g/agentupgrade/" + holder, kAdmin, "",
                       {{"If-Match", "\"" + std::to_string(rev) + "\""}})
                  .status == 204);
    }
    CAPTURE(how);
    // For longer than a lease and 3 × heartbeat: the peer never starts its install.
    bool peer_installed = false;
    run_for(env, {&m1, &m2}, 5'000ms,
            [&] { peer_installed = peer_installed || b.upgrader.count("install") > 0; });
    CHECK_FALSE(peer_installed);
    auto held = hub.entry("g", holder);
    REQUIRE(held);
    CHECK(held->state == State::upgrading);  // disrupted, without a lease
    CHECK(held->lease_duration_seconds == 0);
    CHECK(held->renew_time.empty());
    CHECK(held->message.find("still running") != std::string::npos);
    CHECK(a.log.count(how == "delete" ? "fenced" : "fence") >= 1);

    // The install ends: the holder queues again, the peer goes first, then the holder
    // finishes what it began under a new lease (no second install).
    a.upgrader.release("install");
    REQUIRE(run_until(env, {&m1, &m2}, [&] { return b.upgrader.holding("install"); }));
    b.upgrader.release("install");
    REQUIRE(run_until(env, {&m1, &m2}, [&] {
      return m1.local().state == State::succeeded && m2.local().state == State::succeeded &&
             m1.local().progress == Progress::none && m2.local().progress == Progress::none;
    }));
    CHECK(a.upgrader.count("install") == 1);
    CHECK(b.upgrader.count("install") == 1);
    // I3 as amended, on the members' own step logs (one fake clock): the two
    // installs never overlap.
    std::vector<check::Step> steps;
    for (Member* m : {&m1, &m2}) {
      auto more = check::read_steps(m->dir.file("steps.jsonl"));
      REQUIRE(more.has_value());
      steps.insert(steps.end(), more->begin(), more->end());
    }
    auto a_end = std::find_if(steps.begin(), steps.end(), [&](const check::Step& s) {
      return s.node == holder && s.step == "install" && s.end;
    });
    auto b_begin = std::find_if(steps.begin(), steps.end(), [&](const check::Step& s) {
      return s.node == b.config.node_id && s.step == "install" && !s.end;
    });
    REQUIRE(a_end != steps.end());
    REQUIRE(b_begin != steps.end());
    CHECK(a_end->t_us <= b_begin->t_us);
  }

  TEST_CASE("a write that never reached the hub is retried after a re-read") {
    // The first attempt at each transition of one cycle is lost before it reaches the hub.
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    m.store.fault = first_into_each_state(Fault::not_sent);
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && m.local().progress == Progress::none;
    }));

    // Each failed attempt is followed, after a read, by the same transition with a fresh writeId.
    const auto& all = m.store.writes;
    std::vector<State> retried;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (all[i].performed) continue;
      CAPTURE(i);
      REQUIRE(i + 1 < all.size());
      const auto& retry = all[i + 1];
      CHECK(retry.performed);
      CHECK(retry.entry.state == all[i].entry.state);
      CHECK(retry.entry.write_id != all[i].entry.write_id);
      CHECK(retry.reads_before > all[i].reads_before);
      retried.push_back(all[i].entry.state);
    }
    CHECK(describe(retried) == describe(kFullCycle));
    CHECK(m.log.count("write-unknown") == static_cast<int>(kFullCycle.size()));
    CHECK(m.log.count("write-recovered") == 0);

    auto writes = m.store.performed();
    CHECK(describe(transitions(writes)) == describe(kFullCycle));
    CHECK(lease_epochs(writes).size() == 1);
    CHECK(acquire_times(writes).size() == 1);
    CHECK(m.upgrader.steps() == kSteps);
    auto entry = hub.entry("g", "n1");
    REQUIRE(entry);
    CHECK(entry->state == State::succeeded);
    CHECK(entry->version == kTo);
  }

  TEST_CASE("a 412 on acquire is re-read and retried; the lease is taken once") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    // Just before the acquire reaches the hub, an admin changes the group: the
    // daemon's If-Match revision is stale and the hub answers 412.
    bool bumped = false;
    m.store.before_write = [&](const Entry& e) {
      if (bumped || e.state != State::upgrading) return;
      bumped = true;
      hub.put_settings("g", R"({"maxConcurrent":1})");
    };
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && m.local().progress == Progress::none;
    }));

    int conflicts = 0;
    for (std::size_t i = 0; i < m.store.writes.size(); ++i) {
      if (m.store.writes[i].error != Errc::conflict) continue;
      ++conflicts;
      REQUIRE(i + 1 < m.store.writes.size());
      const auto& retry = m.store.writes[i + 1];
      CHECK(retry.entry.state == State::upgrading);
      CHECK(retry.performed);
      CHECK(retry.reads_before > m.store.writes[i].reads_before);  // re-read first
      CHECK(retry.entry.epoch > m.store.writes[i].entry.epoch);    // above the revision it lost to
    }
    CHECK(conflicts == 1);
    auto writes = m.store.performed();
    CHECK(describe(transitions(writes)) == describe(kFullCycle));
    CHECK(lease_epochs(writes).size() == 1);
    CHECK(acquire_times(writes).size() == 1);
    CHECK(m.upgrader.steps() == kSteps);
    CHECK(m.upgrader.count("install") == 1);
    auto entry = hub.entry("g", "n1");
    REQUIRE(entry);
    CHECK(entry->state == State::succeeded);
  }

  TEST_CASE("after a 412 the member re-reads before it writes again; heartbeats do not conflict with peers") {
    // protocol.md §4.3/§4.6: a stale revision is never sent twice. n1 waits in a
    // paused group, heartbeating; twice an admin changes the group just before a
    // heartbeat reaches the hub. A heartbeat is conditioned on n1's own entry
    // (§3 as amended, If-Match-Scope: entry), so only a hub that checks every write
    // against the whole group answers 412.
    Mode mode = Mode::full;
    SUBCASE("a hub that knows If-Match-Scope") {}
    SUBCASE("a hub that checks the whole group") {
      mode = Mode::group_conditions;
    }
    CAPTURE(static_cast<int>(mode));
    Env env;
    StandIn hub(mode);
    hub.make_group("g", {"n1"});
    hub.put_settings("g", R"({"maxConcurrent":1,"paused":true})");
    Member m(env, hub, "n1");
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::waiting; }));
    int bumps = 0;
    m.store.before_write = [&](const Entry&) {
      if (bumps < 2) {
        ++bumps;
        hub.put_settings("g", R"({"maxConcurrent":1,"paused":true})");
      }
    };
    run_for(env, {&m}, 3'000ms);

    int conflicts = 0;
    for (std::size_t i = 0; i < m.store.writes.size(); ++i) {
      if (m.store.writes[i].error != Errc::conflict) continue;
      ++conflicts;
      if (i + 1 < m.store.writes.size()) {
        CAPTURE(i);
        CHECK(m.store.writes[i + 1].reads_before > m.store.writes[i].reads_before);  // read in between
      }
    }
    CHECK(bumps == 2);
    CHECK(conflicts == (mode == Mode::full ? 0 : 2));
    CHECK(m.store.writes.back().performed);
    CHECK(m.local().state == State::waiting);
  }

  TEST_CASE("a node in no group that restarted itself into the target checks its health before it is done") {
    // agentd upgrading agentd: the restart step ends this process, and the new
    // one already runs the target version, with the restart recorded as begun.
    Env env;
    StandIn hub;
    Member m(env, hub, "n3");
    PersistedState before;
    before.policy = "o/p1";
    before.local.state = State::upgrading;
    before.local.version = kFrom;
    before.local.target = kTo;
    before.local.previous_version = kFrom;
    before.local.prepared = true;
    before.local.progress = Progress::restart_begun;
    REQUIRE(m.state_file.save(before));
    m.upgrader.set_version(kTo);
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));
    CHECK(m.upgrader.steps() == std::vector<std::string>{"check_health"});
    CHECK(hub.mgmt_status("n3").first == "successful");
  }

  TEST_CASE("after a restart during install, the new process renews its lease before installing again") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");

    // What the previous process left: its entry holds epoch 7 on the hub, and its
    // state file says the install had begun under it.
    const std::string then = format_time(env.clock.wall());
    Entry held;
    held.state = State::upgrading;
    held.version = kFrom;
    held.target_version = kTo;
    held.epoch = 7;
    held.lease_duration_seconds = 3;
    held.acquire_time = then;
    held.renew_time = then;
    held.last_seen = then;
    held.message = "upgrading to " + kTo;
    held.write_id = "w-before-restart";
    hub.put_entry("g", "n1", "o/n1:" + token_of("n1"), held);
    PersistedState before;
    before.group = "g";
    before.policy = "o/p1";
    before.local.state = State::upgrading;
    before.local.version = kFrom;
    before.local.target = kTo;
    before.local.previous_version = kFrom;
    before.local.epoch = 7;
    before.local.highest_epoch = 7;
    before.local.acquire_time = then;
    before.local.message = held.message;
    before.local.last_write_id = held.write_id;
    before.local.prepared = true;
    before.local.progress = Progress::install_begun;
    REQUIRE(m.state_file.save(before));
    env.clock.advance(1'000ms);  // the restart took a second

    REQUIRE(started(m));
    CHECK(m.local().progress == Progress::install_begun);
    REQUIRE(run_until(env, {&m}, [&] { return m.upgrader.count("install") > 0; }));

    REQUIRE_FALSE(m.store.writes.empty());
    const Entry& renew = m.store.writes.front().entry;
    CHECK(m.store.writes.front().performed);
    CHECK(renew.state == State::upgrading);
    CHECK(renew.epoch == 7);
    CHECK(renew.acquire_time == then);
    CHECK(renew.renew_time != then);
    CHECK(renew.write_id != held.write_id);
    auto events = env.events.list();
    REQUIRE(events.size() >= 2);
    CHECK(events[0] == "n1:write:upgrading");
    CHECK(std::find(events.begin(), events.end(), "n1:install") > events.begin());
    CHECK(m.upgrader.steps().front() == "install");  // no prepare again: the install is finished first
    CHECK(m.upgrader.first("install")->target.previous_version == kFrom);

    REQUIRE(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && m.local().progress == Progress::none;
    }));
    auto writes = m.store.performed();
    CHECK(lease_epochs(writes) == std::set<std::int64_t>{7});
    CHECK(m.upgrader.steps() == std::vector<std::string>{"install", "restart", "check_health"});
    CHECK(hub.entry("g", "n1")->state == State::succeeded);
  }

  TEST_CASE("a member that starts waiting reads at its place in the queue, not at the poll it had before") {
    // protocol.md §5. The read before the `waiting` write was made while preparing and
    // scheduled the next one a slow poll later; the head of the queue must look every
    // half fast poll, or a short install's handoff waits up to a slow poll (7.1 s seen
    // at 20 members with 2 s installs).
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1", "n2"});
    auto slow = [](Config& c) {
      c.fast_poll = 2'000ms;
      c.poll = 10'000ms;
      c.heartbeat = 20'000ms;
      c.lease_duration = 120'000ms;
      c.changes_interval = 30'000ms;
    };
    Member n1(env, hub, "n1", {}, nullptr, {}, slow);
    Member n2(env, hub, "n2", {}, nullptr, {}, slow);
    n1.upgrader.hold("install");
    n2.upgrader.hold("prepare");
    REQUIRE(started(n1));
    REQUIRE(started(n2));
    REQUIRE(run_until(
        env, {&n1, &n2}, [&] { return n1.upgrader.holding("install") && n2.upgrader.holding("prepare"); },
        60'000ms));
    run_for(env, {&n1, &n2}, 12'000ms);  // n2 reads at the slow poll while it prepares

    n2.upgrader.release("prepare");
    REQUIRE(run_until(env, {&n1, &n2}, [&] { return n2.local().state == State::waiting; }));
    const int reads_when_waiting = n2.store.reads;
    run_for(env, {&n1, &n2}, 3'000ms);
    CHECK(n1.upgrader.holding("install"));            // the lease is still taken: n2 heads the queue
    CHECK(n2.store.reads - reads_when_waiting >= 2);  // every 1 s; before: none for up to 10 s
    n1.upgrader.release("install");
    CHECK(run_until(
        env, {&n1, &n2}, [&] { return n2.local().state == State::upgrading; }, 5'000ms));
  }

  TEST_CASE("a lease holder's renewals never queue behind reads: no policy read while it holds the lease") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    RequestLog* requests = nullptr;
    Member m(env, hub, "n1", {}, nullptr, [&](std::unique_ptr<HttpClient> inner) {
      auto r = std::make_unique<RequestLog>(std::move(inner));
      requests = r.get();
      return r;
    });
    m.upgrader.hold("install");
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.upgrader.holding("install"); }));
    requests->clear();
    // The policy changes meanwhile: the changes feed says so.
    REQUIRE(hub.call("PUT", "/v1/orgs/o/managementpolicies/p1", kAdmin,
                     R"({"label":"upgrade","enabled":true,"start":"now","description":"edited",)"
                     R"("agentUpgradePolicy":{"manifest":"o/m1","allowDowngrade":false}})")
                .status == 201);
    run_for(env, {&m}, 3'000ms);
    CHECK(requests->count("POST", "/orgs/o/changes") >= 1);  // the notice came in
    CHECK(requests->count("GET", "/managementpolicies") == 0);
    CHECK(requests->count("PUT", "/agentupgrade/n1") >= 2);  // renewals went on
    m.upgrader.release("install");
    // After the release the changed policy is read.
    CHECK(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && requests->count("GET", "/managementpolicies") >= 1;
    }));
  }

  TEST_CASE(
      "fenced: a force-release during install stops the holder before restart; it goes back to waiting") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    m.upgrader.hold("install");
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.upgrader.holding("install"); }));
    const std::int64_t epoch = m.local().epoch;
    REQUIRE(epoch > 0);
    auto held = hub.entry("g", "n1");
    REQUIRE(held);
    REQUIRE(held->state == State::upgrading);
    REQUIRE(held->epoch == epoch);
    run_for(env, {&m}, 1'500ms);  // renewals go on while the install runs

    // protocol.md §6 force-release, then a pause so that no new lease is taken.
    Entry released;
    released.state = State::idle;
    released.version = kFrom;
    released.message = "force-released by o/admin";
    hub.put_entry("g", "n1", kAdmin, released);
    const std::size_t writes_before_release = m.store.writes.size();
    hub.put_settings("g", R"({"maxConcurrent":1,"paused":true})");
    m.upgrader.release("install");

    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::waiting; }));
    run_for(env, {&m}, 4'000ms, [&] { REQUIRE(m.upgrader.count("restart") == 0); });
    CHECK(m.upgrader.count("restart") == 0);
    CHECK(m.log.count("entry-changed") >= 1);
    auto entry = hub.entry("g", "n1");
    REQUIRE(entry);
    CHECK(entry->state == State::waiting);
    CHECK(m.daemon.status_text().find("paused") != std::string::npos);
    // The admin's entry was never overwritten with the fenced lease.
    for (std::size_t i = writes_before_release; i < m.store.writes.size(); ++i) {
      const auto& w = m.store.writes[i];
      CHECK_FALSE((w.performed && carries_lease(w.entry)));
    }

    // Unpaused, it takes a new lease and finishes what it began under it.
    hub.put_settings("g", R"({"maxConcurrent":1,"paused":false})");
    REQUIRE(run_until(env, {&m}, [&] {
      return m.local().state == State::succeeded && m.local().progress == Progress::none;
    }));
    CHECK(m.upgrader.count("install") == 1);
    CHECK(m.upgrader.count("restart") == 1);
    auto steps = begun_steps(m.dir.file("steps.jsonl"));
    REQUIRE(steps.size() == 2);
    CHECK(json::opt_string(steps[0].get(), "step").value_or("") == "install");
    CHECK(json::opt_int(steps[0].get(), "epoch", -1).value_or(-1) == epoch);
    CHECK(json::opt_string(steps[1].get(), "step").value_or("") == "restart");
    CHECK(json::opt_int(steps[1].get(), "epoch", -1).value_or(-1) > epoch);
  }

  TEST_CASE("a download's progress reaches sd_notify STATUS, the entry's message and the management status") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member n1(env, hub, "n1");
    const std::string text = "downloading horizon_2.0.0_amd64.deb: 1.0 MiB of 2.0 MiB (50%)";
    n1.upgrader.progress({text, 1 << 20, 2 << 20});
    n1.upgrader.hold("prepare");
    REQUIRE(started(n1));
    REQUIRE(run_until(env, {&n1}, [&] { return n1.daemon.status_text() == text; }));
    auto [st, err] = hub.mgmt_status("n1");
    CHECK(st == "download started");
    CHECK(err == text);
    // The next heartbeat carries it in our entry, for agentctl status.
    REQUIRE(run_until(env, {&n1}, [&] {
      auto e = hub.entry("g", "n1");
      return e && e->message == text;
    }));
    n1.upgrader.release("prepare");
    REQUIRE(run_until(env, {&n1}, [&] { return n1.local().state == State::succeeded; }));
    CHECK(hub.mgmt_status("n1").first == "successful");
  }

  TEST_CASE(
      "a step's message is its own: a fast prepare's progress text does not replace a rollback's reason") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    m.upgrader.progress({"running the prepare command for 2.0.0"});  // never shown: prepare ends at once
    m.upgrader.script("check_health", fail(Errc::process, "health command exited with 3"));
    m.upgrader.hold("rollback");
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return m.upgrader.holding("rollback"); }));
    run_for(env, {&m}, 1'000ms);  // passes while the rollback runs
    m.upgrader.release("rollback");
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::rolledback; }));
    auto e = hub.entry("g", "n1");
    REQUIRE(e);
    CHECK_MESSAGE(e->message.find("health command exited with 3") != std::string::npos, e->message);
    CHECK(e->message.find("prepare command") == std::string::npos);
  }

  TEST_CASE("a failed health check rolls back, releases rolledback with the reason, and halts the group") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1", "n2"});
    Member n1(env, hub, "n1");
    Member n2(env, hub, "n2");
    n1.upgrader.script("check_health", fail(Errc::process, "agent unhealthy: port 8510 closed"));
    n2.upgrader.hold("prepare");  // n2 reaches the queue only once n1 holds the lease
    REQUIRE(started(n1));
    REQUIRE(started(n2));
    REQUIRE(run_until(env, {&n1, &n2}, [&] { return n1.local().state == State::upgrading; }));
    n2.upgrader.release("prepare");
    REQUIRE(run_until(env, {&n1, &n2}, [&] {
      return n1.local().state == State::rolledback && n2.local().state == State::waiting;
    }));
    run_for(env, {&n1, &n2}, 4'000ms, [&] { REQUIRE(n2.upgrader.count("install") == 0); });

    CHECK(n1.upgrader.steps() ==
          std::vector<std::string>{"prepare", "install", "restart", "check_health", "rollback"});
    auto rb = n1.upgrader.first("rollback");
    REQUIRE(rb);
    CHECK(rb->target.previous_version == kFrom);
    CHECK(rb->file->local.progress == Progress::rollback_begun);
    auto e1 = hub.entry("g", "n1");
    REQUIRE(e1);
    CHECK(e1->state == State::rolledback);
    CHECK(e1->target_version == kTo);
    CHECK(e1->version == kFrom);
    CHECK(e1->message.find("agent unhealthy: port 8510 closed") != std::string::npos);
    CHECK(e1->renew_time.empty());
    auto [st, err] = hub.mgmt_status("n1");
    CHECK(st == "rollback successful");
    CHECK(err.find("agent unhealthy") != std::string::npos);
    CHECK(n1.file().local.version == kFrom);

    // The halt: n2 waits and never takes the lease for 2.0.0.
    CHECK(n2.upgrader.steps() == std::vector<std::string>{"prepare"});
    for (const auto& w : n2.store.performed()) CHECK_FALSE(holds_lease(w.state));
    auto e2 = hub.entry("g", "n2");
    REQUIRE(e2);
    CHECK(e2->state == State::waiting);
    CHECK(n2.daemon.status_text().find("halted") != std::string::npos);
    CHECK(n2.daemon.status_text().find("n1") != std::string::npos);
  }

  TEST_CASE("a hub without the coordination extension: no writes, and the status says it refuses and why") {
    for (Mode mode : {Mode::no_etag, Mode::no_coordination}) {
      const bool no_etag = mode == Mode::no_etag;
      CAPTURE(no_etag);
      Env env;
      StandIn hub(mode);
      hub.make_group("g", {"n1"});
      Member m(env, hub, "n1");
      REQUIRE(started(m));
      run_for(env, {&m}, 2'500ms);

      CHECK(m.store.reads > 0);
      CHECK(m.store.writes.empty());
      CHECK(m.upgrader.steps().empty());
      const std::string& status = m.daemon.status_text();
      CHECK(status.rfind("refusing to upgrade: the hub cannot coordinate group g", 0) == 0);
      CHECK(status.find(no_etag ? "no coordination extension (no ETag)"
                                : "does not let this identity read its group") != std::string::npos);
      CHECK(m.log.count("unsupported-hub") == 1);
      auto [st, err] = hub.mgmt_status("n1");
      CHECK(st == "ha node waiting");
      CHECK(err.find("refusing to upgrade") != std::string::npos);
      CHECK(m.local().state == State::idle);
      CHECK(m.local().epoch == 0);

      // Refusing costs the hub little: the group is read again with a growing pause
      // (poll 500 ms here, doubling up to idleHeartbeat 30 s), not every poll.
      const int reads_before = m.store.reads;
      run_for(env, {&m}, 60'000ms);
      CHECK(m.store.reads - reads_before <= 8);  // 1, 2, 4, 8, 16, 30, 30 s apart
      CHECK(m.store.reads - reads_before >= 3);  // but it does look again
      CHECK(m.log.count("unsupported-hub") == 1);
    }
  }

  TEST_CASE(
      "beside anax, with the coordination extension: anax's job, agentd's lease, statuses through anax") {
    // anax-coexistence.md §3: the job anax downloaded is taken from `ha node
    // waiting` under agentd's own lease (the agbot's pace does not apply), and
    // its transitions are reported through anax's local API, never to the Exchange.
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1", "n2"});
    std::vector<std::unique_ptr<testing::FakeAnax>> anax;
    std::vector<std::unique_ptr<Member>> members;
    for (const char* n : {"n1", "n2"}) {
      anax.push_back(std::make_unique<testing::FakeAnax>());
      anax.back()->set_ha_group("g");
      AnaxJob j = testing::anax_job("o/p1", "ha node waiting", kTo);
      anax.back()->set_job(j);
      members.push_back(std::make_unique<Member>(env, hub, n, "", anax.back().get()));
    }
    std::vector<Member*> all{members[0].get(), members[1].get()};
    for (Member* m : all) REQUIRE(started(*m));
    REQUIRE(run_until(
        env, all,
        [&] {
          return std::all_of(all.begin(), all.end(), [](Member* m) {
            return m->local().state == State::succeeded && m->local().progress == Progress::none &&
                   m->file().report_status.empty();
          });
        },
        60'000ms));
    for (std::size_t i = 0; i < all.size(); ++i) {
      CAPTURE(i);
      CHECK(anax[i]->puts() == std::vector<std::string>{"o/p1:initiated", "o/p1:successful"});
      CHECK(all[i]->upgrader.steps() == kSteps);
      // anax writes the Exchange's status, not agentd.
      CHECK(hub.call("GET", "/v1/orgs/o/nodes/" + all[i]->config.node_id + "/managementStatus/p1", kAdmin)
                .status == 404);
    }
    // One at a time: the second install began after the first member released.
    std::vector<std::string> order = env.events.list();
    auto first = [&](const std::string& e) {
      return std::find(order.begin(), order.end(), e) - order.begin();
    };
    bool n1_first = first("n1:install") < first("n2:install");
    const std::string a = n1_first ? "n1" : "n2", b = n1_first ? "n2" : "n1";
    CHECK(first(a + ":write:succeeded") < first(b + ":install"));
  }

  TEST_CASE("beside anax, on a hub without the coordination extension: only a downloaded job is taken") {
    // The agbot's lock is the group's lock: `ha node waiting` means another member
    // holds it; anax moves the job to `downloaded` when the agbot says go.
    Env env;
    StandIn hub(Mode::no_coordination);
    hub.make_group("g", {"n1"});
    testing::FakeAnax anax;
    anax.set_ha_group("g");
    AnaxJob j = testing::anax_job("o/p1", "ha node waiting", kTo);
    anax.set_job(j);
    Member m(env, hub, "n1", "", &anax);
    std::string failing;
    SUBCASE("healthy") {}
    SUBCASE("the health check fails: rolled back, reported through anax") {
      failing = "yes";
      m.upgrader.script("check_health", fail(Errc::process, "agent not answering"));
    }
    REQUIRE(started(m));
    run_for(env, {&m}, 5'000ms);
    CHECK(m.upgrader.steps().empty());
    CHECK(anax.puts().empty());
    CHECK(m.daemon.status_text().find("agbot's lock serialises the group") != std::string::npos);

    anax.set_status("o/p1", "downloaded");
    REQUIRE(run_until(env, {&m}, [&] {
      return (m.local().state == State::succeeded || m.local().state == State::rolledback) &&
             m.local().progress == Progress::none && m.file().report_status.empty();
    }));
    CHECK(m.store.writes.empty());  // no group writes on this hub
    if (failing.empty()) {
      CHECK(m.upgrader.steps() == kSteps);
      CHECK(anax.puts() == std::vector<std::string>{"o/p1:initiated", "o/p1:successful"});
    } else {
      CHECK(anax.puts() ==
            std::vector<std::string>{"o/p1:initiated", "o/p1:rollback started", "o/p1:rollback successful"});
      CHECK(m.local().version == kFrom);
    }
  }

  TEST_CASE("beside anax: a job that would move the node back is refused with a final status") {
    // upgrade/plan.h plan_from_anax: the same anti-rollback rule as for the hub's
    // policies; `precheck failed` ends the job, so the agbot frees its lock.
    Env env;
    StandIn hub;
    testing::FakeAnax anax;  // in no group: a ready job would be taken at once
    AnaxJob j = testing::anax_job("o/p1", "downloaded", "0.9.0");
    j.allow_downgrade = true;  // the policy allows it; this node does not (AGENTD_ALLOW_DOWNGRADE)
    anax.set_job(j);
    Member m(env, hub, "n1", "", &anax);
    REQUIRE(started(m));
    REQUIRE(run_until(env, {&m}, [&] { return !anax.puts().empty(); }));
    run_for(env, {&m}, 5'000ms);
    CHECK(anax.puts() == std::vector<std::string>{"o/p1:precheck failed"});
    CHECK(m.upgrader.steps().empty());
    CHECK(m.local().version == kFrom);
    CHECK(m.log.count("policy-not-evaluated") == 1);
  }

  TEST_CASE(
      "beside anax: a final status anax could not take is sent again until it is, also after a restart") {
    Env env;
    StandIn hub;
    testing::FakeAnax anax;  // in no group: upgrades at once
    AnaxJob j = testing::anax_job("o/p1", "downloaded", kTo);
    anax.set_job(j);
    testing::TempDir state;
    {
      Member m(env, hub, "n1", state.file("state.json"), &anax);
      anax.refuse_puts_after(1);  // takes `initiated`, then is away (the new anax is starting)
      REQUIRE(started(m));
      REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));
      run_for(env, {&m}, 40'000ms);
      CHECK(m.file().report_status == "successful");  // kept, not dropped
      CHECK(m.log.count("management-status-failed") >= 2);
      m.daemon.stop();
    }
    anax.refuse_puts_after(-1);
    Member again(env, hub, "n1", state.file("state.json"), &anax);
    again.upgrader.set_version(kTo);
    REQUIRE(started(again));
    REQUIRE(run_until(env, {&again}, [&] { return again.file().report_status.empty(); }));
    CHECK(anax.status_of("o/p1") == "successful");
  }

  TEST_CASE("beside anax: anax answering 401, 403, 404 or 500 is waited out; the job runs once it answers") {
    // The anax client maps its statuses as every HTTP caller does (http_status_error):
    // whatever the category, the daemon logs it, asks again at each poll, takes no
    // step, and carries on once anax answers.
    Env env;
    StandIn hub;
    testing::FakeAnax anax;  // in no group: a ready job is taken at once
    AnaxJob j = testing::anax_job("o/p1", "downloaded", kTo);
    anax.set_job(j);
    long status = 0;
    std::string category;
    SUBCASE("401") {
      status = 401, category = "unauthorized";
    }
    SUBCASE("403") {
      status = 403, category = "forbidden";
    }
    SUBCASE("404") {
      status = 404, category = "not-found";
    }
    SUBCASE("500") {
      status = 500, category = "http";
    }
    Error refusal =
        http_status_error(HttpResponse{status, "", {}}, "anax GET /node: HTTP " + std::to_string(status));
    anax.fail_with(refusal);
    Member m(env, hub, "n1", "", &anax);
    REQUIRE(started(m));
    run_for(env, {&m}, 5'000ms);
    CHECK(m.upgrader.steps().empty());
    CHECK(anax.puts().empty());
    CHECK(m.log.count("anax-unavailable") >= 5);  // asked again at every poll (500 ms)
    CHECK(m.daemon.status_text() == "waiting for the agent's local API: " + category + " (HTTP " +
                                        std::to_string(status) + "): anax GET /node: HTTP " +
                                        std::to_string(status));
    anax.fail_with(std::nullopt);
    REQUIRE(run_until(env, {&m},
                      [&] { return m.local().state == State::succeeded && m.file().report_status.empty(); }));
    CHECK(m.upgrader.steps() == kSteps);
    CHECK(anax.puts() == std::vector<std::string>{"o/p1:initiated", "o/p1:successful"});
  }

  TEST_CASE("an unusable state directory: start() returns exit_state") {
    Env env;
    StandIn hub;
    testing::TempDir dir;
    const std::string not_a_dir = dir.write("plain-file", "x");
    for (const std::string& path : {dir.file("missing/state.json"), not_a_dir + "/state.json"}) {
      CAPTURE(path);
      Member m(env, hub, "n1", path);
      auto r = m.daemon.start();
      REQUIRE(r.has_value());
      CHECK(*r == exit_state);
      CHECK(m.notifier.sent().empty());  // never READY
      CHECK_FALSE(std::filesystem::exists(path));
    }
  }

  TEST_CASE(
      "a state file that cannot be written degrades agentd instead of ending it; it frees its own files") {
    Env env;
    StandIn hub;
    hub.make_group("g", {"n1"});
    Member m(env, hub, "n1");
    // Every write of the state fails (the temporary file's name is taken by a
    // directory), as on a full disk; agentd's old downloads fill the disk.
    const std::string blocker = m.state_file.path() + ".tmp";
    std::filesystem::create_directories(blocker);
    std::filesystem::create_directories(m.dir.file("downloads/0.9.0"));
    REQUIRE(write_file_atomic(m.dir.file("downloads/0.9.0/horizon_0.9.0_amd64.deb.part"),
                              std::string(100000, 'x')));
    REQUIRE(started(m));  // not exit_state: restarting would only fail again
    auto sent = m.notifier.sent();
    CHECK(std::find(sent.begin(), sent.end(), "READY=1") != sent.end());
    run_for(env, {&m}, 5'000ms);
    CHECK(m.daemon.status_text().starts_with("degraded: cannot persist state"));
    CHECK(m.upgrader.steps().empty());  // nothing proceeds unrecorded
    CHECK(m.store.writes.empty());
    CHECK_FALSE(std::filesystem::exists(m.dir.file("downloads/0.9.0")));
    CHECK(m.log.count("degraded") == 1);  // said once, retried quietly

    std::filesystem::remove_all(blocker);  // space again
    REQUIRE(run_until(env, {&m}, [&] { return m.local().state == State::succeeded; }));
    CHECK(m.log.count("persist-recovered") == 1);
    CHECK(m.file().local.state == State::succeeded);
  }

  TEST_CASE("a corrupt state file: start() returns exit_state and leaves the file untouched") {
    Env env;
    StandIn hub;
    testing::TempDir dir;
    for (const std::string& text :
         {std::string("{\"format\":1,\"state\":\"upgr"), std::string("{\"format\":1,\"state\":\"dancing\"}"),
          std::string("{\"format\":99}")}) {
      CAPTURE(text);
      const std::string path = dir.write("state.json", text);
      Member m(env, hub, "n1", path);
      auto r = m.daemon.start();
      REQUIRE(r.has_value());
      CHECK(*r == exit_state);
      CHECK(read_text(path) == text);
      CHECK(m.notifier.sent().empty());
      CHECK(m.log.count("state-unreadable") == 1);
    }
  }

  TEST_CASE("READY=1 on start, STOPPING=1 on stop") {
    Env env;
    StandIn hub;
    Member m(env, hub, "n3");
    REQUIRE(started(m));
    auto sent = m.notifier.sent();
    REQUIRE_FALSE(sent.empty());
    CHECK(sent.front() == "READY=1");
    run_for(env, {&m}, 1'000ms);
    sent = m.notifier.sent();
    CHECK(std::count(sent.begin(), sent.end(), "STOPPING=1") == 0);
    CHECK(m.daemon.stop() == exit_ok);
    sent = m.notifier.sent();
    CHECK(sent.back() == "STOPPING=1");
    CHECK(std::count(sent.begin(), sent.end(), "READY=1") == 1);
    CHECK(std::count(sent.begin(), sent.end(), "STOPPING=1") == 1);
  }
}
