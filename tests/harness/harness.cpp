#include "harness/harness.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "agentd/files.h"
#include "agentd/json.h"

extern char** environ;

namespace agentd::harness {

namespace fs = std::filesystem;

[[noreturn]] void die(const std::string& what) {
  throw std::runtime_error(what);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.pop_back();
  std::size_t i = s.find_first_not_of(" \t\r\n");
  return i == std::string::npos ? std::string() : s.substr(i);
}

namespace {

bool has_prefix(const std::string& s, const char* p) {
  return s.rfind(p, 0) == 0;
}

std::string json_string_array(const std::vector<std::string>& items) {
  auto a = json::array();
  for (const auto& i : items) json::append(a.get(), i);
  return json::print(a.get());
}

// Environment for a child: ours minus HZN_* and AGENTD_*, then `extra` (which wins).
std::vector<std::string> child_environment(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    if (has_prefix(kv, "HZN_") || has_prefix(kv, "AGENTD_")) continue;
    std::string name = kv.substr(0, kv.find('='));
    bool replaced = false;
    for (const auto& [k, v] : extra) replaced = replaced || k == name;
    if (!replaced) out.push_back(kv);
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- time and files

Deadline deadline_in(std::chrono::milliseconds d) {
  return std::chrono::steady_clock::now() + d;
}

bool poll_until(Deadline deadline, const std::function<bool()>& predicate,
                std::chrono::milliseconds interval) {
  for (;;) {
    if (predicate()) return true;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(interval, deadline - now));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string slurp(const std::string& path) {
  auto r = agentd::read_file(path, 64u * 1024 * 1024);
  if (!r) die(r.error().describe());
  return *r;
}

void write_file(const std::string& path, const std::string& content, unsigned mode) {
  fs::create_directories(fs::path(path).parent_path());
  // Write beside and rename, so a reader (agentd, the fake agent) never sees half a file.
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) die("cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = ::fchmod(fd, mode) == 0 &&
            ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    die("cannot write " + path + ": " + std::strerror(errno));
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

std::vector<std::string> grep_lines(const std::string& path, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t n = 0; n < lines && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

std::vector<std::string> lease_holders(const GroupDocument& doc) {
  std::vector<std::string> out;
  for (const auto& [node, e] : doc.entries)
    if (holds_lease(e.state)) out.push_back(node);
  return out;
}

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + ".XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp failed: " + std::string(std::strerror(errno)));
  path_ = tmpl;
  keep_ = std::getenv("AGENTD_KEEP_TEST_DIRS") != nullptr;
}

TempDir::~TempDir() {
  if (keep_) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

// ---------------------------------------------------------------- processes

Process::Process(std::vector<std::string> argv, const std::vector<std::pair<std::string, std::string>>& env,
                 std::string output_file)
    : output_file_(std::move(output_file)) {
  if (argv.empty()) die("Process: empty argv");
  // Everything the child needs is built before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> envs = child_environment(env);
  std::vector<char*> argp, envp;
  for (auto& a : argv) argp.push_back(a.data());
  argp.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  int out = ::open(output_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) die("cannot open " + output_file_ + ": " + std::strerror(errno));
  int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    ::close(out);
    ::close(in);
    die("fork failed: " + std::string(std::strerror(errno)));
  }
  if (pid_ == 0) {
    // Die with the test process, whatever kills it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execve(argp[0], argp.data(), envp.data());
    const char msg[] = "exec failed\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(out);
  ::close(in);
}

Process::~Process() {
  if (!exit_) kill9();
}

bool Process::reap(bool block) {
  if (exit_) return true;
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  ExitStatus s;
  if (r == pid_ && WIFEXITED(st)) s.code = WEXITSTATUS(st);
  if (r == pid_ && WIFSIGNALED(st)) s.signal = WTERMSIG(st);
  exit_ = s;
  return true;
}

bool Process::running() {
  return !reap(false);
}

void Process::signal(int sig) {
  if (!reap(false)) ::kill(pid_, sig);
}

std::optional<ExitStatus> Process::wait(Deadline deadline) {
  poll_until(
      deadline, [this] { return reap(false); }, 20ms);
  return exit_;
}

ExitStatus Process::kill9() {
  if (!reap(false)) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
  return *exit_;
}

CommandResult run_command(std::vector<std::string> argv,
                          const std::vector<std::pair<std::string, std::string>>& env,
                          const std::string& output_file, std::chrono::milliseconds timeout) {
  write_file(output_file, "");
  Process p(std::move(argv), env, output_file);
  auto st = p.wait(deadline_in(timeout));
  CommandResult r;
  r.status = st ? *st : p.kill9();
  r.output = p.output();
  return r;
}

// ---------------------------------------------------------------- hub

Hub::Hub(std::string dir, HubOptions options) : dir_(std::move(dir)), options_(std::move(options)) {
  fs::create_directories(dir_);
  start(0);
}

Hub::~Hub() = default;

std::string Hub::exchange_url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
}
std::string Hub::agbot_url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}
std::string Hub::css_url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/css";
}
std::string Hub::output_path() const {
  return dir_ + "/hub." + std::to_string(runs_) + ".out";
}

namespace {

// Starts a stand-in that prints "listening port=N" and returns N. `spawn` starts
// one run on the port it is given. On a restart the old port may be briefly
// unavailable: tries again until the deadline; a first start (port 0) that fails
// is reported at once.
int start_listening(const std::string& what, int port, const std::function<Process&(int)>& spawn) {
  auto deadline = deadline_in(15s);
  std::string last_output;
  for (;;) {
    Process& process = spawn(port);
    int found = 0;
    poll_until(
        deadline,
        [&] {
          std::string out = process.output();
          auto at = out.find("listening port=");
          if (at != std::string::npos && out.find('\n', at) != std::string::npos) {
            found = std::atoi(out.c_str() + at + std::strlen("listening port="));
            return true;
          }
          return !process.running();
        },
        20ms);
    if (found > 0) return found;
    last_output = process.output();
    process.kill9();
    if (port == 0 || std::chrono::steady_clock::now() >= deadline)
      die(what + " did not start (port " + std::to_string(port) + "): " + last_output);
    std::this_thread::sleep_for(200ms);  // the port is still taken: back off before the next try
  }
}

}  // namespace

void Hub::start(int port) {
  port_ = start_listening("exchange-standin", port, [this](int p) -> Process& {
    ++runs_;
    process_ = std::make_unique<Process>(
        std::vector<std::string>{STANDIN_BIN, "--port", std::to_string(p), "--bind", "127.0.0.1", "--state",
                                 state_path(), "--log", write_log_path(), "--root-password",
                                 options_.root_password, "--mode", options_.mode, "--agbot-log",
                                 agbot_log_path(), "--agbot-interval", options_.agbot_interval_seconds},
        std::vector<std::pair<std::string, std::string>>{}, output_path());
    return *process_;
  });
}

void Hub::stop() {
  if (!process_) return;
  process_->signal(SIGTERM);
  if (!process_->wait(deadline_in(10s))) process_->kill9();
}

void Hub::kill9() {
  if (process_) process_->kill9();
}

void Hub::restart() {
  if (process_ && process_->running()) stop();
  start(port_);
}

namespace {

// One request to a stand-in on 127.0.0.1:`port`; `auth` nullopt sends no credentials.
HttpResult http_request(int port, const std::string& method, const std::string& path, const std::string& body,
                        const std::optional<Credentials>& auth,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);
  cli.set_keep_alive(false);
  if (auth) cli.set_basic_auth(auth->user, auth->password);
  httplib::Headers h{{"Accept", "application/json"}};
  for (const auto& [k, v] : headers) h.emplace(k, v);
  const char* type = "application/json";
  auto send = [&]() -> httplib::Result {
    if (method == "GET") return cli.Get(path, h);
    if (method == "PUT") return cli.Put(path, h, body, type);
    if (method == "POST") return cli.Post(path, h, body, type);
    if (method == "PATCH") return cli.Patch(path, h, body, type);
    if (method == "DELETE") return cli.Delete(path, h);
    die("unsupported method " + method);
  };
  httplib::Result r = send();
  HttpResult out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  for (const auto& [k, v] : r->headers) out.headers[k] = v;
  return out;
}

}  // namespace

HttpResult Hub::request(const std::string& method, const std::string& path, const std::string& body,
                        std::optional<Credentials> auth,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  return http_request(port_, method, path, body, auth ? *auth : root(), headers);
}

void Hub::expect(const HttpResult& r, std::initializer_list<int> ok, const std::string& what) {
  for (int s : ok)
    if (r.status == s) return;
  die(what + ": hub answered " + std::to_string(r.status) + " " + r.body);
}

void Hub::create_org(const std::string& org) {
  auto b = json::object();
  json::set(b.get(), "label", org);
  json::set(b.get(), "description", "org " + org);
  expect(request("POST", "/v1/orgs/" + org, json::print(b.get())), {201}, "create org " + org);
}

void Hub::create_user(const std::string& org, const std::string& user, const std::string& password,
                      bool admin) {
  auto b = json::object();
  json::set(b.get(), "password", password);
  json::set(b.get(), "admin", admin);
  json::set(b.get(), "email", user + "@example.com");
  expect(request("POST", "/v1/orgs/" + org + "/users/" + user, json::print(b.get())), {201},
         "create user " + org + "/" + user);
}

void Hub::create_node(const std::string& org, const std::string& node, const std::string& token,
                      const Credentials& owner, const std::string& version) {
  auto b = json::object();
  json::set(b.get(), "token", token);
  json::set(b.get(), "name", node);
  json::set(b.get(), "pattern", "");
  json::set(b.get(), "arch", "amd64");
  json::set(b.get(), "publicKey", "");
  auto sv = json::object();
  json::set(sv.get(), "horizon", version);
  json::set(b.get(), "softwareVersions", std::move(sv));
  expect(request("PUT", "/v1/orgs/" + org + "/nodes/" + node, json::print(b.get()), owner), {201},
         "create node " + org + "/" + node);
}

void Hub::create_group(const std::string& org, const std::string& group,
                       const std::vector<std::string>& members, std::optional<Credentials> as) {
  std::string body =
      "{\"description\":\"group " + group + "\",\"members\":" + json_string_array(members) + "}";
  expect(request("POST", "/v1/orgs/" + org + "/hagroups/" + group, body, std::move(as)), {201},
         "create group " + group);
}

void Hub::add_member(const std::string& org, const std::string& group, const std::string& node,
                     std::optional<Credentials> as) {
  expect(request("POST", "/v1/orgs/" + org + "/hagroups/" + group + "/nodes/" + node, "", std::move(as)),
         {201}, "add " + node + " to " + group);
}

void Hub::remove_member(const std::string& org, const std::string& group, const std::string& node,
                        std::optional<Credentials> as) {
  expect(request("DELETE", "/v1/orgs/" + org + "/hagroups/" + group + "/nodes/" + node, "", std::move(as)),
         {204}, "remove " + node + " from " + group);
}

void Hub::put_agent_file_versions(const std::vector<std::string>& software_versions) {
  std::string body = "{\"agentSoftwareVersions\":" + json_string_array(software_versions) +
                     ",\"agentConfigVersions\":[],\"agentCertVersions\":[]}";
  auto r = request("PUT", "/v1/orgs/IBM/AgentFileVersion", body);
  if (r.status == 404) {  // the org IBM does not exist yet on this hub
    create_org("IBM");
    r = request("PUT", "/v1/orgs/IBM/AgentFileVersion", body);
  }
  expect(r, {201}, "put AgentFileVersion");
}

void Hub::put_manifest(const std::string& org, const std::string& id, const std::string& software_version) {
  // The data alone: an unsigned manifest (put_signed_manifest adds metadata).
  std::string path = "/css/api/v1/objects/" + org + "/agent_upgrade_manifests/" + id;
  std::string data = "{\"softwareUpgrade\":{\"files\":[],\"version\":\"" + software_version +
                     "\"},\"certificateUpgrade\":{\"files\":[],\"version\":\"latest\"},"
                     "\"configurationUpgrade\":{\"files\":[],\"version\":\"latest\"}}";
  expect(request("PUT", path + "/data", data), {200, 201, 204}, "put manifest data " + id);
}

void Hub::put_object(const std::string& org, const std::string& type, const std::string& id,
                     const std::string& data, const std::string& signature_b64,
                     const std::string& description) {
  std::string path = "/css/api/v1/objects/" + org + "/" + type + "/" + id;
  expect(request("PUT", path + "/data", data), {204}, "put object data " + path);
  auto meta = json::object();
  json::set(meta.get(), "objectID", id);
  json::set(meta.get(), "objectType", type);
  json::set(meta.get(), "description", description);
  json::set(meta.get(), "hashAlgorithm", signature_b64.empty() ? "" : "SHA256");
  json::set(meta.get(), "signature", signature_b64);
  auto body = json::object();
  json::set(body.get(), "meta", std::move(meta));
  expect(request("PUT", path, json::print(body.get())), {204}, "put object metadata " + path);
}

void Hub::put_signed_manifest(const std::string& org, const std::string& id, const std::string& manifest_json,
                              const std::string& signature_b64) {
  put_object(org, "agent_upgrade_manifests", id, manifest_json, signature_b64);
}

void Hub::put_node_policy(const std::string& org, const std::string& node, const std::string& policy_json) {
  expect(request("PUT", "/v1/orgs/" + org + "/nodes/" + node + "/policy", policy_json), {201},
         "put node policy of " + org + "/" + node);
}

namespace {
std::string nmp_body(const std::string& name, const std::string& manifest_ref) {
  auto b = json::object();
  json::set(b.get(), "label", name);
  json::set(b.get(), "description", "upgrade the agent");
  json::set(b.get(), "constraints", json::array());
  json::set(b.get(), "patterns", json::array());
  json::set(b.get(), "enabled", true);
  json::set(b.get(), "start", "now");
  json::set(b.get(), "startWindow", 0);
  auto p = json::object();
  json::set(p.get(), "manifest", manifest_ref);
  json::set(p.get(), "allowDowngrade", false);
  json::set(b.get(), "agentUpgradePolicy", std::move(p));
  return json::print(b.get());
}
}  // namespace

void Hub::create_nmp(const std::string& org, const std::string& name, const std::string& manifest_ref) {
  expect(request("POST", "/v1/orgs/" + org + "/managementpolicies/" + name, nmp_body(name, manifest_ref)),
         {201}, "create NMP " + name);
}

void Hub::update_nmp(const std::string& org, const std::string& name, const std::string& manifest_ref) {
  expect(request("PUT", "/v1/orgs/" + org + "/managementpolicies/" + name, nmp_body(name, manifest_ref)),
         {201}, "update NMP " + name);
}

void Hub::set_faults(const Faults& f) {
  auto b = json::object();
  json::set(b.get(), "latencyMs", f.latency_ms);
  cJSON_AddNumberToObject(b.get(), "errorRate", f.error_rate);
  json::set(b.get(), "errorStatus", f.error_status);
  json::set(b.get(), "dropAfterCommit", f.drop_after_commit);
  json::set(b.get(), "resetAfterCommit", f.reset_after_commit);
  json::set(b.get(), "resetPathContains", f.reset_path_contains);
  auto parts = json::array();
  for (const auto& n : f.partitioned) json::append(parts.get(), n);
  json::set(b.get(), "partitioned", std::move(parts));
  json::set(b.get(), "corrupt", f.corrupt);
  auto body = json::object();
  json::set(body.get(), "kind", f.body.kind);
  json::set(body.get(), "afterBytes", static_cast<std::int64_t>(f.body.after_bytes));
  json::set(body.get(), "bytesPerSecond", static_cast<std::int64_t>(f.body.bytes_per_second));
  json::set(body.get(), "count", static_cast<std::int64_t>(f.body.count));
  json::set(body.get(), "pathContains", f.body.path_contains);
  json::set(b.get(), "body", std::move(body));
  expect(request("PUT", "/v1/standin/faults", json::print(b.get())), {200, 201, 204}, "set faults");
}

GroupDocument Hub::get_group(const std::string& org, const std::string& group) {
  auto r = request("GET", "/v1/orgs/" + org + "/hagroups/" + group);
  expect(r, {200}, "get group " + group);
  std::int64_t revision = 0;
  if (auto it = r.headers.find("ETag"); it != r.headers.end()) {
    auto rev = parse_etag(it->second);
    if (rev) revision = *rev;
  }
  auto doc = parse_group_document(r.body, revision);
  if (!doc) die("group document of " + group + ": " + doc.error().message);
  return *doc;
}

std::vector<AgbotLock> Hub::agbot_locks() {
  auto r = request("GET", "/ha/upgradingnode");
  expect(r, {200}, "list the agbot's locks");
  auto root = json::parse(r.body, "agbot locks");
  if (!root) die(root.error().message);
  std::vector<AgbotLock> out;
  const cJSON* row = nullptr;
  cJSON_ArrayForEach(row, root->get()) {
    auto field = [row](const char* key) { return json::opt_string(row, key).value_or(""); };
    out.push_back({field("orgId"), field("groupName"), field("nodeId"), field("nmpName")});
  }
  return out;
}

std::vector<AgbotLockEvent> Hub::agbot_lock_events() const {
  std::vector<AgbotLockEvent> out;
  std::istringstream in(read_file(agbot_log_path()));
  for (std::string line; std::getline(in, line);) {
    auto root = json::parse(line, "agbot lock log line");
    if (!root) die(agbot_log_path() + ": " + root.error().message);
    const cJSON* o = root->get();
    auto field = [o](const char* key) { return json::opt_string(o, key).value_or(""); };
    AgbotLockEvent e;
    e.seq = json::opt_int(o, "seq", 0).value_or(0);
    e.t_us = json::opt_int(o, "tUs", 0).value_or(0);
    e.op = field("op");
    e.org = field("org");
    e.group = field("group");
    e.node = field("node");
    e.nmp = field("nmp");
    e.reason = field("reason");
    out.push_back(std::move(e));
  }
  return out;
}

std::map<std::string, CallerStats> Hub::stats() {
  auto r = request("GET", "/v1/standin/stats");
  expect(r, {200}, "GET /v1/standin/stats");
  auto root = json::parse(r.body, "stand-in stats");
  if (!root) die(root.error().message);
  std::map<std::string, CallerStats> out;
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, cJSON_GetObjectItem(root->get(), "requests")) {
    auto n = [item](const char* key) { return json::opt_int(item, key, 0).value_or(0); };
    out[item->string] = CallerStats{n("total"),     n("notModified"), n("groupReads"),
                                    n("conflicts"), n("writes"),      n("fileReads")};
  }
  return out;
}

