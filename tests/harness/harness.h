// Real processes on one machine for the integration tests and the demo: the
// Exchange stand-in, agentd members with a fake agent, agentctl, and the checker of
// protocol.md §7 over what they logged. Set-up failures throw std::runtime_error
// (test code: doctest reports them with their message).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agentd/exchange.h"
#include "agentd/group.h"
#include "check/invariants.h"

namespace agentd::harness {

using namespace std::chrono_literals;
using Deadline = std::chrono::steady_clock::time_point;

Deadline deadline_in(std::chrono::milliseconds d);

// Calls `predicate` every `interval` until it returns true (then true) or the
// deadline passes (then false, after one last try).
bool poll_until(Deadline deadline, const std::function<bool()>& predicate,
                std::chrono::milliseconds interval = 50ms);

// Throws std::runtime_error(what): how set-up failures end.
[[noreturn]] void die(const std::string& what);
// `s` without leading and trailing spaces, tabs and line ends.
std::string trim(std::string s);

// Small file helpers: read_file gives "" for a missing file.
std::string read_file(const std::string& path);
// The whole file (at most 64 MiB); throws when it is missing or cannot be read.
std::string slurp(const std::string& path);
void write_file(const std::string& path, const std::string& content, unsigned mode = 0644);
bool file_exists(const std::string& path);
// Lines of `path` that contain `needle`.
std::vector<std::string> grep_lines(const std::string& path, const std::string& needle);

// A fresh directory under $TMPDIR, removed with its contents at scope exit
// unless keep() was called (or AGENTD_KEEP_TEST_DIRS is set, for post-mortems).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "agentd-it");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  void keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

struct ExitStatus {
  int code = -1;   // exit code, -1 when killed by a signal
  int signal = 0;  // the signal that ended it, 0 when it exited
};

// A child process: argv[0] is a path; stdout and stderr are appended to
// `output_file`. It inherits this environment except variables starting with
// HZN_ or AGENTD_ (so the machine's settings never leak into a test), plus `env`.
// It is killed with SIGKILL if this process dies, and on destruction.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::vector<std::pair<std::string, std::string>>& env,
          std::string output_file);
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  const std::string& output_file() const { return output_file_; }
  std::string output() const { return read_file(output_file_); }
  bool running();                                     // not exited yet
  void signal(int sig);                               // no-op once it has exited
  std::optional<ExitStatus> wait(Deadline deadline);  // nullopt: still running at the deadline
  ExitStatus kill9();                                 // SIGKILL and reap
  std::optional<ExitStatus> exit_status() const { return exit_; }

 private:
  bool reap(bool block);
  pid_t pid_ = -1;
  std::string output_file_;
  std::optional<ExitStatus> exit_;
};

// `n` bytes of test data, the same for the same `seed`; pseudo-random, so every
// byte value occurs and a shifted or misplaced range does not compare equal.
std::string pattern(std::size_t n, unsigned seed = 1);

// The last `lines` lines of `text`.
std::string tail(const std::string& text, std::size_t lines);
// Nodes whose entry is in a lease state (upgrading/verifying), in node order.
std::vector<std::string> lease_holders(const GroupDocument& doc);

// Runs a command to completion (or kills it at the deadline) and returns its status and output.
struct CommandResult {
  ExitStatus status;
  std::string output;
};
CommandResult run_command(std::vector<std::string> argv,
                          const std::vector<std::pair<std::string, std::string>>& env,
                          const std::string& output_file, std::chrono::milliseconds timeout = 20s);

struct Credentials {
  std::string user;  // "org/name", "root/root"
  std::string password;
};

struct HttpResult {
  int status = 0;  // 0: no response (connection refused/closed)
  std::string body;
  std::map<std::string, std::string> headers;  // as sent
};

// Mid-body faults on CSS object data responses (tests/hub/server.h "body").
struct BodyFault {
  std::string kind;                // "" (none), truncate, wrong-length, slow, error-midway
  long long after_bytes = 0;       // bytes of the response sent before the fault
  long long bytes_per_second = 0;  // slow: the rate after after_bytes
  long long count = 0;             // responses to damage; 0 = every one
  std::string path_contains;       // only data paths containing this ("" = all)
};

