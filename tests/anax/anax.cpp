#include "anax.h"

#include <cjson/cJSON.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>

#include "agentd/clock.h"
#include "agentd/files.h"
#include "agentd/process.h"
#include "upgrade/constraints.h"
#include "upgrade/plan.h"
#include "upgrade/version_range.h"

namespace agentd::anax {

namespace fs = std::filesystem;

namespace {

// ---- time ------------------------------------------------------------------------------------

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Go's time.RFC3339 of a UTC time: "2026-01-01T00:00:00Z" (scheduledTime).
std::string rfc3339_utc(std::int64_t unix) {
  time_t t = static_cast<time_t>(unix);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// time.Now().Format(time.RFC3339): local time with its offset, "Z" in UTC (startTime, endTime).
std::string rfc3339_local_now() {
  time_t t = ::time(nullptr);
  struct tm tm {};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  long off = tm.tm_gmtoff;
  if (off == 0) return std::string(buf) + "Z";
  char zone[40];
  std::snprintf(zone, sizeof zone, "%c%02ld:%02ld", off < 0 ? '-' : '+', std::labs(off) / 3600,
                (std::labs(off) % 3600) / 60);
  return std::string(buf) + zone;
}

// ---- replies ---------------------------------------------------------------------------------

Reply json_reply(int status, const cJSON* body) {
  Reply r;
  r.status = status;
  r.body = json::print(body);
  return r;
}

// anax answers a handled write with a JSON string.
Reply string_reply(int status, const std::string& text) {
  return json_reply(status, json::Ptr(cJSON_CreateString(text.c_str())).get());
}

Reply error_reply(int status, const std::string& msg) {
  auto o = json::object();
  json::set(o.get(), "error", msg);
  return json_reply(status, o.get());
}

std::string str(const cJSON* o, const char* key) {
  return json::opt_string(o, key).value_or("");
}

// Statuses in which a job holds the node (and the agbot's lock): nothing else starts.
bool busy(const std::string& s) {
  return s == to_string(MgmtStatus::downloaded) || s == to_string(MgmtStatus::initiated) ||
         s == to_string(MgmtStatus::download_started) || s == to_string(MgmtStatus::ha_node_waiting);
}

std::string nmp_of(const std::string& key) {
  return key.substr(key.find('/') + 1);
}

std::string without_suffix(std::string s, const std::string& suffix) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0)
    s.resize(s.size() - suffix.size());
  return s;
}

constexpr int kMaxDownloadAttempts = 4;  // anax: then `download failed`

}  // namespace

// ---- records -----------------------------------------------------------------------------------

namespace {
// agentUpgradePolicyStatus as anax PUTs it to the Exchange (exchange-api.md §4.2).
json::Ptr policy_status_json(const Record& r) {
  auto st = json::object();
  json::set(st.get(), "scheduledTime", r.scheduled_time);
  if (!r.start_time.empty()) json::set(st.get(), "startTime", r.start_time);
  if (!r.end_time.empty()) json::set(st.get(), "endTime", r.end_time);
  auto versions = json::object();
  json::set(versions.get(), "softwareVersion", r.software_version);
  json::set(versions.get(), "certVersion", r.cert_version);
  json::set(versions.get(), "configVersion", r.config_version);
  json::set(st.get(), "upgradedVersions", std::move(versions));
  json::set(st.get(), "status", r.status);
  if (!r.error_message.empty()) json::set(st.get(), "errorMessage", r.error_message);
  return st;
}
}  // namespace

json::Ptr record_to_json(const Record& r, const std::string& work_dir) {
  auto st = policy_status_json(r);
  json::set(st.get(), "workingDirectory", work_dir);
  auto in = json::object();
  if (r.allow_downgrade) json::set(in.get(), "allowDowngrade", true);
  json::set(in.get(), "manifest", r.manifest);
  json::set(in.get(), "scheduledUnixTime", r.scheduled_unix);
  auto latest = json::object();
  json::set(latest.get(), "softwareLatest", r.software_latest);
  json::set(latest.get(), "configLatest", r.config_latest);
  json::set(latest.get(), "certLatest", r.cert_latest);
  json::set(in.get(), "latestMap", std::move(latest));
  json::set(in.get(), "downloadAttempts", r.download_attempts);
  auto o = json::object();
  json::set(o.get(), "agentUpgradePolicyStatus", std::move(st));
  json::set(o.get(), "agentUpgradeInternal", std::move(in));
  return o;
}