std::optional<ManagementStatus> Hub::get_management_status(const std::string& org, const std::string& node,
                                                           const std::string& nmp) {
  auto r = request("GET", "/v1/orgs/" + org + "/nodes/" + node + "/managementStatus/" + nmp);
  if (r.status == 404) return std::nullopt;
  expect(r, {200}, "get management status of " + node);
  auto root = json::parse(r.body, "management status");
  if (!root) die(root.error().message);
  auto map = json::get_object(root->get(), "managementStatus");
  if (!map) die("management status: " + map.error().message);
  const cJSON* one = cJSON_GetObjectItemCaseSensitive(*map, (org + "/" + nmp).c_str());
  if (!one) return std::nullopt;
  auto st = json::get_object(one, "agentUpgradePolicyStatus");
  if (!st) die("management status: " + st.error().message);
  auto str = [&](const char* key) {
    auto v = json::opt_string(*st, key);
    return v ? *v : std::string();
  };
  ManagementStatus s;
  s.scheduled_time = str("scheduledTime");
  s.start_time = str("startTime");
  s.end_time = str("endTime");
  s.status = str("status");
  s.error_message = str("errorMessage");
  if (const cJSON* uv = cJSON_GetObjectItemCaseSensitive(*st, "upgradedVersions")) {
    auto v = json::opt_string(uv, "softwareVersion");
    if (v) s.software_version = *v;
  }
  return s;
}

