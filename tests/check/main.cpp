// invariant-check: protocol.md §7 over the stand-in's write log and the members'
// step logs. Exit 0: all hold; 1: a violation (one line each on stdout);
// 2: bad usage or unreadable/malformed input.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check/invariants.h"

namespace {

constexpr const char* kUsage =
    "usage: invariant-check --log HUB_WRITES.jsonl [--steps STEPS.jsonl]... [--target VERSION] [--final]\n"
    "\n"
    "Checks the invariants of the rolling-upgrade protocol (protocol.md section 7):\n"
    "  I1  at every logged revision, no more live leases (judged with the hub's clock) than maxConcurrent\n"
    "  I2  epochs of successive acquisitions in a group strictly increase\n"
    "  I3  every install/restart in a step log was taken under a live lease with the highest epoch\n"
    "  I4  (--final) every member ends at the target version (--target, else the highest targetVersion\n"
    "      seen), or the group is halted by a failed/rolledback entry with a message; no lease is left\n"
    "\n"
    "Exit status: 0 all hold, 1 a violation (one line each), 2 bad usage or unreadable/malformed input.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string log;
  std::vector<std::string> steps;
  agentd::check::Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "invariant-check: %s needs a value\n%s", flag, kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--log") {
      log = value("--log");
    } else if (arg == "--steps") {
      steps.push_back(value("--steps"));
    } else if (arg == "--target") {
      options.target = value("--target");
    } else if (arg == "--final") {
      options.final_state = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "invariant-check: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (log.empty()) {
    std::fprintf(stderr, "invariant-check: --log is required\n%s", kUsage);
    return 2;
  }
  auto violations = agentd::check::check_files(log, steps, options);
  if (!violations) {
    std::fprintf(stderr, "invariant-check: %s\n", violations.error().message.c_str());
    return 2;
  }
  for (const auto& v : *violations) std::printf("%s\n", agentd::check::to_string(v).c_str());
  return violations->empty() ? 0 : 1;
}
