// The anax stand-in: the node management policy (NMP) machinery of the Open
// Horizon agent (anax, master 2026) as far as agentd meets it
// (anax-coexistence.md §1-2, exchange-api.md §4, §7), so that a test fails where
// agentd beside the real anax would:
//   - the local API of §2 (status, node, nodemanagement status/nextjob/reset), the
//     status PUT with anax's quirks: only the nested {"agentUpgradePolicyStatus":
//     {...}} body changes anything (a flat {"status":..} is a 201 no-op); the
//     Exchange is checked first (500 when down); the record changes locally before
//     the Exchange PUT, whose failure is a 500 that a retry cannot repair;
//   - the NMP worker: takes every enabled, compatible NMP it has no record of
//     (`waiting`), deletes Exchange statuses it has no record of, overwrites
//     statuses others wrote (only `reset` is obeyed), downloads (`download
//     started` -> `ha node waiting` | `downloaded` | `no action required`), asks
//     the agbot for the group lock while `ha node waiting`, and starts nothing else
//     while a job is active;
//   - its own idea of its version (recorded at the first start and on `successful`
//     only: stale after an out-of-band upgrade);
//   - the cron executor of the `horizon` package (agent-auto-upgrade.sh): while the
//     cron file exists it installs every `downloaded` job, logging each run;
//   - a state file surviving kill -9; `download started` goes back to `waiting` on
//     start (ResetDownloadStartedStatuses).
// Not modelled: agreements and services (the executor does not wait for them),
// containers and cluster agents, certificate and configuration upgrades, the
// `latest` version keyword (a manifest must name a version), signature checks of
// the manifest and files, image NMPs, the changes feed (the worker polls the
// Exchange each interval instead), NMP updates after a record exists (anax
// re-evaluates them), registration/unregistration, `precheck failed`, the
// executor's rollback statuses, and a manifest listing no file for this node
// (anax fails the download; here the job goes on without files).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agentd/anax.h"
#include "agentd/http.h"
#include "agentd/json.h"
#include "agentd/result.h"
#include "hub/hub.h"

namespace agentd::anax {

using standin::Call;
using standin::Reply;

struct AnaxOptions {
  std::string state_path;    // required: the records, kept across restarts
  std::string exchange_url;  // required: ".../v1"
  std::string css_url;       // ".../css"; "" = exchange_url's host + "/css"
  std::string agbot_url;     // the agbot's secure API; "" = exchange_url without "/v1"
  std::string org;           // required: the node's org and id, and its Exchange token
  std::string node;
  std::string token;
  // anax's NodeMgmtWorkDirectory: a job's files go to <work_dir>/<org>/<nmp>/.
  std::string work_dir;  // required
  // The version of the agent running now (its content, trimmed): what /status
  // shows and what `successful` records. The fake agent's install rewrites it.
  std::string version_file;  // "" or missing: initial_version
  std::string initial_version = "1.0.0";
  std::string package_type = "deb";  // the bundle horizon-agent-linux-{deb|rpm}-{arch}.tar.gz
  std::string arch = "amd64";
  // The NMP worker's period (anax: 60 s); 0: no thread, a test calls worker_pass().
  std::chrono::milliseconds worker_interval{60'000};
  // The cron executor: runs while this file exists, every cron_interval (cron:
  // 60 s); 0: no thread, a test calls executor_pass().
  std::string cron_file = "/etc/cron.d/horizon_agent_upgrade";
  std::chrono::milliseconds cron_interval{60'000};
  std::string install_command;  // run by the executor with /bin/sh -c; "" = "true"
  std::string executor_log;     // JSON lines, one per executor run and its end; "" = none
  // JSON lines, one per file of a release the NMP worker downloaded
  // {"tUs","nmp","version","file","bytes"}; "" = none.
  std::string download_log;
};

// NodeManagementPolicyStatus, agentUpgrade part (anax exchangecommon/node_management_status.go).
struct Record {
  std::string scheduled_time;  // RFC3339 UTC
  std::int64_t scheduled_unix = 0;
  std::string start_time;                                      // RFC3339 local time, set on `initiated`
  std::string end_time;                                        // set on `successful`
  std::string software_version, cert_version, config_version;  // upgradedVersions
  std::string status;
  std::string error_message;
  bool allow_downgrade = false;
  std::string manifest;  // "org/id"
  bool software_latest = false, config_latest = false, cert_latest = false;
  std::int64_t download_attempts = 0;
};

// The local API's JSON of a record (workingDirectory = the base work directory).
json::Ptr record_to_json(const Record& r, const std::string& work_dir);
Result<Record> record_from_json(const cJSON* o);

class Anax {
 public:
  // Loads the state file (missing: no records, the version recorded now).
  static Result<std::unique_ptr<Anax>> open(AnaxOptions options);
  ~Anax();  // stops the worker and executor threads
  Anax(const Anax&) = delete;
  Anax& operator=(const Anax&) = delete;

  // The local API (anax-coexistence.md §2).
  Reply handle(const Call& call);

  // One pass of the NMP worker / the cron executor (also run by their threads).
  void worker_pass();
  void executor_pass();

  // What a test looks at: the records ("org/nmp"), the version anax believes it
  // runs, the version actually running.
  std::map<std::string, Record> records();
  std::string recorded_version();
  std::string running_version() const;
  const AnaxOptions& options() const { return options_; }

  // Exchange node softwareVersions and status writes, as the API and executor do
  // them: a changed status is stored, then written to the Exchange.
  // Errc::not_found without a record; Errc::http/transport when the Exchange
  // write fails (the local record has changed already).
  Status set_status(const std::string& key, const std::string& status, const std::string& error_message);

 private:
  Anax(AnaxOptions options, std::map<std::string, Record> records, std::string recorded_version);

  Reply get_status_route();
  Reply get_node_route();
  Reply get_records(const std::string& key);
  Reply next_job(const Call& call);
  Reply put_status(const Call& call, const std::string& key);
  Reply reset(const std::string& key);

  // The HTTP side: the Exchange (as the node), the CSS, the agbot.
  Result<HttpResponse> send(const std::string& method, const std::string& url, const std::string& body = "",
                            std::size_t max_bytes = 4 * 1024 * 1024);
  Status put_exchange_status(const std::string& key, const Record& r);
  Status delete_exchange_status(const std::string& nmp);
  bool exchange_up();

  // The worker's steps.
  struct NodeInfo {
    std::string ha_group;
    std::string pattern;
  };
  Result<NodeInfo> read_node();
  bool compatible(const cJSON* policy, const NodeInfo& node);
  void take_policies(const NodeInfo& node);
  void sync_exchange_statuses();
  void ask_agbot(const NodeInfo& node);
  void start_next_job(const NodeInfo& node);
  // The download worker: the status the job goes to.
  std::string download(const std::string& key, Record* r, const NodeInfo& node);
  // Sets `to` if the record is still at `from`; false when it moved meanwhile.
  bool advance(const std::string& key, const std::string& from, const std::string& to,
               const std::string& error_message = "");

  std::string job_dir(const std::string& key) const;
  Status save_locked();
  // Appends `line` (with "tUs") to `path` ("" = nowhere).
  void log_line(const std::string& path, json::Ptr line);
  void run_every(std::chrono::milliseconds interval, void (Anax::*pass)());

  AnaxOptions options_;
  std::mutex mu_;  // guards records_, recorded_version_, ha_group_ and the state file
  std::map<std::string, Record> records_;
  std::string recorded_version_;
  std::string ha_group_;  // from the last read of the Exchange node
  std::mutex worker_mu_;  // one worker pass at a time
  std::mutex executor_mu_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace agentd::anax