// ---------------------------------------------------------------- member

Member::Member(std::string dir, const Hub& hub, std::string org, std::string node, std::string token,
               MemberOptions options)
    : dir_(std::move(dir)),
      exchange_url_(hub.exchange_url()),
      css_url_(hub.css_url()),
      org_(std::move(org)),
      node_(std::move(node)),
      token_(std::move(token)),
      options_(std::move(options)) {
  fs::create_directories(state_dir());
  fs::permissions(state_dir(), fs::perms::owner_all, fs::perm_options::replace);
  fs::create_directories(metrics_dir());
  write_horizon();
  write_config();
  write_token(token_);
  write_agent_script();
  set_version(options_.initial_version);
}

Member::~Member() = default;

void Member::write_horizon() {
  std::string agent_port = options_.agent_port.empty() ? "" : "HZN_AGENT_PORT=" + options_.agent_port + "\n";
  write_file(horizon_path(), "HZN_EXCHANGE_URL=" + exchange_url_ + "\nHZN_FSS_CSSURL=" + css_url_ +
                                 "\nHZN_ORG_ID=" + org_ + "\nHZN_DEVICE_ID=" + node_ + "\n" + agent_port);
}

void Member::use_anax(const Anax& anax) {
  options_.agent_port = std::to_string(anax.port());
  write_horizon();
}

