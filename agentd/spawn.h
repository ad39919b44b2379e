// What ProcessRunner (agentd/process.cpp) and DetachedRunner (upgrade/detached.cpp)
// share to start a command with fork and execve.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace agentd {

// The daemon's environment as KEY=VALUE, with `env` added or replacing.
std::vector<std::string> child_environment(const std::vector<std::pair<std::string, std::string>>& env);

// execve's argv / envp: pointers into `strings`, then nullptr; valid while `strings` lives.
std::vector<char*> exec_array(const std::vector<std::string>& strings);

// How far close_descriptors_on_exec closes when the kernel has no close_range
// (RLIMIT_NOFILE, at most 65536). Taken before fork: getrlimit is no
// async-signal-safe call.
int highest_fd_bound();

// The rest runs in the forked child, before execve: async-signal-safe calls only.

// The daemon blocks SIGTERM/SIGINT for its signalfd and ignores SIGPIPE; both
// survive exec, so the command gets an empty signal mask and default dispositions.
void reset_signals_for_exec();

// Nothing but 0..2 crosses exec, whatever the rest of the process left open without
// O_CLOEXEC: every descriptor above 2 is marked close-on-exec (close_range), or on
// older kernels closed up to `max_fd`, except `keep` (an O_CLOEXEC pipe that stays
// open to report an exec failure).
void close_descriptors_on_exec(int keep, int max_fd);

}  // namespace agentd
