// anax-standin: the anax stand-in (tests/anax/anax.h) for integration tests and
// the demo: anax's local API on 127.0.0.1, its NMP worker and its cron executor.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "agentd/files.h"
#include "agentd/process.h"
#include "anax.h"
#include "hub/serve.h"
#include "server.h"

namespace {

constexpr const char* kUsage =
    "usage: anax-standin --state FILE --exchange-url URL/v1 --org ORG --node NODE\n"
    "                    (--token TOKEN | --token-file FILE) --work-dir DIR\n"
    "                    [--port N (default 0)] [--bind 127.0.0.1] [--css-url URL/css]\n"
    "                    [--agbot-url URL (default: the Exchange URL without /v1)]\n"
    "                    [--version-file FILE] [--initial-version 1.0.0]\n"
    "                    [--package-type deb|rpm] [--arch amd64]\n"
    "                    [--interval SECONDS (NMP worker, default 60)]\n"
    "                    [--cron-file FILE (default /etc/cron.d/horizon_agent_upgrade)]\n"
    "                    [--cron-interval SECONDS (default 60)] [--install-command CMD]\n"
    "                    [--executor-log FILE] [--download-log FILE]\n"
    "Prints 'listening port=N' once it serves.\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "anax-standin: %s\n%s", msg.c_str(), kUsage);
  return 2;
}

bool seconds(const std::string& value, std::chrono::milliseconds* out) {
  char* end = nullptr;
  double s = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || !(s > 0) || s > 86400) return false;
  *out = std::max(std::chrono::milliseconds(1), std::chrono::milliseconds(static_cast<long long>(s * 1000)));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace agentd::anax;
  AnaxOptions o;
  std::string bind = "127.0.0.1";
  std::string token_file;
  int port = 0;
  auto text = [](std::string* field) {
    return [field](const std::string& v) {
      *field = v;
      return true;
    };
  };
  const std::map<std::string, std::function<bool(const std::string&)>> flags = {
      {"--state", text(&o.state_path)},
      {"--exchange-url", text(&o.exchange_url)},
      {"--css-url", text(&o.css_url)},
      {"--agbot-url", text(&o.agbot_url)},
      {"--org", text(&o.org)},
      {"--node", text(&o.node)},
      {"--token", text(&o.token)},
      {"--token-file", text(&token_file)},
      {"--work-dir", text(&o.work_dir)},
      {"--version-file", text(&o.version_file)},
      {"--initial-version", text(&o.initial_version)},
      {"--package-type",
       [&o](const std::string& v) { return (v == "deb" || v == "rpm") && (o.package_type = v, true); }},
      {"--arch", text(&o.arch)},
      {"--interval", [&o](const std::string& v) { return seconds(v, &o.worker_interval); }},
      {"--cron-file", text(&o.cron_file)},
      {"--cron-interval", [&o](const std::string& v) { return seconds(v, &o.cron_interval); }},
      {"--install-command", text(&o.install_command)},
      {"--executor-log", text(&o.executor_log)},
      {"--download-log", text(&o.download_log)},
      {"--bind", text(&bind)},
      {"--port",
       [&port](const std::string& v) {
         char* end = nullptr;
         long p = std::strtol(v.c_str(), &end, 10);
         port = static_cast<int>(p);
         return !v.empty() && *end == '\0' && p >= 0 && p <= 65535;
       }},
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::string value;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error("missing value for " + arg);
    }
    auto f = flags.find(arg);
    if (f == flags.end()) return usage_error("unknown option " + arg);
    if (!f->second(value)) return usage_error("bad " + arg + " '" + value + "'");
  }
  if (!token_file.empty()) {
    auto t = agentd::read_file(token_file, 4096);
    if (!t) return usage_error(t.error().describe());
    o.token = std::string(agentd::trim_space(*t));
  }

  sigset_t stop_signals = agentd::standin::block_stop_signals();
  auto anax = Anax::open(o);
  if (!anax) {
    std::fprintf(stderr, "anax-standin: %s\n", anax.error().describe().c_str());
    return 1;
  }
  Server server(**anax);
  return agentd::standin::serve_until_stopped(server, bind, port, stop_signals, "anax-standin");
}