// The stand-in's fault injection (PUT /v1/standin/faults, root only).
struct Faults {
  int latency_ms = 0;
  double error_rate = 0.0;
  int error_status = 503;
  int drop_after_commit = 0;
  int reset_after_commit = 0;            // commit, then close the connection before any response byte
  std::string reset_path_contains;       // only writes whose path contains this ("" = all)
  std::vector<std::string> partitioned;  // "org/node"
  std::string corrupt;  // damage successful GET bodies: truncated, malformed, wrong-types, oversized
  BodyFault body;       // break CSS object data mid-body
};

struct HubOptions {
  std::string mode = "full";  // full | no-etag | no-coordination
  std::string root_password = "rootpw";
  // The agbot lock monitor's period (exchange-api.md §7.3; the real agbot: 60 s): a
  // lock goes half a period to a period after its holder's status stops being active.
  std::string agbot_interval_seconds = "1";
};

// A row of the agbot's lock table (GET /ha/upgradingnode).
struct AgbotLock {
  std::string org, group, node, nmp;
};

// A line of the agbot lock log (tests/hub/hub.h HubOptions::agbot_log_path).
struct AgbotLockEvent {
  long long seq = 0;
  long long t_us = 0;
  std::string op;  // grant | release
  std::string org, group, node, nmp;
  std::string reason;  // release: "status successful", "node left the group", "admin o/admin"
};

// What the stand-in counted of one caller's requests (GET /v1/standin/stats); callers
// are "org/node" for agentd and "org/node#anax" for an anax stand-in.
struct CallerStats {
  long long total = 0;
  long long not_modified = 0;  // answered 304
  long long group_reads = 0;
  long long conflicts = 0;   // answered 412
  long long writes = 0;      // accepted writes
  long long file_reads = 0;  // release files fetched from the CSS
};

// The stand-in hub (exchange-standin) on 127.0.0.1 with its state and write log in `dir`.
class Hub {
 public:
  Hub(std::string dir, HubOptions options = {});  // starts it on port 0 and waits for its port
  ~Hub();

  int port() const { return port_; }
  std::string exchange_url() const;  // http://127.0.0.1:PORT/v1
  std::string css_url() const;       // http://127.0.0.1:PORT/css
  std::string write_log_path() const { return dir_ + "/hub-writes.jsonl"; }
  std::string agbot_log_path() const { return dir_ + "/agbot-locks.jsonl"; }
  std::string agbot_url() const;  // http://127.0.0.1:PORT (the agbot's secure API, same process)
  std::string state_path() const { return dir_ + "/hub-state.json"; }
  std::string output_path() const;  // stdout+stderr of the current run
  Credentials root() const { return {"root/root", options_.root_password}; }
  bool running() { return process_ && process_->running(); }

  void stop();  // SIGTERM, then wait for it to exit
  void kill9();
  void restart();  // same port, same state file and write log

  // Any request; `auth` defaults to root.
  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "",
                     std::optional<Credentials> auth = std::nullopt,
                     const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Set-up helpers: throw unless the hub answers with a success status.
  void create_org(const std::string& org);
  void create_user(const std::string& org, const std::string& user, const std::string& password, bool admin);
  // PUT /orgs/{org}/nodes/{node} as `owner` (a user of the org), with softwareVersions.horizon = version.
  void create_node(const std::string& org, const std::string& node, const std::string& token,
                   const Credentials& owner, const std::string& version = "1.0.0");
  void create_group(const std::string& org, const std::string& group, const std::vector<std::string>& members,
                    std::optional<Credentials> as = std::nullopt);
  void add_member(const std::string& org, const std::string& group, const std::string& node,
                  std::optional<Credentials> as = std::nullopt);
  void remove_member(const std::string& org, const std::string& group, const std::string& node,
                     std::optional<Credentials> as = std::nullopt);
  // PUT /orgs/IBM/AgentFileVersion (creates org IBM first when the hub needs it).
  void put_agent_file_versions(const std::vector<std::string>& software_versions);
  // Stores an upgrade manifest in the CSS: agent_upgrade_manifests/{id} in `org`,
  // {"softwareUpgrade":{"files":[],"version":V}, certificate/configuration "latest"}.
  void put_manifest(const std::string& org, const std::string& id, const std::string& software_version);
  // A CSS object {org}/{type}/{id}: its data, then its metadata (description,
  // signature; hashAlgorithm "SHA256" when signed), as root.
  void put_object(const std::string& org, const std::string& type, const std::string& id,
                  const std::string& data, const std::string& signature_b64 = "",
                  const std::string& description = "");
  // An upgrade manifest exactly as given, with its detached signature (base64) in the metadata.
  void put_signed_manifest(const std::string& org, const std::string& id, const std::string& manifest_json,
                           const std::string& signature_b64);
  // PUT /orgs/{org}/nodes/{node}/policy as root.
  void put_node_policy(const std::string& org, const std::string& node, const std::string& policy_json);
  // POST (create) or PUT (update) /orgs/{org}/managementpolicies/{name}: enabled, start now,
  // agentUpgradePolicy.manifest = manifest_ref.
  void create_nmp(const std::string& org, const std::string& name, const std::string& manifest_ref);
  void update_nmp(const std::string& org, const std::string& name, const std::string& manifest_ref);
  void set_faults(const Faults& faults);