Result<Record> record_from_json(const cJSON* o) {
  auto st = json::get_object(o, "agentUpgradePolicyStatus");
  if (!st) return std::unexpected(st.error());
  const cJSON* in = cJSON_GetObjectItemCaseSensitive(o, "agentUpgradeInternal");
  const cJSON* versions = cJSON_GetObjectItemCaseSensitive(*st, "upgradedVersions");
  const cJSON* latest = cJSON_GetObjectItemCaseSensitive(in, "latestMap");
  Record r;
  r.scheduled_time = str(*st, "scheduledTime");
  r.start_time = str(*st, "startTime");
  r.end_time = str(*st, "endTime");
  r.software_version = str(versions, "softwareVersion");
  r.cert_version = str(versions, "certVersion");
  r.config_version = str(versions, "configVersion");
  r.status = str(*st, "status");
  r.error_message = str(*st, "errorMessage");
  r.allow_downgrade = json::opt_bool(in, "allowDowngrade", false).value_or(false);
  r.manifest = str(in, "manifest");
  r.scheduled_unix = json::opt_int(in, "scheduledUnixTime", 0).value_or(0);
  r.software_latest = json::opt_bool(latest, "softwareLatest", false).value_or(false);
  r.config_latest = json::opt_bool(latest, "configLatest", false).value_or(false);
  r.cert_latest = json::opt_bool(latest, "certLatest", false).value_or(false);
  r.download_attempts = json::opt_int(in, "downloadAttempts", 0).value_or(0);
  return r;
}

// ---- lifecycle ---------------------------------------------------------------------------------

Result<std::unique_ptr<Anax>> Anax::open(AnaxOptions options) {
  for (auto [value, name] :
       {std::pair{&options.state_path, "state file"}, std::pair{&options.exchange_url, "Exchange URL"},
        std::pair{&options.org, "org"}, std::pair{&options.node, "node"},
        std::pair{&options.work_dir, "work directory"}})
    if (value->empty()) return fail(Errc::config, std::string("the anax stand-in needs its ") + name);
  options.exchange_url = without_suffix(options.exchange_url, "");
  std::string base = without_suffix(options.exchange_url, "/v1");
  if (options.agbot_url.empty()) options.agbot_url = base;
  if (options.css_url.empty()) options.css_url = base + "/css";
  options.agbot_url = without_suffix(options.agbot_url, "");
  options.css_url = without_suffix(options.css_url, "");

  std::map<std::string, Record> records;
  std::string recorded;
  auto text = read_file(options.state_path, 64u * 1024 * 1024);
  if (text) {
    auto root = json::parse(*text, "anax state file " + options.state_path);
    if (!root) return std::unexpected(root.error());
    recorded = str(root->get(), "recordedVersion");
    const cJSON* item = nullptr;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root->get(), "records")) {
      auto r = record_from_json(item);
      if (!r) return std::unexpected(r.error());
      // anax ResetDownloadStartedStatuses: a download cut by the restart starts again.
      if (r->status == to_string(MgmtStatus::download_started)) r->status = to_string(MgmtStatus::waiting);
      records[item->string] = *r;
    }
  } else if (text.error().code != Errc::not_found) {
    return std::unexpected(text.error());
  }
  std::unique_ptr<Anax> a(new Anax(std::move(options), std::move(records), recorded));
  {
    std::lock_guard lock(a->mu_);
    // First start: anax records its version at registration.
    if (a->recorded_version_.empty()) a->recorded_version_ = a->running_version();
    if (auto st = a->save_locked(); !st) return std::unexpected(st.error());
  }
  if (a->options_.worker_interval.count() > 0)
    a->threads_.emplace_back(
        [p = a.get()] { p->run_every(p->options_.worker_interval, &Anax::worker_pass); });
  if (a->options_.cron_interval.count() > 0)
    a->threads_.emplace_back(
        [p = a.get()] { p->run_every(p->options_.cron_interval, &Anax::executor_pass); });
  return a;
}

Anax::Anax(AnaxOptions options, std::map<std::string, Record> records, std::string recorded_version)
    : options_(std::move(options)),
      records_(std::move(records)),
      recorded_version_(std::move(recorded_version)) {}

