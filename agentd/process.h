// ProcessRunner: runs a child with a timeout and captured output. The child gets
// default signal dispositions and an unblocked mask (the daemon blocks SIGTERM
// for its signalfd) and its own process group, so a timeout kills the whole tree.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "result.h"

namespace agentd {

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::vector<std::pair<std::string, std::string>>
      env;  // added to (or replacing in) the daemon's environment
  std::chrono::milliseconds timeout{600'000};
  std::size_t max_output = 64 * 1024;  // stdout+stderr kept (the tail beyond is dropped)
};

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Errors only when the child could not be started or a stop was requested
  // (Errc::cancelled, the child group is sent SIGTERM, then SIGKILL after 1 s).
  // A non-zero exit is a successful Result with exit_code set.
  virtual Result<ProcessResult> run(const ProcessSpec& spec) = 0;
};

std::unique_ptr<ProcessRunner> make_process_runner(std::function<bool()> cancelled);

// `s` without leading and trailing white space (space, \t, \n, \r, \f, \v).
std::string_view trim_space(std::string_view s);

// The end of a command's output as one line, for an error message: the last
// `max_bytes` of the trimmed output (then with a leading "..."), control
// characters as spaces, runs of them collapsed; a cut never starts inside a
// UTF-8 sequence. "" when the command printed nothing but white space.
std::string output_tail(std::string_view output, std::size_t max_bytes);

}  // namespace agentd