void Member::write_config() {
  const MemberOptions& o = options_;
  std::string agent = dir_ + "/agent.sh";
  std::string c;
  // Values with spaces are quoted, as in /etc/default files.
  auto line = [&c](const std::string& k, const std::string& v) {
    c += k + "=" + (v.find(' ') == std::string::npos ? v : "\"" + v + "\"") + "\n";
  };
  line("AGENTD_TOKEN_FILE", token_path());
  line("AGENTD_STATE_DIR", state_dir());
  line("AGENTD_METRICS_DIR", metrics_dir());  // never the machine's node_exporter directory
  line("AGENTD_LEASE_DURATION_SECONDS", o.lease_seconds);
  line("AGENTD_HEARTBEAT_SECONDS", o.heartbeat_seconds);
  line("AGENTD_IDLE_HEARTBEAT_SECONDS", o.idle_heartbeat_seconds);
  line("AGENTD_CHANGES_SECONDS", o.changes_seconds);
  line("AGENTD_FAST_POLL_SECONDS", o.fast_poll_seconds);
  line("AGENTD_POLL_SECONDS", o.poll_seconds);
  line("AGENTD_CONNECT_TIMEOUT_SECONDS", o.connect_timeout_seconds);
  line("AGENTD_HTTP_TIMEOUT_SECONDS", o.http_timeout_seconds);
  line("AGENTD_COMMAND_TIMEOUT_SECONDS", o.command_timeout_seconds);
  line("AGENTD_LOG_LEVEL", o.log_level);
  line("AGENTD_UPGRADE_METHOD", "commands");
  line("AGENTD_VERSION_COMMAND", agent + " version");
  line("AGENTD_PREPARE_COMMAND", agent + " prepare");
  line("AGENTD_INSTALL_COMMAND", agent + " install");
  line("AGENTD_RESTART_COMMAND", agent + " restart");
  line("AGENTD_HEALTH_COMMAND", agent + " health");
  line("AGENTD_ROLLBACK_COMMAND", agent + " rollback");
  for (const auto& [k, v] : o.extra) line(k, v);
  write_file(config_path(), c);
}

