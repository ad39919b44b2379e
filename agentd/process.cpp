#include "process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "fd.h"
#include "spawn.h"

namespace agentd {
namespace {

using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kCancelPoll{100};  // process.h: stop requests are seen within 100 ms
constexpr milliseconds kKillGrace{1000};  // SIGTERM, then SIGKILL after this
constexpr milliseconds kReapPoll{20};     // group/child polling when no pidfd is available

std::string errno_text(int err) {
  return std::strerror(err);
}

Result<std::pair<Fd, Fd>> make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail(Errc::process, "pipe2: " + errno_text(errno));
  Fd r(p[0]), w(p[1]);
  auto rr = above_stdio(std::move(r));
  if (!rr) return std::unexpected(rr.error());
  auto ww = above_stdio(std::move(w));
  if (!ww) return std::unexpected(ww.error());
  return std::pair<Fd, Fd>{std::move(*rr), std::move(*ww)};
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// execvp's search, done before fork so that the child only calls async-signal-safe
// functions. The child's own PATH (after spec.env) is the one searched.
Result<std::string> resolve_program(const std::string& name, const std::vector<std::string>& env) {
  if (name.empty()) return fail(Errc::process, "empty program name");
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const std::string& e : env) {
    if (e.starts_with("PATH=")) path = e.substr(5);
  }
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    start = end + 1;
  }
  return fail(Errc::process, name + ": command not found in PATH (" + path + ")");
}

// Runs in the forked child: only async-signal-safe calls until execve.
[[noreturn]] void exec_child(const char* program, char* const* argv, char* const* envp, int devnull,
                             int out_w, int err_w, int max_fd) {
  reset_signals_for_exec();
  // Own process group, so a timeout reaches every process the command started.
  setpgid(0, 0);
  if (dup2(devnull, STDIN_FILENO) < 0 || dup2(out_w, STDOUT_FILENO) < 0 || dup2(out_w, STDERR_FILENO) < 0) {
    int err = errno;
    (void)!write(err_w, &err, sizeof err);
    _exit(127);
  }
  close_descriptors_on_exec(err_w, max_fd);
  execve(program, argv, envp);
  int err = errno;
  (void)!write(err_w, &err, sizeof err);
  _exit(127);
}

Fd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) return Fd(static_cast<int>(fd));
#else
  (void)pid;
#endif
  return Fd();  // older kernels (< 5.3): fall back to polling waitpid
}

// Keeps the last `cap` bytes of everything the child wrote.
void append_tail(std::string& out, std::string_view chunk, std::size_t cap) {
  out.append(chunk);
  // Trim in batches so a chatty child costs amortised O(n).
  if (out.size() > 2 * cap + 4096) out.erase(0, out.size() - cap);
}

// True while a live (not zombie) process remains in the group. Zombies count as
// members for kill(2) until their parent reaps them, and an init that does not
// reap (some containers) would hold up every stop by the full grace period.
bool group_alive(pid_t pgid) {
  struct DirCloser {
    void operator()(DIR* d) const { ::closedir(d); }
  };
  std::unique_ptr<DIR, DirCloser> proc(::opendir("/proc"));
  if (!proc) return ::kill(-pgid, 0) == 0 || errno == EPERM;
  while (dirent* e = ::readdir(proc.get())) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string path = std::string("/proc/") + e->d_name + "/stat";
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    char buf[512];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) continue;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    std::string_view stat(buf, static_cast<std::size_t>(n));
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string_view::npos) continue;
    std::string_view rest = stat.substr(close_paren + 1);
    char state = 0;
    long ppid = 0, pgrp = 0;
    std::string fields(rest);
    if (std::sscanf(fields.c_str(), " %c %ld %ld", &state, &ppid, &pgrp) != 3) continue;
    if (pgrp == pgid && state != 'Z' && state != 'X') return true;
  }
  return false;
}

class ForkProcessRunner final : public ProcessRunner {
 public:
  explicit ForkProcessRunner(std::function<bool()> cancelled) : cancelled_(std::move(cancelled)) {}

