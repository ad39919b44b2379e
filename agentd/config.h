// Configuration (architecture.md "Configuration"): /etc/default/horizon for the
// hub, /etc/agentd/agentd.conf then /etc/agentd/conf.d/*.conf (lexical order, later
// wins), then the environment, then flags. Every bad value is reported with
// file, line and key; each kind of failure has its own exit status.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "flags.h"
#include "log.h"
#include "result.h"

namespace agentd {

// Exit statuses (documented in --help and agentd(8)).
enum ExitStatus : int {
  exit_ok = 0,
  exit_failure = 1,  // runtime failure after start
  exit_usage = 2,    // bad command line
  exit_config = 3,   // invalid or unreadable configuration
  exit_token = 4,    // token file missing, unreadable or readable by others
  exit_state = 5,    // state directory or state file unusable
};

struct Config {
  // /etc/default/horizon
  std::string exchange_url;  // HZN_EXCHANGE_URL (must end in /v1, optional trailing slash)
  std::string css_url;       // HZN_FSS_CSSURL (optional)
  std::string org;           // HZN_ORG_ID
  std::string node_id;       // HZN_DEVICE_ID
  std::string ca_file;       // HZN_MGMT_HUB_CERT_PATH (optional)
  std::string anax_url = "http://localhost:8510";  // from HZN_AGENT_PORT: anax's local API

  // agentd's own settings (AGENTD_*)
  std::string token_file;                     // AGENTD_TOKEN_FILE (required)
  std::string state_dir = "/var/lib/agentd";  // AGENTD_STATE_DIR / --state-dir
  // node_exporter's textfile collector directory (Debian's path); "" = no metrics file.
  std::string metrics_dir = "/var/lib/prometheus/node-exporter";  // AGENTD_METRICS_DIR
  std::chrono::milliseconds lease_duration{120'000};              // AGENTD_LEASE_DURATION_SECONDS
  std::chrono::milliseconds heartbeat{20'000};                    // AGENTD_HEARTBEAT_SECONDS
  std::chrono::milliseconds idle_heartbeat{600'000};              // AGENTD_IDLE_HEARTBEAT_SECONDS
  std::chrono::milliseconds changes_interval{30'000};             // AGENTD_CHANGES_SECONDS
  std::chrono::milliseconds fast_poll{2'000};                     // AGENTD_FAST_POLL_SECONDS
  std::chrono::milliseconds poll{10'000};                         // AGENTD_POLL_SECONDS
  std::chrono::milliseconds connect_timeout{10'000};              // AGENTD_CONNECT_TIMEOUT_SECONDS
  std::chrono::milliseconds http_timeout{30'000};                 // AGENTD_HTTP_TIMEOUT_SECONDS
  std::size_t max_response_bytes = 4 * 1024 * 1024;               // AGENTD_MAX_RESPONSE_BYTES
  // http:// to a host other than loopback sends the token in clear: refused
  // unless this is set, and then warned about at every start.
  bool allow_insecure_http = false;  // AGENTD_ALLOW_INSECURE_HTTP
  // With HZN_MGMT_HUB_CERT_PATH only that CA is trusted; this adds the system's.
  bool trust_system_cas = false;  // AGENTD_TRUST_SYSTEM_CAS
  Level log_level = Level::info;  // AGENTD_LOG_LEVEL

  // How the agent is upgraded (AGENTD_UPGRADE_METHOD): "packages", the pipeline of
  // upgrade/pipeline.h (signed manifest, verified download, the node's package
  // system, health check, rollback to the kept package), or "commands", the
  // operator's own commands below (upgrade/command_upgrader.h).
  std::string upgrade_method = "packages";
  // AGENTD_ANAX: beside the anax agent (anax-coexistence.md): "on", "off", or
  // "auto" = on when anax's local API answers at anax_url when agentd starts.
  std::string anax = "auto";
  std::string package_system = "auto";                     // AGENTD_PACKAGE_SYSTEM: auto|deb|rpm|tarball
  std::string agent_package = "horizon";                   // AGENTD_AGENT_PACKAGE
  std::string agent_unit = "horizon.service";              // AGENTD_AGENT_UNIT ("" = none to restart)
  std::string install_root = "/";                          // AGENTD_INSTALL_ROOT
  std::string arch;                                        // AGENTD_ARCH (default: this build's)
  std::string trusted_keys_dir = "/etc/agentd/trusted.d";  // AGENTD_TRUSTED_KEYS_DIR
  bool allow_unsigned_manifest = false;                    // AGENTD_ALLOW_UNSIGNED_MANIFEST
  // A version below the highest this node ever installed or ran is refused,
  // whatever the hub's policy says, unless this is set (anti-rollback).
  bool allow_downgrade = false;                              // AGENTD_ALLOW_DOWNGRADE
  std::chrono::milliseconds download_timeout{3'600'000};     // AGENTD_DOWNLOAD_TIMEOUT_SECONDS
  std::uint64_t max_download_bytes = 1024ull * 1024 * 1024;  // AGENTD_MAX_DOWNLOAD_BYTES
  int download_attempts = 5;                                 // AGENTD_DOWNLOAD_ATTEMPTS
  std::chrono::milliseconds health_timeout{300'000};         // AGENTD_HEALTH_TIMEOUT_SECONDS
  std::chrono::milliseconds install_timeout{1'800'000};      // AGENTD_INSTALL_TIMEOUT_SECONDS

  // AGENTD_*_COMMAND, run by /bin/sh -c. With the commands method, version and
  // install are required; with packages, version, restart and health are
  // optional overrides and additions (the health command is an extra check).
  std::string version_command;   // prints the running agent version
  std::string prepare_command;   // optional
  std::string install_command;   // required by the commands method
  std::string restart_command;   // optional
  std::string health_command;    // optional
  std::string rollback_command;  // optional; without it a failed install is reported "failed"
  std::chrono::milliseconds command_timeout{600'000};  // AGENTD_COMMAND_TIMEOUT_SECONDS

  // Where each file came from, for messages.
  std::vector<std::string> sources;
  // Settings that weaken security on purpose: printed by --check-config and
  // logged as warnings at every start.
  std::vector<std::string> warnings;
};

// Loads and validates everything. `env` is the process environment as a map
// (injected for tests). Errors name "file:line: KEY: problem" (or "environment:
// KEY" / "--flag").
Result<Config> load_config(const Flags& flags, const std::map<std::string, std::string>& env);

// How long one hub call of the daemon's loop may take, retries included: half
// of the shorter of the heartbeat and the renew period (lease / 3), so that a
// read and the write after it fit in either; within [1 s, AGENTD_HTTP_TIMEOUT_SECONDS].
std::chrono::milliseconds hub_call_budget(const Config& config);

// True when an http(s) URL names a loopback host: localhost, 127.0.0.0/8 or [::1].
bool is_loopback_url(std::string_view url);

}  // namespace agentd