  // The agbot's lock rows now (GET /ha/upgradingnode as root), and every grant and
  // release so far (its log), oldest first.
  std::vector<AgbotLock> agbot_locks();
  std::vector<AgbotLockEvent> agbot_lock_events() const;
  // Every caller's request counts so far.
  std::map<std::string, CallerStats> stats();

  // GET /orgs/{org}/hagroups/{g} as root, parsed (revision from the ETag, 0 without one).
  GroupDocument get_group(const std::string& org, const std::string& group);
  // GET /orgs/{org}/nodes/{node}/managementStatus/{nmp}; nullopt when there is none.
  std::optional<ManagementStatus> get_management_status(const std::string& org, const std::string& node,
                                                        const std::string& nmp);

 private:
  void start(int port);
  void expect(const HttpResult& r, std::initializer_list<int> ok, const std::string& what);

  std::string dir_;
  HubOptions options_;
  int port_ = 0;
  int runs_ = 0;
  std::unique_ptr<Process> process_;
};

class Anax;

// Settings written into a member's agentd.conf (durations in seconds, as text so
// fractions pass through unchanged). Fast by default, for tests.
struct MemberOptions {
  std::string lease_seconds = "3";
  std::string heartbeat_seconds = "0.5";
  std::string changes_seconds = "0.5";
  std::string fast_poll_seconds = "0.2";
  std::string poll_seconds = "0.5";
  std::string idle_heartbeat_seconds = "5";
  std::string http_timeout_seconds = "2";
  std::string connect_timeout_seconds = "1";
  std::string command_timeout_seconds = "30";
  std::string log_level = "debug";
  std::string initial_version = "1.0.0";
  std::vector<std::pair<std::string, std::string>> extra;  // more KEY=VALUE lines (later ones win)
  // HZN_AGENT_PORT in the member's horizon file: where anax's local API listens
  // (Member::use_anax sets it); "" writes none.
  std::string agent_port;
};

// One edge node: its directory holds `horizon`, `agentd.conf`, the 0600 `token`, the
// fake agent (`agent.sh`, its `version` file and switches) and agentd's state dir and log.
// The fake agent: install writes $AGENTD_TARGET_VERSION into `version` after sleeping
// `install-delay` seconds (if that file exists), and fails if `fail-install` exists;
// health fails if `fail-health` exists; rollback writes $AGENTD_PREVIOUS_VERSION back.
// Every call is appended to `agent-calls.log` ("install 2.0.0").
class Member {
 public:
  Member(std::string dir, const Hub& hub, std::string org, std::string node, std::string token,
         MemberOptions options = {});
  ~Member();