Anax::~Anax() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Anax::run_every(std::chrono::milliseconds interval, void (Anax::*pass)()) {
  std::unique_lock lock(stop_mu_);
  while (!stopping_) {
    lock.unlock();
    (this->*pass)();
    lock.lock();
    stop_cv_.wait_for(lock, interval, [this] { return stopping_; });
  }
}

Status Anax::save_locked() {
  auto records = json::object();
  for (const auto& [key, r] : records_)
    json::set(records.get(), key.c_str(), record_to_json(r, options_.work_dir));
  auto root = json::object();
  json::set(root.get(), "recordedVersion", recorded_version_);
  json::set(root.get(), "records", std::move(records));
  return write_file_atomic(options_.state_path, json::print(root.get()), 0600);
}

std::map<std::string, Record> Anax::records() {
  std::lock_guard lock(mu_);
  return records_;
}

std::string Anax::recorded_version() {
  std::lock_guard lock(mu_);
  return recorded_version_;
}

std::string Anax::running_version() const {
  if (options_.version_file.empty()) return options_.initial_version;
  auto text = read_file(options_.version_file, 4096);
  if (!text) return options_.initial_version;
  std::string v(trim_space(*text));
  return v.empty() ? options_.initial_version : v;
}

std::string Anax::job_dir(const std::string& key) const {
  return options_.work_dir + "/" + key;
}

// ---- HTTP to the Exchange, the CSS and the agbot -----------------------------------------------

Result<HttpResponse> Anax::send(const std::string& method, const std::string& url, const std::string& body,
                                std::size_t max_bytes) {
  HttpOptions o;
  o.connect_timeout = std::chrono::seconds(2);
  o.total_timeout = std::chrono::seconds(30);
  o.max_response_bytes = max_bytes;
  o.user_agent = "anax-standin";  // the hub counts these apart from agentd's (tests/hub/server.h)
  o.basic_user = options_.org + "/" + options_.node;
  o.basic_password = options_.token;
  // A client per call: the worker, the executor and the API's threads each send.
  auto client = make_curl_http_client(o);
  HttpRequest req;
  req.method = method;
  req.url = url;
  req.body = body;
  return client->perform(req);
}

namespace {
Status expect(const Result<HttpResponse>& r, std::initializer_list<long> ok, const std::string& what) {
  if (!r) return std::unexpected(r.error());
  for (long s : ok)
    if (r->status == s) return {};
  return fail(Errc::http, what + " answered " + std::to_string(r->status) + " " + r->body.substr(0, 200));
}
}  // namespace

// What anax PUTs (exchange-api.md §4.2): agentUpgradeInternal and workingDirectory left out.
Status Anax::put_exchange_status(const std::string& key, const Record& r) {
  auto body = json::object();
  json::set(body.get(), "agentUpgradePolicyStatus", policy_status_json(r));
  std::string url = options_.exchange_url + "/orgs/" + options_.org + "/nodes/" + options_.node +
                    "/managementStatus/" + nmp_of(key);
  return expect(send("PUT", url, json::print(body.get())), {201}, "PUT " + url);
}

Status Anax::delete_exchange_status(const std::string& nmp) {
  std::string url = options_.exchange_url + "/orgs/" + options_.org + "/nodes/" + options_.node +
                    "/managementStatus/" + nmp;
  return expect(send("DELETE", url), {204, 404}, "DELETE " + url);
}

// anax checks the Exchange's version before each status update.
bool Anax::exchange_up() {
  auto r = send("GET", options_.exchange_url + "/admin/version");
  return r && r->status == 200;
}

// ---- status changes -----------------------------------------------------------------------------

Status Anax::set_status(const std::string& key, const std::string& to, const std::string& error_message) {
  Record copy;
  {
    std::lock_guard lock(mu_);
    auto it = records_.find(key);
    if (it == records_.end()) return fail(Errc::not_found, "no node management status record for " + key);
    Record& r = it->second;
    if (r.status == to) return {};  // nothing saved, the error message neither
    r.status = to;
    r.error_message = error_message;
    if (to == to_string(MgmtStatus::initiated) && r.start_time.empty()) r.start_time = rfc3339_local_now();
    if (to == to_string(MgmtStatus::waiting)) {
      r.download_attempts = 0;
      r.start_time.clear();
      r.end_time.clear();
    }
    if (to == to_string(MgmtStatus::successful)) {
      r.end_time = rfc3339_local_now();
      recorded_version_ = running_version();  // common/node_management.go SetAgentVersion
      std::error_code ec;
      fs::remove_all(job_dir(key), ec);
    }
    if (auto st = save_locked(); !st) return st;
    copy = r;
  }
  if (to == to_string(MgmtStatus::successful)) {
    std::string url = options_.exchange_url + "/orgs/" + options_.org + "/nodes/" + options_.node;
    std::string body = R"({"softwareVersions":{"horizon":")" + recorded_version() + R"("}})";
    if (auto st = expect(send("PATCH", url, body), {201}, "PATCH " + url); !st) return st;
  }
  return put_exchange_status(key, copy);
}