  Result<ProcessResult> run(const ProcessSpec& spec) override {
    if (spec.argv.empty()) return fail(Errc::process, "no command given (empty argv)");
    if (is_cancelled()) return fail(Errc::cancelled, spec.argv[0] + ": not started, stop requested");

    std::vector<std::string> env = child_environment(spec.env);
    auto program = resolve_program(spec.argv[0], env);
    if (!program) return std::unexpected(program.error());

    std::vector<char*> argv_ptrs = exec_array(spec.argv);
    std::vector<char*> env_ptrs = exec_array(env);

    auto devnull = above_stdio(Fd(::open("/dev/null", O_RDWR | O_CLOEXEC)));
    if (!devnull || !*devnull) return fail(Errc::process, "open /dev/null: " + errno_text(errno));
    auto out_pipe = make_pipe();
    if (!out_pipe) return std::unexpected(out_pipe.error());
    auto err_pipe = make_pipe();  // carries errno when exec fails; EOF when it succeeds
    if (!err_pipe) return std::unexpected(err_pipe.error());
    int max_fd = highest_fd_bound();

    pid_t pid = ::fork();
    if (pid < 0) return fail(Errc::process, spec.argv[0] + ": fork: " + errno_text(errno));
    if (pid == 0) {
      exec_child(program->c_str(), argv_ptrs.data(), env_ptrs.data(), devnull->get(), out_pipe->second.get(),
                 err_pipe->second.get(), max_fd);
    }
    // Also here, so the group exists before we might signal it.
    ::setpgid(pid, pid);
    out_pipe->second.reset();
    err_pipe->second.reset();
    devnull->reset();

    int exec_errno = 0;
    ssize_t n;
    do {
      n = ::read(err_pipe->first.get(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
      int status = 0;
      reap(pid, &status);
      return fail(Errc::process, "cannot execute " + *program + ": " + errno_text(exec_errno));
    }
    return supervise(spec, pid, std::move(out_pipe->first));
  }

 private:
  bool is_cancelled() const { return cancelled_ && cancelled_(); }

  static void reap(pid_t pid, int* status) {
    while (::waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
  }

  // Waits for the child while collecting its output; enforces the timeout and stop
  // requests with SIGTERM to the group, then SIGKILL after kKillGrace.
  Result<ProcessResult> supervise(const ProcessSpec& spec, pid_t pid, Fd out) {
    ProcessResult result;
    const auto deadline = Steady::now() + spec.timeout;
    Fd pidfd = open_pidfd(pid);
    bool exited = false;
    bool cancelled = false;
    std::optional<Steady::time_point> kill_at;  // set once SIGTERM went out
    bool killed = false;
    int status = 0;
    char buf[8192];

    auto start_kill = [&] {
      if (kill_at) return;
      ::kill(-pid, SIGTERM);
      kill_at = Steady::now() + kKillGrace;
    };

    for (;;) {
      auto now = Steady::now();
      if (!kill_at && now >= deadline) {
        result.timed_out = true;
        start_kill();
      }
      if (!kill_at && is_cancelled()) {
        cancelled = true;
        start_kill();
      }
      if (kill_at && !killed && Steady::now() >= *kill_at) {
        ::kill(-pid, SIGKILL);
        killed = true;
      }
      if (!exited) {
        pid_t w = ::waitpid(pid, &status, WNOHANG);
        if (w == pid) exited = true;
      }
      if (exited) {
        // Normal exit: what the child wrote is in the pipe already; a background
        // grandchild may keep the pipe open, so take what is there and stop.
        // After a kill: also wait (up to the grace) for the rest of the group.
        if (!kill_at || killed || !group_alive(pid)) break;
      }

      // Sleep until output, child exit, the next poll tick or a deadline.
      milliseconds wait = kCancelPoll;
      if (!killed) {
        auto until = kill_at ? *kill_at : deadline;
        auto left = std::chrono::duration_cast<milliseconds>(until - Steady::now()) + milliseconds{1};
        wait = std::clamp(left, milliseconds{0}, wait);
      }
      if (exited || !pidfd) wait = std::min(wait, kReapPoll);
      pollfd fds[2];
      nfds_t nfds = 0;
      if (out) fds[nfds++] = pollfd{out.get(), POLLIN, 0};
      if (pidfd && !exited) fds[nfds++] = pollfd{pidfd.get(), POLLIN, 0};
      int r = ::poll(fds, nfds, static_cast<int>(wait.count()));
      if (r < 0 && errno != EINTR) {
        int err = errno;
        ::kill(-pid, SIGKILL);
        if (!exited) reap(pid, &status);
        return fail(Errc::process, "poll: " + errno_text(err));
      }
      if (r > 0 && out && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t got = ::read(out.get(), buf, sizeof buf);
        if (got > 0) {
          append_tail(result.output, std::string_view(buf, static_cast<std::size_t>(got)), spec.max_output);
        } else if (got == 0 || errno != EINTR) {
          out.reset();  // EOF: every holder of the write end is gone
        }
      }
    }
    if (!exited) reap(pid, &status);
    drain(out, result.output, spec.max_output);
    if (result.output.size() > spec.max_output)
      result.output.erase(0, result.output.size() - spec.max_output);

    if (WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      result.exit_code = -1;
      result.signal = WTERMSIG(status);
    }
    if (cancelled) {
      return fail(Errc::cancelled, spec.argv[0] + ": stopped by a stop request");
    }
    return result;
  }

  // Reads whatever is buffered in the pipe without waiting for EOF.
  static void drain(Fd& out, std::string& output, std::size_t cap) {
    char buf[8192];
    while (out) {
      pollfd p{out.get(), POLLIN, 0};
      int r = ::poll(&p, 1, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return;
      ssize_t got = ::read(out.get(), buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return;
      append_tail(output, std::string_view(buf, static_cast<std::size_t>(got)), cap);
    }
  }

  std::function<bool()> cancelled_;
};

}  // namespace

std::unique_ptr<ProcessRunner> make_process_runner(std::function<bool()> cancelled) {
  return std::make_unique<ForkProcessRunner>(std::move(cancelled));
}

std::string_view trim_space(std::string_view s) {
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string output_tail(std::string_view output, std::size_t max_bytes) {
  output = trim_space(output);
  bool cut = output.size() > max_bytes;
  if (cut) {
    output.remove_prefix(output.size() - max_bytes);
    while (!output.empty() && (static_cast<unsigned char>(output.front()) & 0xC0) == 0x80)
      output.remove_prefix(1);
  }
  std::string line;
  bool space = false;
  for (char c : output) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      space = true;
      continue;
    }
    if (space && !line.empty()) line += ' ';
    space = false;
    line += c;
  }
  return cut ? "..." + line : line;
}

}  // namespace agentd
