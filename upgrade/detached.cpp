#include "upgrade/detached.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>
#include <thread>

#include "agentd/fd.h"
#include "agentd/files.h"
#include "agentd/process.h"
#include "agentd/spawn.h"

namespace agentd {
namespace {

using std::chrono::milliseconds;

constexpr std::size_t kTailBytes = 2048;           // detached.h: output_tail is the last ~2 KiB
constexpr milliseconds kMinPoll{10};               // a zero poll would spin
constexpr milliseconds kSystemctlTimeout{30'000};  // systemd-run / systemctl themselves
constexpr std::size_t kSmallFile = 4096;           // `started`, `exit-status`

// The wrapper around the command, run as `/bin/sh -c WRAPPER sh DIR SECS RECORD
// ARGV...` (with systemd: `/bin/sh DIR/wrapper.sh DIR SECS unit ARGV...`). RECORD "pid": it records its own
// pid in DIR/started (the detached session; with systemd the caller has recorded the unit name before). The
// exit status is written last, synced and renamed into place, so a present `exit-status` is always complete.
// Every value arrives as a positional parameter: nothing is spliced into the script text, so no quoting is
// needed.
constexpr const char* kWrapper =
    "dir=$1 secs=$2 record=$3\n"
    "shift 3\n"
    "if [ \"$record\" = pid ]; then\n"
    "  printf 'pid %s\\n' \"$$\" >\"$dir/started.tmp\" && mv -f \"$dir/started.tmp\" \"$dir/started\" || "
    "exit 125\n"
    "fi\n"
    "timeout --kill-after=10 \"$secs\" \"$@\" >\"$dir/output.log\" 2>&1\n"
    "status=$?\n"
    "printf '%s\\n' \"$status\" >\"$dir/exit-status.tmp\" || exit 125\n"
    "sync \"$dir/exit-status.tmp\" 2>/dev/null\n"
    "mv -f \"$dir/exit-status.tmp\" \"$dir/exit-status\" || exit 125\n"
    "sync \"$dir\" 2>/dev/null\n"
    "exit \"$status\"\n";

std::string errno_text(int err) {
  return std::strerror(err);
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// coreutils timeout takes fractional seconds.
std::string timeout_seconds(milliseconds t) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(t.count() / 1000),
                static_cast<long long>(t.count() % 1000));
  return buf;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// What `started` says about who runs the command.
struct Started {
  pid_t pid = 0;     // "pid N": the wrapper in a detached session
  std::string unit;  // "unit NAME": a transient systemd unit
};

std::optional<Started> parse_started(const std::string& content) {
  std::string line = trim(content);
  Started s;
  if (line.starts_with("pid ")) {
    std::string_view n = std::string_view(line).substr(4);
    long value = 0;
    auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), value);
    if (ec != std::errc() || ptr != n.data() + n.size() || value <= 1) return std::nullopt;
    s.pid = static_cast<pid_t>(value);
    return s;
  }
  if (line.starts_with("unit ") && line.size() > 5) {
    s.unit = line.substr(5);
    return s;
  }
  return std::nullopt;  // empty or torn (a crash before it reached the disk): not running
}

std::string read_proc(const std::string& path) {
  auto content = read_file(path, 1 << 20);
  return content ? *content : std::string();
}

// The wrapper is alive: not gone, not a zombie (an init that does not reap, or
// a subreaper caller, leaves one), and its command line still names this run
// directory (after a reboot the pid may belong to something else).
bool wrapper_alive(pid_t pid, const std::string& dir) {
  std::string base = "/proc/" + std::to_string(pid);
  std::string stat = read_proc(base + "/stat");
  if (stat.empty()) {
    if (exists("/proc/self/stat")) return false;   // /proc is there: the process is gone
    return ::kill(pid, 0) == 0 || errno == EPERM;  // no /proc: the best we can tell
  }
  auto close_paren = stat.rfind(')');
  if (close_paren != std::string::npos && close_paren + 2 < stat.size()) {
    char state = stat[close_paren + 2];
    if (state == 'Z' || state == 'X' || state == 'x') return false;
  }
  std::string cmdline = read_proc(base + "/cmdline");
  if (cmdline.empty()) return true;  // unreadable (hidepid): trust the pid
  std::size_t start = 0;
  while (start < cmdline.size()) {
    std::size_t end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    if (std::string_view(cmdline).substr(start, end - start) == dir) return true;
    start = end + 1;
  }
  return false;
}

// Messages from the forked children to the caller over a CLOEXEC pipe; its EOF
// means the wrapper was exec'd (or every child is gone).
struct Report {
  int kind;
  int value;
};
enum ReportKind : int { kPid = 1, kSetsidFailed, kForkFailed, kDupFailed, kExecFailed };

void report(int fd, int kind, int value) {
  Report r{kind, value};
  (void)!::write(fd, &r, sizeof r);  // at most PIPE_BUF: atomic
}

// The grandchild: only async-signal-safe calls until execve.
[[noreturn]] void exec_wrapper(char* const* argv, char* const* envp, int devnull, int report_w, int max_fd) {
  reset_signals_for_exec();
  if (dup2(devnull, STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0 ||
      dup2(devnull, STDERR_FILENO) < 0) {
    report(report_w, kDupFailed, errno);
    _exit(127);
  }
  // The same working directory as a systemd unit has, whichever way it runs.
  (void)!chdir("/");
  close_descriptors_on_exec(report_w, max_fd);
  execve(argv[0], argv, envp);
  report(report_w, kExecFailed, errno);
  _exit(127);
}

// Double fork + setsid: the wrapper runs in its own session, reparented to init
// (or a subreaper), so neither a stop of agentd's process group nor agentd's
// exit reaches it. Returns the wrapper's pid.
Result<pid_t> spawn_detached(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<char*> argv_ptrs = exec_array(args);
  std::vector<char*> env_ptrs = exec_array(env);

  auto devnull = above_stdio(Fd(::open("/dev/null", O_RDWR | O_CLOEXEC)));
  if (!devnull) return std::unexpected(devnull.error());
  if (!*devnull) return fail(Errc::process, "open /dev/null: " + errno_text(errno));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail(Errc::process, "pipe2: " + errno_text(errno));
  auto report_r = above_stdio(Fd(p[0]));
  auto report_w = above_stdio(Fd(p[1]));
  if (!report_r) return std::unexpected(report_r.error());
  if (!report_w) return std::unexpected(report_w.error());
  int max_fd = highest_fd_bound();

  pid_t child = ::fork();
  if (child < 0) return fail(Errc::process, "fork: " + errno_text(errno));
  if (child == 0) {
    int w = report_w->get();
    if (setsid() < 0) {
      report(w, kSetsidFailed, errno);
      _exit(1);
    }
    pid_t grandchild = fork();
    if (grandchild < 0) {
      report(w, kForkFailed, errno);
      _exit(1);
    }
    if (grandchild == 0) exec_wrapper(argv_ptrs.data(), env_ptrs.data(), devnull->get(), w, max_fd);
    report(w, kPid, grandchild);
    _exit(0);
  }
  report_w->reset();
  devnull->reset();
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }

  pid_t wrapper = 0;
  std::optional<Error> error;
  for (;;) {
    Report r{};
    ssize_t n = ::read(report_r->get(), &r, sizeof r);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof r)) break;  // EOF: the wrapper runs
    if (r.kind == kPid) {
      wrapper = r.value;
    } else if (!error) {
      const char* what = r.kind == kSetsidFailed ? "setsid"
                         : r.kind == kForkFailed ? "fork"
                         : r.kind == kDupFailed  ? "dup2"
                                                 : "cannot execute /bin/sh";
      error = Error{Errc::process, std::string(what) + ": " + errno_text(r.value)};
    }
  }
  if (error) return std::unexpected(*error);
  if (wrapper <= 0) return fail(Errc::process, "the detached child exited without starting the command");
  return wrapper;
}