  const std::string& node() const { return node_; }
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/agentd.conf"; }
  std::string horizon_path() const { return dir_ + "/horizon"; }
  std::string token_path() const { return dir_ + "/token"; }
  std::string state_dir() const { return dir_ + "/state"; }
  std::string steps_path() const { return state_dir() + "/steps.jsonl"; }
  // node_exporter's textfile directory for this member, and agentd's file in it.
  std::string metrics_dir() const { return dir_ + "/node-exporter"; }
  std::string metrics_path() const { return metrics_dir() + "/agentd.prom"; }
  std::string log_path() const { return dir_ + "/agentd.log"; }  // agentd's stdout+stderr, all runs
  std::string agent_calls_path() const { return dir_ + "/agent-calls.log"; }
  std::string version_path() const { return dir_ + "/version"; }  // the fake agent's version
  std::string log() const { return read_file(log_path()); }

  // Rewrites agentd.conf / horizon / token (e.g. to break them on purpose).
  void write_config();
  void write_horizon();
  void write_token(const std::string& token, unsigned mode = 0600);
  // Points the member at `anax` (HZN_AGENT_PORT in its horizon file; takes effect at
  // agentd's next start).
  void use_anax(const Anax& anax);

  // The fake agent's state and switches.
  std::string version() const;  // content of `version`, trimmed
  void set_version(const std::string& v);
  void fail_install(bool on);
  void fail_health(bool on);
  void install_delay(double seconds);              // 0 removes it
  int agent_calls(const std::string& step) const;  // how many times the fake agent ran `step`

  // `env`: more environment for agentd (e.g. faketime's for a wall-clock jump).
  void start(std::vector<std::string> extra_args = {},
             const std::vector<std::pair<std::string, std::string>>& env = {});
  bool running();
  void stop(std::chrono::milliseconds grace = 10s);  // SIGTERM, wait; SIGKILL after grace
  ExitStatus kill9();
  std::optional<ExitStatus> wait_exit(Deadline deadline);
  Process* process() { return process_.get(); }

  MemberOptions& options() { return options_; }

 private:
  void write_agent_script();
  std::string dir_;
  std::string exchange_url_;
  std::string css_url_;
  std::string org_;
  std::string node_;
  std::string token_;
  MemberOptions options_;
  std::unique_ptr<Process> process_;
};

// The anax stand-in (tests/anax/anax.h) beside one member: anax's local API, its
// NMP worker (which writes the Exchange as the node and asks the agbot for the
// group's lock) and its cron executor, fast for tests.
struct AnaxOptions {
  std::string interval_seconds = "0.5";       // the NMP worker's period (anax: 60 s)
  std::string cron_interval_seconds = "0.5";  // the cron executor's period (cron: 60 s)
  // Whether the cron file exists at start: the `horizon` package writes it, so the
  // executor is armed unless something (agentd's package) takes it away.
  bool cron_file = true;
  // What the executor runs for a `downloaded` job ($ANAX_VERSION, $ANAX_NMP,
  // $ANAX_WORK_DIR set); "" = the member's fake agent: `agent.sh install` of $ANAX_VERSION.
  // It runs with $MEMBER_DIR set to the member's directory.
  std::string install_command;
  std::string package_type = "deb";  // the bundle horizon-agent-linux-{deb|rpm}-{arch}.tar.gz
  std::string arch = "amd64";
  // The file whose content is the agent's running version, relative to the member's
  // directory; "" = the fake agent's `version` (a package root's usr/share/horizon/VERSION
  // for members with real packages).
  std::string version_file;
};

// One anax stand-in process for `member`, in `dir`; its version is the member's
// fake agent's version file, its token the member's token file. Started on port 0.
class Anax {
 public:
  Anax(std::string dir, const Hub& hub, const Member& member, std::string org,
       const AnaxOptions& options = {});
  ~Anax();

  int port() const { return port_; }
  std::string url() const;  // http://127.0.0.1:PORT
  std::string state_path() const { return dir_ + "/anax-state.json"; }
  std::string work_dir() const { return dir_ + "/nmp"; }  // a job's files: <work_dir>/<org>/<nmp>/
  std::string cron_path() const { return dir_ + "/horizon_agent_upgrade"; }
  std::string executor_log_path() const { return dir_ + "/executor.jsonl"; }
  std::string download_log_path() const { return dir_ + "/downloads.jsonl"; }
  std::string output_path() const;  // stdout+stderr of the current run
  bool running() { return process_ && process_->running(); }

  void stop();  // SIGTERM, then wait for it to exit
  ExitStatus kill9();
  void restart();  // same port, same state file

