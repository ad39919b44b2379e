// Running an install outside agentd's own cgroup (issue: the package's restart
// of agentd must not kill the install midway). With systemd, the command runs
// as a transient unit (`systemd-run --unit agentd-<id> --collect`); without
// it, in a detached session (double fork + setsid). Either way a small shell
// wrapper records the command's output and exit status in a run directory, so
// an agentd restarted while the command runs finds its result instead of
// running it twice (protocol.md §4.2: resume, never repeat blindly).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agentd/backoff.h"
#include "agentd/result.h"

namespace agentd {

struct DetachedSpec {
  // Names the run: [A-Za-z0-9_.-], 1..64 characters. The transient unit is
  // "agentd-<id>.service".
  std::string id;
  std::vector<std::string> argv;  // argv[0] looked up in PATH
  std::vector<std::pair<std::string, std::string>> env;
  // Run directory (created 0700 when missing): `started` (the wrapper's pid or
  // the unit name), `output.log` (stdout+stderr), `exit-status` (written last,
  // atomically, by the wrapper).
  std::string dir;
  std::chrono::milliseconds timeout{1'800'000};  // the command is killed after this (coreutils timeout)
};

struct DetachedResult {
  int exit_code = -1;       // the command's exit status; 124 after the timeout (coreutils timeout)
  bool timed_out = false;   // exit_code 124 or 137 from the timeout wrapper
  bool resumed = false;     // the result of a run started by an earlier agentd process
  std::string output_tail;  // the last ~2 KiB of output.log
  std::string output_path;  // the whole output
};

struct DetachedOptions {
  // true: systemd-run (the caller checks that systemd runs: sd_booted() > 0 and
  // we are root); false: a detached session.
  bool use_systemd = false;
  std::function<bool()> cancelled;  // polled while waiting; true: stop waiting (the command keeps running)
  Sleeper* sleeper = nullptr;       // the waits between polls of the run directory (null: a short nanosleep)
  std::chrono::milliseconds poll{200};
};

class DetachedRunner {
 public:
  virtual ~DetachedRunner() = default;
  // Starts the command unless this run directory shows it already started, then
  // waits for its exit status:
  //   - finished earlier (exit-status present): its result, resumed = true, not run again;
  //   - started by an earlier process and still running: waited for, resumed = true;
  //   - started, not running, no exit status (the machine rebooted midway):
  //     started again (the run directory keeps the old output as output.log.1).
  // Errc::cancelled when `cancelled` turned true while waiting (the command
  // keeps running and the next call picks it up). A non-zero exit status is a
  // successful Result; errors only when the command could not be started or
  // the run directory is unusable.
  virtual Result<DetachedResult> run(const DetachedSpec& spec) = 0;
};

std::unique_ptr<DetachedRunner> make_detached_runner(DetachedOptions options);

}  // namespace agentd
