// agentd: parse flags, load config, build the objects, run. Nothing else.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agentd/version.h"
#include "anax.h"
#include "config.h"
#include "daemon.h"
#include "exchange.h"
#include "files.h"
#include "http.h"
#include "log.h"
#include "process.h"
#include "service.h"
#include "status_reporter.h"
#include "token_file.h"
#include "upgrade/artifact_source.h"
#include "upgrade/command_upgrader.h"
#include "upgrade/detached.h"
#include "upgrade/installer.h"
#include "upgrade/pipeline.h"
#include "upgrade/state_file.h"
#include "upgrade/units.h"

extern char** environ;

namespace {

// mkdir -p with mode 0700 for directories agentd creates itself.
bool make_dirs(const std::string& path) {
  std::string cur;
  for (std::size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      cur = path.substr(0, i);
      if (mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace agentd;
  auto flags = parse_flags(argc, argv);
  if (!flags) {
    std::fprintf(stderr, "agentd: %s\nTry 'agentd --help'.\n", flags.error().message.c_str());
    return exit_usage;
  }
  if (flags->help) {
    std::fputs(help_text(), stdout);
    return exit_ok;
  }
  if (flags->version) {
    std::printf("agentd %s\n", AGENTD_VERSION);
    return exit_ok;
  }
  auto config = load_config(*flags, environment_map(environ));
  if (!config) {
    std::fprintf(stderr, "agentd: configuration: %s\n", config.error().message.c_str());
    return exit_config;
  }
  auto token = read_token_file(config->token_file);
  if (!token) {
    std::fprintf(stderr, "agentd: token file: %s\n", token.error().message.c_str());
    return exit_token;
  }
  if (flags->check_config) {
    for (const std::string& w : config->warnings) std::printf("agentd: warning: %s\n", w.c_str());
    std::printf("agentd: configuration is valid (%zu files read)\n", config->sources.size());
    return exit_ok;
  }
  auto log = make_logger(config->log_level, stderr_is_journal());
  for (const std::string& w : config->warnings) log->warn("insecure-setting", {{"why", w}});
  // The packaged unit's sandbox is for the package method; the operator's
  // commands need the looser drop-in (agentd(8)).
  if (struct statvfs usr{};
      config->upgrade_method == "commands" && ::statvfs("/usr", &usr) == 0 && (usr.f_flag & ST_RDONLY) != 0)
    log->warn("sandbox-too-strict",
              {{"why",
                "AGENTD_UPGRADE_METHOD=commands but /usr is read-only here: install "
                "/usr/share/doc/agentd/examples/commands-method.conf as a drop-in of agentd.service"}});
  if (!make_dirs(config->state_dir)) {
    std::fprintf(stderr, "agentd: state directory %s: %s\n", config->state_dir.c_str(), std::strerror(errno));
    return exit_state;
  }
  if (auto s = check_private_dir(config->state_dir); !s) {
    std::fprintf(stderr, "agentd: state directory: %s\n", s.error().message.c_str());
    return exit_state;
  }

  // Signals are blocked before any thread starts, so every thread inherits the mask.
  SignalWaiter waiter;
  SystemClock clock;

  HttpOptions http_options;
  http_options.connect_timeout = config->connect_timeout;
  http_options.total_timeout = config->http_timeout;
  http_options.max_response_bytes = config->max_response_bytes;
  http_options.ca_file = config->ca_file;
  http_options.ca_file_adds_system = config->trust_system_cas;
  http_options.user_agent = std::string("agentd/") + AGENTD_VERSION;
  http_options.basic_user = config->org + "/" + config->node_id;
  http_options.basic_password = *token;
  auto notifier = make_sd_notifier();
  WatchdogPinger watchdog(*notifier);
  http_options.cancelled = [&waiter, &watchdog] {
    watchdog.ping_if_due();  // a hung hub request is not a hung agentd
    return waiter.stop_requested();
  };
  auto http = make_curl_http_client(http_options);

  ExchangeEndpoint endpoint{config->exchange_url, config->css_url, config->org, config->node_id};
  // Counted by both Exchange clients and the download; written by the daemon.
  Metrics metrics;
  // A slow hub must not hold the loop past a heartbeat or a lease renewal.
  RetryPolicy loop_retry;
  loop_retry.budget = hub_call_budget(*config);
  Exchange exchange(*http, endpoint, loop_retry, waiter, &metrics);

  auto runner = make_process_runner([&waiter] { return waiter.stop_requested(); });

  // The package pipeline runs on the job thread: it gets its own HTTP client
  // and its own way of waiting.
  SlicedSleeper job_sleeper([&waiter] { return waiter.stop_requested(); });
  HttpOptions job_http_options = http_options;
  job_http_options.cancelled = [&waiter] { return waiter.stop_requested(); };  // the loop pings the watchdog
  auto job_http = make_curl_http_client(job_http_options);
  Exchange job_exchange(*job_http, endpoint, RetryPolicy{}, job_sleeper, &metrics);
  CssArtifactSource css(job_exchange.objects(), *job_http);

  // Beside anax (AGENTD_ANAX): its local API, on loopback, without the node's
  // credentials; one client for the loop, one for the job thread.
  HttpOptions anax_http_options;
  anax_http_options.connect_timeout = std::chrono::milliseconds{2'000};
  anax_http_options.total_timeout = std::chrono::milliseconds{15'000};
  anax_http_options.user_agent = http_options.user_agent;
  // Short calls on loopback: they need no watchdog pings (none may come before READY=1).
  anax_http_options.cancelled = [&waiter] { return waiter.stop_requested(); };
  auto anax_http = make_curl_http_client(anax_http_options);
  auto job_anax_http = make_curl_http_client(anax_http_options);
  auto anax = make_anax_client(*anax_http, config->anax_url);
  auto job_anax = make_anax_client(*job_anax_http, config->anax_url);
  bool beside_anax = config->anax == "on";
  if (config->anax == "auto") {
    auto v = anax->version();
    beside_anax = v.has_value();
    log->info("anax", {{"url", config->anax_url},
                       {"mode", beside_anax ? "beside anax" : "alone"},
                       {"why", v ? "anax " + *v + " answers" : v.error().describe()}});
  }
  AnaxArtifactSource from_anax(*job_anax, css);
  ArtifactSource& artifacts = beside_anax ? static_cast<ArtifactSource&>(from_anax) : css;
  DetachedOptions detached_options;
  detached_options.use_systemd = sd_booted() > 0 && ::geteuid() == 0;
  detached_options.cancelled = [&waiter] { return waiter.stop_requested(); };
  detached_options.sleeper = &job_sleeper;
  auto detached = make_detached_runner(detached_options);
  InstallerOptions installer_options;
  installer_options.kind = config->package_system == "auto"
                               ? detect_package_kind()
                               : *package_kind_from_string(config->package_system);
  installer_options.package = config->agent_package;
  installer_options.root = config->install_root;
  installer_options.timeout = config->install_timeout;
  auto installer = make_installer(installer_options, *runner, *detached);
  std::unique_ptr<UnitManager> units;
  if (auto u = make_systemd_unit_manager()) units = std::move(*u);

  std::unique_ptr<Upgrader> upgrader;
  if (config->upgrade_method == "packages") {
    PipelineOptions po;
    po.state_dir = config->state_dir;
    po.trusted_keys_dir = config->trusted_keys_dir;
    po.allow_unsigned_manifest = config->allow_unsigned_manifest;
    po.arch = config->arch.empty() ? build_arch() : config->arch;
    po.package = config->agent_package;
    po.install_root = config->install_root;
    po.agent_unit = config->agent_unit;
    po.prefer_bundle = beside_anax;
    po.max_download_bytes = config->max_download_bytes;
    po.download_attempts = config->download_attempts;
    po.download_timeout = config->download_timeout;
    po.allow_downgrade = config->allow_downgrade;
    po.health_timeout = config->health_timeout;
    po.version_command = config->version_command;
    po.restart_command = config->restart_command;
    po.health_command = config->health_command;
    po.command_timeout = config->command_timeout;
    upgrader = make_pipeline_upgrader(po, PipelineParts{artifacts, job_exchange, *installer, units.get(),
                                                        *runner, *log, clock, job_sleeper, &metrics});
  }
  UpgradeCommands commands;
  commands.version = config->version_command;
  commands.prepare = config->prepare_command;
  commands.install = config->install_command;
  commands.restart = config->restart_command;
  commands.health = config->health_command;
  commands.rollback = config->rollback_command;
  commands.timeout = config->command_timeout;
  commands.state_dir = config->state_dir;
  if (!upgrader) upgrader = make_command_upgrader(commands, *runner);

  StateFile state_file(config->state_dir + "/state.json");
  ExchangeStatusReporter to_exchange(exchange);
  AnaxStatusReporter to_anax(*anax);
  StatusReporter& status = beside_anax ? static_cast<StatusReporter&>(to_anax) : to_exchange;
  Daemon daemon(DaemonParts{*config, clock, exchange, exchange, status, *upgrader, *log, state_file,
                            *notifier, waiter, config->state_dir + "/steps.jsonl", 0,
                            beside_anax ? anax.get() : nullptr, &metrics});
  return daemon.run();
}