bool Anax::advance(const std::string& key, const std::string& from, const std::string& to,
                   const std::string& error_message) {
  Record copy;
  {
    std::lock_guard lock(mu_);
    auto it = records_.find(key);
    if (it == records_.end() || it->second.status != from) return false;
    it->second.status = to;
    it->second.error_message = error_message;
    if (auto st = save_locked(); !st)
      std::fprintf(stderr, "anax-standin: %s\n", st.error().describe().c_str());
    copy = it->second;
  }
  if (auto st = put_exchange_status(key, copy); !st)
    std::fprintf(stderr, "anax-standin: %s\n", st.error().describe().c_str());
  return true;
}

// ---- the local API -------------------------------------------------------------------------------

Reply Anax::handle(const Call& call) {
  auto s = standin::split_path(call.path);
  const std::string& m = call.method;
  const std::size_t n = s.size();
  if (n == 1 && s[0] == "status" && m == "GET") return get_status_route();
  if (n == 1 && s[0] == "node" && m == "GET") return get_node_route();
  if (n >= 2 && s[0] == "nodemanagement") {
    // {nmp} alone is in the node's org.
    std::string key = n == 3 ? options_.org + "/" + s[2] : n == 4 ? s[2] + "/" + s[3] : "";
    if (s[1] == "status" && n <= 4) {
      if (m == "GET") return get_records(key);
      if (m == "PUT" && n >= 3) return put_status(call, key);
    }
    if (s[1] == "nextjob" && n == 2 && m == "GET") return next_job(call);
    if (s[1] == "reset" && n <= 4 && m == "PUT") return reset(key);
  }
  return error_reply(404, "unknown route " + m + " " + call.path);
}

Reply Anax::get_status_route() {
  auto conf = json::object();
  json::set(conf.get(), "exchange_api", options_.exchange_url + "/");
  json::set(conf.get(), "mms_api", options_.css_url);
  json::set(conf.get(), "architecture", options_.arch);
  json::set(conf.get(), "horizon_version", running_version());
  auto o = json::object();
  json::set(o.get(), "configuration", std::move(conf));
  json::set(o.get(), "connectivity", json::object());
  return json_reply(200, o.get());
}

Reply Anax::get_node_route() {
  auto o = json::object();
  json::set(o.get(), "id", options_.node);
  json::set(o.get(), "organization", options_.org);
  json::set(o.get(), "pattern", "");
  json::set(o.get(), "name", options_.node);
  json::set(o.get(), "nodeType", "device");
  {
    std::lock_guard lock(mu_);
    json::set(o.get(), "ha_group", ha_group_);
  }
  auto config = json::object();
  json::set(config.get(), "state", "configured");
  json::set(config.get(), "last_update_time", 0);
  json::set(o.get(), "configstate", std::move(config));
  return json_reply(200, o.get());
}

Reply Anax::get_records(const std::string& key) {
  std::lock_guard lock(mu_);
  auto map = json::object();
  for (const auto& [k, r] : records_)
    if (key.empty() || k == key) json::set(map.get(), k.c_str(), record_to_json(r, options_.work_dir));
  if (!key.empty() && !records_.count(key))
    return error_reply(404, "Unable to find the status for nmp " + key + ".");
  return json_reply(200, map.get());
}