  // The `horizon` package's cron file: present = the executor runs.
  void set_cron_file(bool present);
  // Executor runs so far (its "run" lines).
  int executor_runs() const;
  // Release files the NMP worker downloaded so far (of `version`; "" = any).
  int downloads(const std::string& version = "") const;

  // Any request to the local API (no credentials).
  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "");
  // GET /nodemanagement/status: "org/nmp" -> status.
  std::map<std::string, std::string> statuses();
  // The status of one record, nullopt without one.
  std::optional<std::string> status(const std::string& key);
  // The version anax has recorded for itself (the state file's), "" before its first start.
  std::string recorded_version() const;

 private:
  void start(int port);
  std::string dir_;
  std::vector<std::string> argv_;  // without --port
  int port_ = 0;
  int runs_ = 0;
  std::unique_ptr<Process> process_;
};

struct RolloutOptions {
  int members = 5;
  std::string org = "o";
  std::string group = "g";  // "" = members are in no group
  std::string from_version = "1.0.0";
  std::string target_version = "2.0.0";
  std::string nmp = "upgrade-agents";
  bool publish = true;  // publish the target (AgentFileVersion + manifest + NMP) at set-up
  HubOptions hub;
  MemberOptions member;
  bool anax = false;  // an anax stand-in beside each member (Member::use_anax)
  AnaxOptions anax_options;
};

// A hub with org, admin user, N nodes (n1..nN, tokens "tok-n1"...), the group, and
// (unless publish is false) the published target; members are built but not started.
class Rollout {
 public:
  explicit Rollout(RolloutOptions options = {});
  ~Rollout();

  const RolloutOptions& options() const { return options_; }
  TempDir& dir() { return dir_; }
  Hub& hub() { return *hub_; }
  Credentials admin() const;  // org admin "o/admin"
  std::size_t size() const { return members_.size(); }
  Member& member(std::size_t i) { return *members_.at(i); }
  Member& member(const std::string& node);
  std::vector<std::unique_ptr<Member>>& members() { return members_; }
  // The anax stand-in of member i / of `node` (options.anax).
  Anax& anax(std::size_t i) { return *anaxes_.at(i); }
  Anax& anax(const std::string& node);

  // Creates node `node` in the hub and its Member (not started, not in the group).
  Member& add_node(const std::string& node);
  // Publishes `version` as the new target: AgentFileVersion, manifest "agent-<version>",
  // and the NMP (created on first call, pointed at the new manifest later).
  void publish(const std::string& version);

  void start_all();
  void stop_all();
  // True once every member's fake agent runs `version`.
  bool wait_all_at(const std::string& version, Deadline deadline);

  // The group document as the hub has it now (throws when the hub does not answer).
  GroupDocument group();
  // Polls the group document until `predicate` holds; a hub that does not answer counts as false.
  bool wait_group(const std::function<bool(const GroupDocument&)>& predicate, Deadline deadline);
  // Every member runs `version` and every member's entry in the group is succeeded/idle at it.
  bool rollout_done(const std::string& version);
  bool wait_rollout_done(const std::string& version, Deadline deadline);
  // The last lines of every member's log and of the hub's output, for failure messages.
  std::string diagnostics(std::size_t tail_lines = 40);

  // agentctl as the org admin against this hub.
  CommandResult agentctl(const std::vector<std::string>& args);
  // Its command line, for one that keeps running (agentctl status --watch).
  std::vector<std::string> agentctl_argv(const std::vector<std::string>& args);

  // protocol.md §7 over the hub's write log and every member's steps log.
  std::vector<check::Violation> violations(bool final_state,
                                           std::optional<std::string> target = std::nullopt);
  // The violations as text, one per line ("" when none), for CHECK messages.
  std::string violations_text(bool final_state, std::optional<std::string> target = std::nullopt);

 private:
  RolloutOptions options_;
  TempDir dir_;
  std::unique_ptr<Hub> hub_;
  std::vector<std::unique_ptr<Member>> members_;
  std::vector<std::unique_ptr<Anax>> anaxes_;  // destroyed before the members (declared after)
  bool nmp_created_ = false;
  int agentctl_runs_ = 0;
};

}  // namespace agentd::harness