void Member::write_token(const std::string& token, unsigned mode) {
  write_file(token_path(), token + "\n", mode);
}

void Member::write_agent_script() {
  write_file(dir_ + "/agent.sh", R"SH(#!/bin/sh
# A fake node agent: its whole state is the files beside this script.
d=$(dirname "$0")
step=$1
if [ "$step" != version ]; then echo "$step ${AGENTD_TARGET_VERSION:-}" >> "$d/agent-calls.log"; fi
set_version() { printf '%s\n' "$1" > "$d/version.tmp" && mv "$d/version.tmp" "$d/version"; }
case "$step" in
  version) cat "$d/version" ;;
  prepare) exit 0 ;;
  install)
    if [ -f "$d/install-delay" ]; then sleep "$(cat "$d/install-delay")"; fi
    if [ -f "$d/fail-install" ]; then echo "install failed: fail-install is set" >&2; exit 1; fi
    set_version "$AGENTD_TARGET_VERSION" ;;
  restart) exit 0 ;;
  health)
    if [ -f "$d/fail-health" ]; then echo "health check failed: fail-health is set" >&2; exit 1; fi ;;
  rollback) set_version "$AGENTD_PREVIOUS_VERSION" ;;
  *) echo "unknown step '$step'" >&2; exit 2 ;;