// GET /nodemanagement/nextjob?type=agentUpgrade&ready=true|false: the job with the
// earliest scheduled time that is `downloaded` (ready) or `waiting` (not ready), any when
// ready is empty.
Reply Anax::next_job(const Call& call) {
  auto param = [&](const char* name) {
    auto it = call.params.find(name);
    return it == call.params.end() ? std::string() : it->second;
  };
  std::string type = param("type"), ready = param("ready");
  if (!type.empty() && type != "agentUpgrade") return error_reply(500, "unsupported job type " + type);
  if (!ready.empty() && ready != "true" && ready != "false")
    return error_reply(500, "bad ready value " + ready);
  std::lock_guard lock(mu_);
  const std::pair<const std::string, Record>* best = nullptr;
  for (const auto& kv : records_) {
    const std::string& st = kv.second.status;
    if ((ready == "true" && st != to_string(MgmtStatus::downloaded)) ||
        (ready == "false" && st != to_string(MgmtStatus::waiting)))
      continue;
    if (!best || kv.second.scheduled_unix < best->second.scheduled_unix) best = &kv;
  }
  auto map = json::object();
  if (best) json::set(map.get(), best->first.c_str(), record_to_json(best->second, options_.work_dir));
  return json_reply(200, map.get());
}

Reply Anax::put_status(const Call& call, const std::string& key) {
  auto body = json::parse(call.body, "request body");
  if (!body || !cJSON_IsObject(body->get()))
    return error_reply(400, "Input body couldn't be deserialized to nmp status object.");
  if (!exchange_up()) return error_reply(500, "Unable to reach the Exchange to check its version.");
  {
    std::lock_guard lock(mu_);
    if (!records_.count(key)) return error_reply(404, "Unable to find the status for nmp " + key + ".");
  }
  const std::string done = "Updated status for NMP " + key + ".";
  // Only the nested form is read: a flat {"status":..} leaves AgentUpgrade nil, a no-op.
  const cJSON* upgrade = cJSON_GetObjectItemCaseSensitive(body->get(), "agentUpgradePolicyStatus");
  if (!cJSON_IsObject(upgrade)) return string_reply(201, done);
  auto to = json::opt_string(upgrade, "status");
  auto error_message = json::opt_string(upgrade, "errorMessage");
  if (!to || !error_message)
    return error_reply(400, "Input body couldn't be deserialized to nmp status object.");
  if (to->empty()) return string_reply(201, done);
  if (auto st = set_status(key, *to, *error_message); !st) {
    if (st.error().code == Errc::not_found) return error_reply(404, st.error().message);
    return error_reply(500, "Failed to update the node management status: " + st.error().message);
  }
  return string_reply(201, done);
}

Reply Anax::reset(const std::string& key) {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mu_);
    if (!key.empty() && !records_.count(key))
      return error_reply(404, "Unable to find the status for nmp " + key + ".");
    for (const auto& [k, r] : records_)
      if (key.empty() || k == key) keys.push_back(k);
  }
  for (const auto& k : keys)
    if (auto st = set_status(k, to_string(MgmtStatus::waiting), ""); !st)
      return error_reply(500, "Failed to reset the node management status: " + st.error().message);
  return string_reply(200, "Reset the status of " + (key.empty() ? std::string("all NMPs") : key) + ".");
}

// ---- the NMP worker ------------------------------------------------------------------------------

void Anax::worker_pass() {
  std::lock_guard pass(worker_mu_);
  auto node = read_node();
  if (!node) {
    std::fprintf(stderr, "anax-standin: cannot read the node: %s\n", node.error().describe().c_str());
    return;
  }
  {
    std::lock_guard lock(mu_);
    ha_group_ = node->ha_group;
  }
  take_policies(*node);
  sync_exchange_statuses();
  ask_agbot(*node);
  start_next_job(*node);
}

Result<Anax::NodeInfo> Anax::read_node() {
  std::string url = options_.exchange_url + "/orgs/" + options_.org + "/nodes/" + options_.node;
  auto r = send("GET", url);
  if (auto st = expect(r, {200}, "GET " + url); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "node");
  if (!root) return std::unexpected(root.error());
  const cJSON* nodes = cJSON_GetObjectItemCaseSensitive(root->get(), "nodes");
  const cJSON* me = cJSON_GetObjectItemCaseSensitive(nodes, (options_.org + "/" + options_.node).c_str());
  if (!cJSON_IsObject(me)) return fail(Errc::parse, "GET " + url + ": the node is not in the answer");
  return NodeInfo{str(me, "ha_group"), str(me, "pattern")};
}

