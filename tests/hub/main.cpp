// exchange-standin: the Exchange stand-in hub for tests and the demo
// (architecture.md "The Exchange stand-in").
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "hub.h"
#include "serve.h"
#include "server.h"

namespace {

constexpr const char* kUsage =
    "usage: exchange-standin [--port N (default 0)] [--bind 127.0.0.1] --state FILE [--log FILE]\n"
    "                        [--root-password PW (default rootpw)] [--exchange-version 2.154.0]\n"
    "                        [--mode full|group-conditions|no-etag|no-coordination]\n"
    "                        [--agbot-log FILE] [--agbot-interval SECONDS (default 60)]\n"
    "The agbot's HA-upgrade lock (POST /org/{org}/hagroup/{group}/nodemanagement/{node}/{nmp},\n"
    "GET|DELETE /ha/upgradingnode[/{org}/{group}]) is served too; its monitor frees a lock\n"
    "every --agbot-interval once the holder's status is no longer active.\n"
    "The state is kept in FILE, and the changes table beside it in FILE.changes.\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "exchange-standin: %s\n%s", msg.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace agentd::standin;
  HubOptions options;
  std::string bind = "127.0.0.1";
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    static const std::string kKnown[] = {"--port", "--bind",          "--state",
                                         "--log",  "--root-password", "--exchange-version",
                                         "--mode", "--agbot-log",     "--agbot-interval"};
    std::string name = arg.substr(0, arg.find('='));
    if (std::find(std::begin(kKnown), std::end(kKnown), name) == std::end(kKnown))
      return usage_error("unknown option " + arg);
    std::string value;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error("missing value for " + arg);
    }
    if (arg == "--port") {
      char* end = nullptr;
      long p = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || p < 0 || p > 65535)
        return usage_error("bad --port '" + value + "'");
      port = static_cast<int>(p);
    } else if (arg == "--bind") {
      bind = value;
    } else if (arg == "--state") {
      options.state_path = value;
    } else if (arg == "--log") {
      options.log_path = value;
    } else if (arg == "--root-password") {
      options.root_password = value;
    } else if (arg == "--exchange-version") {
      options.exchange_version = value;
    } else if (arg == "--mode") {
      auto mode = mode_from_string(value);
      if (!mode) return usage_error("bad --mode '" + value + "'");
      options.mode = *mode;
    } else if (arg == "--agbot-log") {
      options.agbot_log_path = value;
    } else if (arg == "--agbot-interval") {
      char* end = nullptr;
      double seconds = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || !(seconds > 0) || seconds > 86400)
        return usage_error("bad --agbot-interval '" + value + "'");
      options.agbot_monitor_interval = std::chrono::milliseconds(static_cast<long long>(seconds * 1000));
    }
  }
  if (options.state_path.empty()) return usage_error("--state is required");

  sigset_t stop_signals = block_stop_signals();
  auto hub = Hub::open(options);
  if (!hub) {
    std::fprintf(stderr, "exchange-standin: %s\n", hub.error().describe().c_str());
    return 1;
  }
  Server server(**hub);
  if (int rc = serve_until_stopped(server, bind, port, stop_signals, "exchange-standin"); rc != 0) return rc;
  if (auto st = (*hub)->flush(); !st) {
    std::fprintf(stderr, "exchange-standin: %s\n", st.error().describe().c_str());
    return 1;
  }
  return 0;
}