std::vector<std::string> wrapper_args(const DetachedSpec& spec, const std::string& dir, const char* record) {
  std::vector<std::string> args = {"/bin/sh", "-c", kWrapper, "sh", dir, timeout_seconds(spec.timeout),
                                   record};
  args.insert(args.end(), spec.argv.begin(), spec.argv.end());
  return args;
}

// The last ~2 KiB of the output, starting at a line start when there is one,
// else at least not inside a UTF-8 sequence.
std::string read_tail(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size <= 0) return {};
  auto size = static_cast<std::size_t>(st.st_size);
  std::size_t want = std::min(size, kTailBytes);
  std::string buf(want, '\0');
  std::size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd.get(), buf.data() + got, want - got, static_cast<off_t>(size - want + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  buf.resize(got);
  if (want < size) {
    std::size_t nl = buf.find('\n');
    if (nl != std::string::npos && nl + 1 < buf.size()) {
      buf.erase(0, nl + 1);
    } else {
      std::size_t skip = 0;
      while (skip < buf.size() && skip < 3 && (static_cast<unsigned char>(buf[skip]) & 0xC0) == 0x80) ++skip;
      buf.erase(0, skip);
    }
  }
  return buf;
}

class DetachedRunnerImpl final : public DetachedRunner {
 public:
  explicit DetachedRunnerImpl(DetachedOptions options) : options_(std::move(options)) {
    if (options_.poll < kMinPoll) options_.poll = kMinPoll;
  }