// anax VerifyCompatible: patterns when either side has one; else the NMP's constraints
// against the node policy's properties (the reverse direction is not modelled).
bool Anax::compatible(const cJSON* policy, const NodeInfo& node) {
  auto patterns = json::opt_string_array(policy, "patterns").value_or(std::vector<std::string>{});
  if (!patterns.empty() || !node.pattern.empty())
    return std::find(patterns.begin(), patterns.end(), node.pattern) != patterns.end();
  auto constraints = json::opt_string_array(policy, "constraints").value_or(std::vector<std::string>{});
  if (constraints.empty()) return true;
  Properties props;
  std::string url = options_.exchange_url + "/orgs/" + options_.org + "/nodes/" + options_.node + "/policy";
  auto r = send("GET", url);
  if (r && r->status == 200) {
    if (auto root = json::parse(r->body, "node policy")) {
      auto add = [&props](const cJSON* list) {
        const cJSON* p = nullptr;
        cJSON_ArrayForEach(p, list) {
          const cJSON* v = cJSON_GetObjectItemCaseSensitive(p, "value");
          std::string name = str(p, "name");
          if (cJSON_IsString(v))
            props[name] = str(p, "type") == "version" ? PropertyValue::of_version(v->valuestring)
                                                      : PropertyValue::of_string(v->valuestring);
          else if (cJSON_IsNumber(v))
            props[name] = PropertyValue::of_number(v->valuedouble);
          else if (cJSON_IsBool(v))
            props[name] = PropertyValue::of_bool(cJSON_IsTrue(v));
        }
      };
      add(cJSON_GetObjectItemCaseSensitive(root->get(), "properties"));
      add(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root->get(), "management"),
                                           "properties"));
    }
  }
  auto ok = evaluate_constraints(constraints, props);
  return ok && *ok;
}

// anax ProcessAllNMPS: a `waiting` record for each enabled, compatible NMP it has none
// for; a disabled NMP loses its record and its Exchange status.
void Anax::take_policies(const NodeInfo& node) {
  std::string url = options_.exchange_url + "/orgs/" + options_.org + "/managementpolicies";
  auto r = send("GET", url);
  if (!r || (r->status != 200 && r->status != 404)) return;
  auto root = json::parse(r->body, "management policies");
  if (!root) return;
  const cJSON* policy = nullptr;
  cJSON_ArrayForEach(policy, cJSON_GetObjectItemCaseSensitive(root->get(), "managementPolicy")) {
    std::string key = policy->string;
    if (!json::opt_bool(policy, "enabled", false).value_or(false)) {
      bool had = false;
      {
        std::lock_guard lock(mu_);
        had = records_.erase(key) > 0;
        if (had) (void)save_locked();
      }
      if (had) (void)delete_exchange_status(nmp_of(key));
      continue;
    }
    {
      std::lock_guard lock(mu_);
      if (records_.count(key)) continue;
    }
    if (!compatible(policy, node)) continue;
    // exchangecommon SetScheduledStartTime: start ("now" or RFC3339) + rand[0, startWindow).
    std::string start = str(policy, "start");
    std::int64_t at = unix_now();
    if (!start.empty() && start != "now") {
      Wall t;
      if (!parse_time(start, &t)) continue;  // anax's validation rejects the NMP
      at = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
    }
    std::int64_t window = json::opt_int(policy, "startWindow", 0).value_or(0);
    if (window > 0) {
      static thread_local std::mt19937_64 rng(std::random_device{}());
      at += std::uniform_int_distribution<std::int64_t>(0, window - 1)(rng);
    }
    const cJSON* upgrade = cJSON_GetObjectItemCaseSensitive(policy, "agentUpgradePolicy");
    Record rec;
    rec.status = to_string(MgmtStatus::waiting);
    rec.scheduled_unix = at;
    rec.scheduled_time = rfc3339_utc(at);
    rec.manifest = str(upgrade, "manifest");
    rec.allow_downgrade = json::opt_bool(upgrade, "allowDowngrade", false).value_or(false);
    {
      std::lock_guard lock(mu_);
      if (records_.count(key)) continue;
      records_[key] = rec;
      (void)save_locked();
    }
    if (auto st = put_exchange_status(key, rec); !st)
      std::fprintf(stderr, "anax-standin: %s\n", st.error().describe().c_str());
  }
}

