// agentd: parse flags, load config, build the objects, run. Nothing else.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agentd/version.h"
#include "config.h"
#include "daemon.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "process.h"
#include "service.h"
#include "upgrade/command_upgrader.h"
#include "upgrade/state_file.h"

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
    std::printf("agentd: configuration is valid (%zu files read)\n", config->sources.size());
    return exit_ok;
  }
  if (!make_dirs(config->state_dir)) {
    std::fprintf(stderr, "agentd: state directory %s: %s\n", config->state_dir.c_str(), std::strerror(errno));
    return exit_state;
  }

  // Signals are blocked before any thread starts, so every thread inherits the mask.
  SignalWaiter waiter;
  auto log = make_logger(config->log_level, stderr_is_journal());
  SystemClock clock;

  HttpOptions http_options;
  http_options.connect_timeout = config->connect_timeout;
  http_options.total_timeout = config->http_timeout;
  http_options.max_response_bytes = config->max_response_bytes;
  http_options.ca_file = config->ca_file;
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
  Exchange exchange(*http, endpoint, RetryPolicy{}, waiter);

  auto runner = make_process_runner([&waiter] { return waiter.stop_requested(); });
  UpgradeCommands commands;
  commands.version = config->version_command;
  commands.prepare = config->prepare_command;
  commands.install = config->install_command;
  commands.restart = config->restart_command;
  commands.health = config->health_command;
  commands.rollback = config->rollback_command;
  commands.timeout = config->command_timeout;
  commands.state_dir = config->state_dir;
  auto upgrader = make_command_upgrader(commands, *runner);

  StateFile state_file(config->state_dir + "/state.json");
  Daemon daemon(DaemonParts{*config, clock, exchange, exchange, *upgrader, *log, state_file, *notifier,
                            waiter, config->state_dir + "/steps.jsonl"});
  return daemon.run();
}