  Result<DetachedResult> run(const DetachedSpec& spec) override {
    if (!valid_id(spec.id))
      return fail(Errc::config, "invalid run id '" + spec.id + "' (want 1..64 characters of [A-Za-z0-9_.-])");
    if (spec.argv.empty() || spec.argv[0].empty()) return fail(Errc::config, spec.id + ": no command given");
    if (spec.dir.empty()) return fail(Errc::config, spec.id + ": no run directory given");
    if (spec.timeout.count() <= 0) return fail(Errc::config, spec.id + ": the timeout must be positive");

    auto dir = prepare_dir(spec.dir);
    if (!dir) return std::unexpected(dir.error());
    Paths paths(*dir);

    // protocol.md §4.2: resume, never repeat blindly.
    if (exists(paths.exit_status)) return finish(paths, true);
    if (exists(paths.started)) {
      auto content = read_file(paths.started, kSmallFile);
      if (!content && content.error().code != Errc::not_found)
        return fail(Errc::io, spec.id + ": " + content.error().message);
      std::optional<Started> started = content ? parse_started(*content) : std::nullopt;
      if (started) {
        auto alive = is_alive(*started, paths.dir);
        if (!alive) return std::unexpected(alive.error());
        if (*alive) return wait(spec, paths, *started, true);
      }
      if (exists(paths.exit_status)) return finish(paths, true);  // it finished meanwhile
      // Started, gone, no exit status (a reboot midway): start again, keeping the old output.
      if (::rename(paths.output.c_str(), (paths.output + ".1").c_str()) != 0 && errno != ENOENT)
        return fail(Errc::io, "cannot rename " + paths.output + ": " + errno_text(errno));
    }
    auto started = options_.use_systemd ? start_unit(spec, paths) : start_detached(spec, paths);
    if (!started) return std::unexpected(started.error());
    return wait(spec, paths, *started, false);
  }

 private:
  struct Paths {
    explicit Paths(std::string d)
        : dir(std::move(d)),
          started(dir + "/started"),
          output(dir + "/output.log"),
          exit_status(dir + "/exit-status") {}
    std::string dir;
    std::string started;
    std::string output;
    std::string exit_status;
  };

  bool is_cancelled() const { return options_.cancelled && options_.cancelled(); }

  // false: a stop request cut the wait short.
  bool pause() {
    if (options_.sleeper) return options_.sleeper->sleep_for(options_.poll);
    std::this_thread::sleep_for(options_.poll);
    return true;
  }

  // Creates the run directory (0700) when missing; returns its canonical path,
  // which the wrapper's command line carries (see wrapper_alive).
  static Result<std::string> prepare_dir(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return fail(Errc::io, "cannot create run directory " + dir + ": " + errno_text(errno));
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return fail(Errc::io, "run directory " + dir + " is not a directory");
    char* real = ::realpath(dir.c_str(), nullptr);
    if (real == nullptr)
      return fail(Errc::io, "cannot resolve run directory " + dir + ": " + errno_text(errno));
    std::string out(real);
    ::free(real);
    return out;
  }

  Result<Started> start_detached(const DetachedSpec& spec, const Paths& paths) {
    auto pid = spawn_detached(wrapper_args(spec, paths.dir, "pid"), child_environment(spec.env));
    if (!pid)
      return fail(Errc::process, spec.id + ": cannot start " + spec.argv[0] + ": " + pid.error().message);
    return Started{*pid, {}};
  }

