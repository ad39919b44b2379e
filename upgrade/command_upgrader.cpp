#include "upgrade/command_upgrader.h"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

namespace agentd {
namespace {

constexpr std::size_t kTailBytes = 300;  // of a failed command's output, in its error

std::string describe_failure(const ProcessResult& r, std::chrono::milliseconds timeout) {
  std::string what;
  if (r.timed_out) {
    double seconds = static_cast<double>(timeout.count()) / 1000.0;
    char buf[64];
    std::snprintf(buf, sizeof buf, "timed out after %g s", seconds);
    what = buf;
  } else if (r.signal != 0) {
    const char* name = sigabbrev_np(r.signal);
    what = "killed by signal " + std::to_string(r.signal) + (name ? std::string(" (SIG") + name + ")" : "");
  } else {
    what = "exit code " + std::to_string(r.exit_code);
  }
  std::string tail = output_tail(r.output, kTailBytes);
  return tail.empty() ? what + ", no output" : what + ": " + tail;
}

class CommandUpgrader final : public Upgrader {
 public:
  CommandUpgrader(UpgradeCommands cmds, ProcessRunner& runner) : cmds_(std::move(cmds)), runner_(runner) {}

  Result<std::string> running_version() override {
    if (cmds_.version.empty()) return fail(Errc::config, "version: no AGENTD_VERSION_COMMAND configured");
    auto out = run_step("version", cmds_.version, Target{});
    if (!out) return std::unexpected(out.error());
    std::string_view text = *out;
    std::string_view first = trim_space(text.substr(0, text.find('\n')));
    if (first.empty()) return fail(Errc::process, "version: the command printed no version");
    for (char c : first) {
      auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) {
        return fail(Errc::process, "version: '" + output_tail(first, kTailBytes) +
                                       "' is not a version (whitespace or control characters)");
      }
    }
    return std::string(first);
  }

  Status prepare(const Target& t, const ProgressFn& progress) override {
    if (cmds_.prepare.empty()) return {};
    if (progress) progress({"running the prepare command for " + t.version});
    return status_of(run_step("prepare", cmds_.prepare, t));
  }

  Status install(const Target& t) override {
    if (cmds_.install.empty()) return fail(Errc::config, "install: no AGENTD_INSTALL_COMMAND configured");
    return status_of(run_step("install", cmds_.install, t));
  }

  Status restart(const Target& t) override {
    if (cmds_.restart.empty()) return {};
    return status_of(run_step("restart", cmds_.restart, t));
  }

  Status check_health(const Target& t) override {
    if (cmds_.health.empty()) return {};
    return status_of(run_step("health", cmds_.health, t));
  }

  // No command means the previous version is not brought back: report that, so the
  // member writes `failed`, not `rolledback` (protocol.md §4.5).
  Status rollback(const Target& t) override {
    if (cmds_.rollback.empty()) {
      return fail(Errc::unsupported, "rollback: no AGENTD_ROLLBACK_COMMAND configured; " +
                                         t.previous_version + " is not restored");
    }
    return status_of(run_step("rollback", cmds_.rollback, t));
  }

 private:
  static Status status_of(const Result<std::string>& r) {
    if (!r) return std::unexpected(r.error());
    return {};
  }

  // Runs one step; its output on success, else an error naming the step.
  Result<std::string> run_step(const char* step, const std::string& command, const Target& t) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", command};
    // Set even when empty, so nothing leaks in from agentd's own environment.
    spec.env = {{"AGENTD_STEP", step},
                {"AGENTD_TARGET_VERSION", t.version},
                {"AGENTD_PREVIOUS_VERSION", t.previous_version},
                {"AGENTD_STATE_DIR", cmds_.state_dir}};
    spec.timeout = cmds_.timeout;
    auto r = runner_.run(spec);
    if (!r) return fail(r.error().code, std::string(step) + ": " + r.error().message);
    if (r->exit_code != 0 || r->signal != 0 || r->timed_out) {
      return fail(Errc::process, std::string(step) + ": " + describe_failure(*r, cmds_.timeout));
    }
    return std::move(r->output);
  }

  UpgradeCommands cmds_;
  ProcessRunner& runner_;
};

}  // namespace

std::unique_ptr<Upgrader> make_command_upgrader(UpgradeCommands cmds, ProcessRunner& runner) {
  return std::make_unique<CommandUpgrader>(std::move(cmds), runner);
}

}  // namespace agentd