// anax deletes Exchange statuses it has no record of, obeys `reset`, and its own
// writes overwrite whatever else someone wrote.
void Anax::sync_exchange_statuses() {
  std::string url =
      options_.exchange_url + "/orgs/" + options_.org + "/nodes/" + options_.node + "/managementStatus";
  auto r = send("GET", url);
  if (!r || (r->status != 200 && r->status != 404)) return;
  auto root = json::parse(r->body, "management statuses");
  if (!root) return;
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root->get(), "managementStatus")) {
    std::string key = item->string;
    std::string theirs = str(cJSON_GetObjectItemCaseSensitive(item, "agentUpgradePolicyStatus"), "status");
    std::optional<Record> mine;
    {
      std::lock_guard lock(mu_);
      if (auto it = records_.find(key); it != records_.end()) mine = it->second;
    }
    Status st;
    if (!mine)
      st = delete_exchange_status(nmp_of(key));
    else if (theirs == "reset" && mine->status != to_string(MgmtStatus::waiting))
      st = set_status(key, to_string(MgmtStatus::waiting), "");
    else if (theirs != mine->status)
      st = put_exchange_status(key, *mine);
    if (!st) std::fprintf(stderr, "anax-standin: %s\n", st.error().describe().c_str());
  }
}

// `ha node waiting` -> `downloaded` once the agbot grants the group's lock (without a
// group: at once). Asked again each pass until then (exchange-api.md §7.2).
void Anax::ask_agbot(const NodeInfo& node) {
  std::vector<std::string> waiting;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, r] : records_)
      if (r.status == to_string(MgmtStatus::ha_node_waiting)) waiting.push_back(k);
  }
  for (const auto& key : waiting) {
    if (!node.ha_group.empty()) {
      std::string url = options_.agbot_url + "/org/" + options_.org + "/hagroup/" + node.ha_group +
                        "/nodemanagement/" + options_.node + "/" + nmp_of(key);
      auto r = send("POST", url);
      if (!r || r->status != 201) continue;
    }
    advance(key, to_string(MgmtStatus::ha_node_waiting), to_string(MgmtStatus::downloaded));
  }
}

// checkNMPTimeToRun: nothing starts while a job is active; else the earliest `waiting`
// job whose time has come is downloaded.
void Anax::start_next_job(const NodeInfo& node) {
  std::string key;
  Record rec;
  {
    std::lock_guard lock(mu_);
    std::int64_t now = unix_now();
    for (const auto& [k, r] : records_) {
      if (busy(r.status)) return;
      if (r.status == to_string(MgmtStatus::waiting) && r.scheduled_unix <= now &&
          (key.empty() || r.scheduled_unix < rec.scheduled_unix)) {
        key = k;
        rec = r;
      }
    }
  }
  if (key.empty() || !advance(key, to_string(MgmtStatus::waiting), to_string(MgmtStatus::download_started)))
    return;
  std::string error_message;
  std::string to = download(key, &rec, node);
  if (to == to_string(MgmtStatus::waiting) || to == to_string(MgmtStatus::download_failed))
    error_message = rec.error_message;
  Record copy;
  {
    std::lock_guard lock(mu_);
    auto it = records_.find(key);
    if (it == records_.end() || it->second.status != to_string(MgmtStatus::download_started)) return;
    it->second.software_version = rec.software_version;
    it->second.download_attempts = rec.download_attempts;
    it->second.status = to;
    it->second.error_message = error_message;
    (void)save_locked();
    copy = it->second;
  }
  if (auto st = put_exchange_status(key, copy); !st)
    std::fprintf(stderr, "anax-standin: %s\n", st.error().describe().c_str());
}