  Result<Started> start_unit(const DetachedSpec& spec, const Paths& paths) {
    std::string unit = "agentd-" + spec.id;
    // Recorded before the unit exists: an agentd that dies right after
    // systemd-run must find the unit, not start a second one.
    if (auto w = write_file_atomic(paths.started, "unit " + unit + "\n", 0600); !w)
      return std::unexpected(w.error());
    std::vector<std::string> argv = {
        "systemd-run", "--unit=" + unit,        "--collect", "--quiet", "--service-type=exec",
        "-p",          "KillMode=control-group"};
    for (const auto& [k, v] : spec.env) argv.push_back("--setenv=" + k + "=" + v);
    // A multi-line script in ExecStart= breaks when systemd re-reads the
    // transient unit (a package's postinst running daemon-reload): the unit
    // runs the wrapper from a file in the run directory instead.
    const std::string script = paths.dir + "/wrapper.sh";
    if (auto w = write_file_atomic(script, kWrapper, 0600); !w) return std::unexpected(w.error());
    std::vector<std::string> wrapper = {"/bin/sh", script, paths.dir, timeout_seconds(spec.timeout), "unit"};
    wrapper.insert(wrapper.end(), spec.argv.begin(), spec.argv.end());
    argv.insert(argv.end(), wrapper.begin(), wrapper.end());

    ProcessSpec ps;
    ps.argv = std::move(argv);
    ps.timeout = kSystemctlTimeout;
    auto r = make_process_runner(options_.cancelled)->run(ps);
    if (!r) return fail(r.error().code, spec.id + ": systemd-run: " + r.error().message);
    if (r->exit_code != 0) {
      // Not started: a later run may start it again.
      if (!r->timed_out) ::unlink(paths.started.c_str());
      return fail(Errc::process, spec.id + ": systemd-run " + unit + " failed (exit " +
                                     std::to_string(r->exit_code) + "): " + trim(r->output));
    }
    return Started{0, unit};
  }

  Result<bool> is_alive(const Started& started, const std::string& dir) {
    if (started.pid > 0) return wrapper_alive(started.pid, dir);
    ProcessSpec ps;
    ps.argv = {"systemctl", "is-active", started.unit + ".service"};
    ps.timeout = kSystemctlTimeout;
    auto r = make_process_runner(options_.cancelled)->run(ps);
    if (!r) return fail(r.error().code, "systemctl is-active " + started.unit + ": " + r.error().message);
    if (r->exit_code == 0) return true;
    std::string state = trim(r->output);
    return state == "activating" || state == "deactivating" || state == "reloading" || state == "refreshing";
  }

  Result<DetachedResult> wait(const DetachedSpec& spec, const Paths& paths, const Started& started,
                              bool resumed) {
    bool vanished = false;
    for (;;) {
      if (exists(paths.exit_status)) return finish(paths, resumed);
      if (vanished) {
        return fail(Errc::process,
                    spec.id + ": the install was killed before it finished (no exit status recorded in " +
                        paths.dir + ")");
      }
      if (is_cancelled())
        return fail(Errc::cancelled,
                    spec.id + ": stopped waiting (the command keeps running; " + paths.dir + ")");
      auto alive = is_alive(started, paths.dir);
      if (!alive) return std::unexpected(alive.error());
      // Gone: one more poll, as the exit status may have landed just before it exited.
      if (!*alive) vanished = true;
      if (!pause())
        return fail(Errc::cancelled,
                    spec.id + ": stopped waiting (the command keeps running; " + paths.dir + ")");
    }
  }

  static Result<DetachedResult> finish(const Paths& paths, bool resumed) {
    auto content = read_file(paths.exit_status, kSmallFile);
    if (!content) return fail(Errc::io, "cannot read " + paths.exit_status + ": " + content.error().message);
    std::string text = trim(*content);
    int code = -1;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), code);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || code < 0)
      return fail(Errc::process, paths.exit_status + " holds no exit status: '" + text + "'");
    DetachedResult result;
    result.exit_code = code;
    result.timed_out = code == 124 || code == 137;
    result.resumed = resumed;
    result.output_path = paths.output;
    result.output_tail = read_tail(paths.output);
    return result;
  }

  DetachedOptions options_;
};

}  // namespace

std::unique_ptr<DetachedRunner> make_detached_runner(DetachedOptions options) {
  return std::make_unique<DetachedRunnerImpl>(std::move(options));
}

}  // namespace agentd