esac
)SH",
             0755);
}

std::string Member::version() const {
  return trim(read_file(dir_ + "/version"));
}
void Member::set_version(const std::string& v) {
  write_file(dir_ + "/version", v + "\n");
}

namespace {
void switch_file(const std::string& path, bool on, const std::string& content = "") {
  if (on) {
    write_file(path, content);
  } else {
    std::error_code ec;
    fs::remove(path, ec);
  }
}
}  // namespace

void Member::fail_install(bool on) {
  switch_file(dir_ + "/fail-install", on);
}
void Member::fail_health(bool on) {
  switch_file(dir_ + "/fail-health", on);
}
void Member::install_delay(double seconds) {
  switch_file(dir_ + "/install-delay", seconds > 0, std::to_string(seconds) + "\n");
}

int Member::agent_calls(const std::string& step) const {
  int n = 0;
  for (const auto& l : grep_lines(agent_calls_path(), step + " "))
    if (l.rfind(step + " ", 0) == 0) ++n;
  return n;
}

void Member::start(std::vector<std::string> extra_args,
                   const std::vector<std::pair<std::string, std::string>>& env) {
  if (process_ && process_->running()) die("agentd of " + node_ + " is already running");
  std::vector<std::string> argv{AGENTD_BIN,     "--config",    config_path(), "--horizon-file",
                                horizon_path(), "--state-dir", state_dir()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<Process>(std::move(argv), env, log_path());
}

bool Member::running() {
  return process_ && process_->running();
}

void Member::stop(std::chrono::milliseconds grace) {
  if (!process_) return;
  process_->signal(SIGTERM);
  if (!process_->wait(deadline_in(grace))) process_->kill9();
}

ExitStatus Member::kill9() {
  if (!process_) die("agentd of " + node_ + " was never started");
  return process_->kill9();
}

std::optional<ExitStatus> Member::wait_exit(Deadline deadline) {
  if (!process_) die("agentd of " + node_ + " was never started");
  return process_->wait(deadline);
}

// ---------------------------------------------------------------- anax

Anax::Anax(std::string dir, const Hub& hub, const Member& member, std::string org, const AnaxOptions& options)
    : dir_(std::move(dir)) {
  fs::create_directories(dir_);
  std::string install = options.install_command.empty()
                            ? "AGENTD_TARGET_VERSION=\"$ANAX_VERSION\" " + member.dir() + "/agent.sh install"
                            : "MEMBER_DIR='" + member.dir() + "'; " + options.install_command;
  const std::string version_file =
      options.version_file.empty() ? member.version_path() : member.dir() + "/" + options.version_file;
  argv_ = {ANAX_STANDIN_BIN,
           "--bind",
           "127.0.0.1",
           "--state",
           state_path(),
           "--exchange-url",
           hub.exchange_url(),
           "--css-url",
           hub.css_url(),
           "--agbot-url",
           hub.agbot_url(),
           "--org",
           std::move(org),
           "--node",
           member.node(),
           "--token-file",
           member.token_path(),
           "--work-dir",
           work_dir(),
           "--version-file",
           version_file,
           "--initial-version",
           member.version(),
           "--package-type",
           options.package_type,
           "--arch",
           options.arch,
           "--interval",
           options.interval_seconds,
           "--cron-file",
           cron_path(),
           "--cron-interval",
           options.cron_interval_seconds,
           "--install-command",
           install,
           "--executor-log",
           executor_log_path(),
           "--download-log",
           download_log_path()};
  set_cron_file(options.cron_file);
  start(0);
}

Anax::~Anax() = default;

std::string Anax::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string Anax::output_path() const {
  return dir_ + "/anax." + std::to_string(runs_) + ".out";
}

void Anax::start(int port) {
  port_ = start_listening("anax-standin", port, [this](int p) -> Process& {
    ++runs_;
    std::vector<std::string> argv = argv_;
    argv.insert(argv.end(), {"--port", std::to_string(p)});
    process_ = std::make_unique<Process>(std::move(argv), std::vector<std::pair<std::string, std::string>>{},
                                         output_path());
    return *process_;
  });
}

void Anax::stop() {
  if (!process_) return;
  process_->signal(SIGTERM);
  if (!process_->wait(deadline_in(10s))) process_->kill9();
}

ExitStatus Anax::kill9() {
  if (!process_) die("the anax stand-in was never started");
  return process_->kill9();
}

void Anax::restart() {
  if (process_ && process_->running()) stop();
  start(port_);
}

void Anax::set_cron_file(bool present) {
  if (present) {
    write_file(cron_path(), "*/1 * * * * root /usr/horizon/bin/agent-auto-upgrade.sh\n");
  } else {
    std::error_code ec;
    fs::remove(cron_path(), ec);
  }
}

int Anax::executor_runs() const {
  return static_cast<int>(grep_lines(executor_log_path(), R"("event":"run")").size());
}

int Anax::downloads(const std::string& version) const {
  return static_cast<int>(grep_lines(download_log_path(), "\"version\":\"" + version).size());
}

HttpResult Anax::request(const std::string& method, const std::string& path, const std::string& body) {
  return http_request(port_, method, path, body, std::nullopt, {});
}

std::map<std::string, std::string> Anax::statuses() {
  auto r = request("GET", "/nodemanagement/status");
  if (r.status != 200) die("anax stand-in: GET /nodemanagement/status answered " + std::to_string(r.status));
  auto root = json::parse(r.body, "anax statuses");
  if (!root) die(root.error().message);
  std::map<std::string, std::string> out;
  const cJSON* rec = nullptr;
  cJSON_ArrayForEach(rec, root->get()) {
    const cJSON* st = cJSON_GetObjectItemCaseSensitive(rec, "agentUpgradePolicyStatus");
    out[rec->string] = json::opt_string(st, "status").value_or("");
  }
  return out;
}

std::optional<std::string> Anax::status(const std::string& key) {
  auto all = statuses();
  auto it = all.find(key);
  if (it == all.end()) return std::nullopt;
  return it->second;
}

std::string Anax::recorded_version() const {
  auto root = json::parse(read_file(state_path()), "anax state");
  if (!root) return "";
  return json::opt_string(root->get(), "recordedVersion").value_or("");
}

// ---------------------------------------------------------------- rollout

Rollout::Rollout(RolloutOptions options) : options_(std::move(options)), dir_("agentd-rollout") {
  hub_ = std::make_unique<Hub>(dir_.file("hub"), options_.hub);
  hub_->create_org(options_.org);
  hub_->create_user(options_.org, "admin", "adminpw", true);
  std::vector<std::string> nodes;
  for (int i = 1; i <= options_.members; ++i) {
    nodes.push_back("n" + std::to_string(i));
    add_node(nodes.back());
  }
  if (!options_.group.empty()) hub_->create_group(options_.org, options_.group, nodes, admin());
  if (options_.publish) publish(options_.target_version);
}

// Members are destroyed (killed) before the hub, and the directory last.
Rollout::~Rollout() = default;

Credentials Rollout::admin() const {
  return {options_.org + "/admin", "adminpw"};
}

Member& Rollout::member(const std::string& node) {
  for (auto& m : members_)
    if (m->node() == node) return *m;
  die("no member " + node);
}

Member& Rollout::add_node(const std::string& node) {
  MemberOptions mo = options_.member;
  mo.initial_version = options_.from_version;
  hub_->create_node(options_.org, node, "tok-" + node, admin(), options_.from_version);
  members_.push_back(std::make_unique<Member>(dir_.file(node), *hub_, options_.org, node, "tok-" + node, mo));
  if (options_.anax) {
    anaxes_.push_back(std::make_unique<Anax>(dir_.file(node + "/anax"), *hub_, *members_.back(), options_.org,
                                             options_.anax_options));
    members_.back()->use_anax(*anaxes_.back());
  }
  return *members_.back();
}

Anax& Rollout::anax(const std::string& node) {
  for (std::size_t i = 0; i < members_.size() && i < anaxes_.size(); ++i)
    if (members_[i]->node() == node) return *anaxes_[i];
  die("no anax stand-in beside " + node);
}

void Rollout::publish(const std::string& version) {
  hub_->put_agent_file_versions({version, options_.from_version});
  std::string manifest = "agent-" + version;
  hub_->put_manifest(options_.org, manifest, version);
  if (nmp_created_) {
    hub_->update_nmp(options_.org, options_.nmp, options_.org + "/" + manifest);
  } else {
    hub_->create_nmp(options_.org, options_.nmp, options_.org + "/" + manifest);
    nmp_created_ = true;
  }
}

void Rollout::start_all() {
  for (auto& m : members_) m->start();
}

void Rollout::stop_all() {
  for (auto& m : members_) m->stop();
}

bool Rollout::wait_all_at(const std::string& version, Deadline deadline) {
  return poll_until(deadline, [&] {
    for (auto& m : members_)
      if (m->version() != version) return false;
    return true;
  });
}

GroupDocument Rollout::group() {
  return hub_->get_group(options_.org, options_.group);
}

bool Rollout::wait_group(const std::function<bool(const GroupDocument&)>& predicate, Deadline deadline) {
  return poll_until(
      deadline,
      [&] {
        try {
          return predicate(group());
        } catch (const std::runtime_error&) {
          return false;  // the hub is down or restarting
        }
      },
      100ms);
}

bool Rollout::rollout_done(const std::string& version) {
  for (auto& m : members_)
    if (m->version() != version) return false;
  if (options_.group.empty()) return true;
  try {
    GroupDocument doc = group();
    for (const auto& m : doc.members) {
      const Entry* e = doc.entry(m);
      if (!e || e->version != version || (e->state != State::succeeded && e->state != State::idle))
        return false;
    }
    return true;
  } catch (const std::runtime_error&) {
    return false;  // the hub is down or restarting
  }
}

bool Rollout::wait_rollout_done(const std::string& version, Deadline deadline) {
  return poll_until(
      deadline, [&] { return rollout_done(version); }, 100ms);
}

std::string Rollout::diagnostics(std::size_t tail_lines) {
  std::string out;
  for (auto& m : members_)
    out += "---- " + m->node() + " (" + m->log_path() + ")\n" + tail(m->log(), tail_lines);
  out += "---- hub (" + hub_->output_path() + ")\n" + tail(read_file(hub_->output_path()), tail_lines);
  return out;
}

std::vector<std::string> Rollout::agentctl_argv(const std::vector<std::string>& args) {
  // The password in a 0600 file, as an operator should give it (not on the command line).
  const std::string auth = dir_.file("admin-auth");
  if (!file_exists(auth)) write_file(auth, "admin:adminpw\n", 0600);
  std::vector<std::string> argv{
      AGENTCTL_BIN, "--exchange-url", hub_->exchange_url(), "--org", options_.org, "--user-auth-file", auth};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

CommandResult Rollout::agentctl(const std::vector<std::string>& args) {
  return run_command(agentctl_argv(args), {},
                     dir_.file("agentctl." + std::to_string(++agentctl_runs_) + ".out"));
}

std::vector<check::Violation> Rollout::violations(bool final_state, std::optional<std::string> target) {
  std::vector<std::string> steps;
  for (auto& m : members_)
    if (file_exists(m->steps_path())) steps.push_back(m->steps_path());
  check::Options opts;
  opts.final_state = final_state;
  opts.target = std::move(target);
  auto r = check::check_files(hub_->write_log_path(), steps, opts);
  if (!r) die("invariant check: " + r.error().message);
  return *r;
}

std::string Rollout::violations_text(bool final_state, std::optional<std::string> target) {
  std::string out;
  for (const auto& v : violations(final_state, std::move(target))) out += check::to_string(v) + "\n";
  return out;
}

}  // namespace agentd::harness