// The download worker: the manifest from the CSS, then this node's bundle
// (horizon-agent-linux-{deb|rpm}-{arch}.tar.gz) into <work_dir>/<org>/<nmp>/.
std::string Anax::download(const std::string& key, Record* rec, const NodeInfo& node) {
  const std::string dir = job_dir(key);
  auto failed = [&](const std::string& why) {
    rec->error_message = why;
    return ++rec->download_attempts < kMaxDownloadAttempts ? to_string(MgmtStatus::waiting)
                                                           : to_string(MgmtStatus::download_failed);
  };
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return failed("cannot create " + dir + ": " + ec.message());
  auto slash = rec->manifest.find('/');
  if (slash == std::string::npos) return failed("bad manifest reference '" + rec->manifest + "'");
  std::string url = options_.css_url + "/api/v1/objects/" + rec->manifest.substr(0, slash) +
                    "/agent_upgrade_manifests/" + rec->manifest.substr(slash + 1) + "/data";
  auto r = send("GET", url);
  if (auto st = expect(r, {200}, "GET " + url); !st) return failed(st.error().message);
  auto manifest = json::parse(r->body, "manifest");
  if (!manifest) return failed(manifest.error().message);
  const cJSON* software = cJSON_GetObjectItemCaseSensitive(manifest->get(), "softwareUpgrade");
  std::string version = str(software, "version");
  int order = compare_package_versions(version, recorded_version());
  if (version.empty() || order == 0 || (order < 0 && !rec->allow_downgrade)) {
    fs::remove_all(dir, ec);
    return to_string(MgmtStatus::no_action_required);
  }
  rec->software_version = version;
  const std::string bundle = "horizon-agent-linux-" + options_.package_type + "-" + options_.arch + ".tar.gz";
  for (const auto& file : json::opt_string_array(software, "files").value_or(std::vector<std::string>{})) {
    if (file != bundle) continue;
    std::string file_url =
        options_.css_url + "/api/v1/objects/IBM/agent_software_files-" + version + "/" + file + "/data";
    auto got = send("GET", file_url, "", 512u * 1024 * 1024);
    if (auto st = expect(got, {200}, "GET " + file_url); !st) return failed(st.error().message);
    if (auto st = write_file_atomic(dir + "/" + file, got->body, 0644); !st)
      return failed(st.error().message);
    auto line = json::object();
    json::set(line.get(), "nmp", key);
    json::set(line.get(), "version", version);
    json::set(line.get(), "file", file);
    json::set(line.get(), "bytes", static_cast<std::int64_t>(got->body.size()));
    log_line(options_.download_log, std::move(line));
  }
  return node.ha_group.empty() ? to_string(MgmtStatus::downloaded) : to_string(MgmtStatus::ha_node_waiting);
}

// ---- the cron executor (agent-auto-upgrade.sh) ---------------------------------------------------

void Anax::log_line(const std::string& path, json::Ptr line) {
  if (path.empty()) return;
  auto now = std::chrono::system_clock::now().time_since_epoch();
  json::set(line.get(), "tUs",
            static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now).count()));
  if (auto st = append_line(path, json::print(line.get())); !st)
    std::fprintf(stderr, "anax-standin: %s\n", st.error().describe().c_str());
}

void Anax::executor_pass() {
  std::lock_guard pass(executor_mu_);
  std::error_code ec;
  if (!fs::exists(options_.cron_file, ec)) return;
  std::string key;
  Record rec;
  {
    std::lock_guard lock(mu_);
    for (const auto& [k, r] : records_)
      if (r.status == to_string(MgmtStatus::downloaded) &&
          (key.empty() || r.scheduled_unix < rec.scheduled_unix)) {
        key = k;
        rec = r;
      }
  }
  if (key.empty()) return;
  auto line = json::object();
  json::set(line.get(), "event", "run");
  json::set(line.get(), "nmp", key);
  json::set(line.get(), "version", rec.software_version);
  log_line(options_.executor_log, std::move(line));
  if (auto st = set_status(key, to_string(MgmtStatus::initiated), ""); !st) {
    auto end = json::object();
    json::set(end.get(), "event", "error");
    json::set(end.get(), "nmp", key);
    json::set(end.get(), "error", st.error().message);
    log_line(options_.executor_log, std::move(end));
    return;
  }
  auto runner = make_process_runner([] { return false; });
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", options_.install_command.empty() ? "true" : options_.install_command};
  spec.env = {{"ANAX_NMP", key}, {"ANAX_VERSION", rec.software_version}, {"ANAX_WORK_DIR", job_dir(key)}};
  auto result = runner->run(spec);
  int code = result ? result->exit_code : -1;
  std::string output = result ? output_tail(result->output, 300) : result.error().message;
  auto st = code == 0 ? set_status(key, to_string(MgmtStatus::successful), "")
                      : set_status(key, to_string(MgmtStatus::failed), output);
  auto end = json::object();
  json::set(end.get(), "event", "done");
  json::set(end.get(), "nmp", key);
  json::set(end.get(), "exit", code);
  if (!st) json::set(end.get(), "error", st.error().message);
  log_line(options_.executor_log, std::move(end));
}

}  // namespace agentd::anax
