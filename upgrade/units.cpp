#include "upgrade/units.h"

#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

namespace agentd {
namespace {

using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kDestination = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManagerInterface = "org.freedesktop.systemd1.Manager";
constexpr const char* kUnitInterface = "org.freedesktop.systemd1.Unit";
constexpr const char* kServiceInterface = "org.freedesktop.systemd1.Service";
constexpr const char* kJobInterface = "org.freedesktop.systemd1.Job";
constexpr const char* kUnitPathPrefix = "/org/freedesktop/systemd1/unit";
constexpr milliseconds kJobPoll{50};  // restart(): how often the job and the unit are looked at

struct BusUnref {
  void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};
using BusPtr = std::unique_ptr<sd_bus, BusUnref>;

struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using MessagePtr = std::unique_ptr<sd_bus_message, MessageUnref>;

struct CFree {
  void operator()(char* p) const { std::free(p); }
};
using CString = std::unique_ptr<char, CFree>;

class BusError {
 public:
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd_bus_error_free(&error_); }
  sd_bus_error* get() { return &error_; }
  bool has_name(const char* name) const { return sd_bus_error_has_name(&error_, name) > 0; }

  // The D-Bus error's message and name, or the errno text of a local failure.
  std::string describe(int r) const {
    if (error_.message != nullptr && error_.name != nullptr)
      return std::string(error_.message) + " (" + error_.name + ")";
    if (error_.name != nullptr) return error_.name;
    return std::strerror(r < 0 ? -r : r);
  }

  // Refusals and unknown units get their own categories; the rest is a failed call.
  Errc code() const {
    if (has_name("org.freedesktop.systemd1.NoSuchUnit") || has_name("org.freedesktop.systemd1.LoadFailed"))
      return Errc::not_found;
    if (has_name(SD_BUS_ERROR_ACCESS_DENIED) ||
        has_name("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"))
      return Errc::forbidden;
    return Errc::process;
  }

 private:
  sd_bus_error error_ = SD_BUS_ERROR_NULL;
};

// systemd's Manager methods want full unit names; "horizon" means "horizon.service".
std::string unit_name(const std::string& unit) {
  static constexpr std::array<std::string_view, 11> kSuffixes = {
      ".service", ".socket", ".target", ".timer", ".mount", ".automount",
      ".path",    ".slice",  ".scope",  ".swap",  ".device"};
  for (std::string_view s : kSuffixes) {
    if (unit.size() > s.size() && std::string_view(unit).ends_with(s)) return unit;
  }
  return unit + ".service";
}

class SystemdUnitManager final : public UnitManager {
 public:
  explicit SystemdUnitManager(BusPtr bus) : bus_(std::move(bus)) {}

  Status restart(const std::string& unit, milliseconds timeout) override {
    const std::string name = unit_name(unit);
    const auto deadline = Steady::now() + timeout;
    BusError error;
    sd_bus_message* raw = nullptr;
    int r = sd_bus_call_method(bus_.get(), kDestination, kManagerPath, kManagerInterface, "RestartUnit",
                               error.get(), &raw, "ss", name.c_str(), "replace");
    MessagePtr reply(raw);
    if (r < 0) return fail(error.code(), "RestartUnit " + name + ": " + error.describe(r));
    const char* job_raw = nullptr;
    r = sd_bus_message_read(reply.get(), "o", &job_raw);
    if (r < 0 || job_raw == nullptr)
      return fail(Errc::process, "RestartUnit " + name + ": unreadable reply: " + std::strerror(-r));
    const std::string job(job_raw);

    // Our own unit: systemd stops this process as part of the job; nothing to wait for.
    if (own_unit() == name) return {};

    bool job_done = false;
    std::string state;
    for (;;) {
      if (!job_done) {
        auto done = job_finished(job);
        if (!done) return fail(done.error().code, "restart " + name + ": " + done.error().message);
        job_done = *done;
      }
      // Until the job is gone the unit may still show its state from before the stop.
      if (job_done) {
        auto s = active_state(name);
        if (!s) return std::unexpected(s.error());
        state = *s;
        if (state == "active") return {};
        if (state == "failed")
          return fail(Errc::process, "unit " + name + " failed to restart" + sub_state(name));
      }
      if (Steady::now() >= deadline) {
        return fail(Errc::process, "restart " + name + ": not finished after " +
                                       std::to_string(timeout.count()) + " ms (" +
                                       (job_done ? "ActiveState=" + state : "job " + job + " pending") + ")");
      }
      std::this_thread::sleep_for(kJobPoll);
    }
  }

  Result<std::string> active_state(const std::string& unit) override {
    const std::string name = unit_name(unit);
    auto path = unit_path(name);
    if (!path) return std::unexpected(path.error());
    // An object path reaches units that are not loaded (systemd loads them on
    // access, as `systemctl show` does); an unknown one has LoadState not-found.
    auto load = string_property(*path, kUnitInterface, "LoadState");
    if (!load) return fail(load.error().code, "unit " + name + ": " + load.error().message);
    if (*load == "not-found") return fail(Errc::not_found, "unit " + name + " not found");
    auto state = string_property(*path, kUnitInterface, "ActiveState");
    if (!state) return fail(state.error().code, "unit " + name + ": " + state.error().message);
    return *state;
  }

  Result<unsigned> main_pid(const std::string& unit) override {
    const std::string name = unit_name(unit);
    auto path = unit_path(name);
    if (!path) return std::unexpected(path.error());
    BusError error;
    std::uint32_t pid = 0;
    int r = sd_bus_get_property_trivial(bus_.get(), kDestination, path->c_str(), kServiceInterface, "MainPID",
                                        error.get(), 'u', &pid);
    if (r < 0) return fail(error.code(), "unit " + name + ": MainPID: " + error.describe(r));
    return static_cast<unsigned>(pid);
  }

 private:
  static Result<std::string> unit_path(const std::string& name) {
    char* raw = nullptr;
    int r = sd_bus_path_encode(kUnitPathPrefix, name.c_str(), &raw);
    CString path(raw);
    if (r < 0 || !path) return fail(Errc::internal, "unit " + name + ": cannot encode its object path");
    return std::string(path.get());
  }

  Result<std::string> string_property(const std::string& path, const char* interface, const char* property) {
    BusError error;
    char* raw = nullptr;
    int r = sd_bus_get_property_string(bus_.get(), kDestination, path.c_str(), interface, property,
                                       error.get(), &raw);
    CString value(raw);
    if (r < 0) return fail(error.code(), std::string(property) + ": " + error.describe(r));
    return std::string(value ? value.get() : "");
  }

  // A job's object exists while the job is queued or running.
  Result<bool> job_finished(const std::string& job) {
    BusError error;
    char* raw = nullptr;
    int r = sd_bus_get_property_string(bus_.get(), kDestination, job.c_str(), kJobInterface, "State",
                                       error.get(), &raw);
    CString value(raw);
    if (r >= 0) return false;
    if (error.has_name(SD_BUS_ERROR_UNKNOWN_OBJECT) || error.has_name("org.freedesktop.systemd1.NoSuchJob"))
      return true;
    return fail(error.code(), "job " + job + ": " + error.describe(r));
  }

  // " (SubState=...)" for an error message; empty when unreadable.
  std::string sub_state(const std::string& name) {
    auto path = unit_path(name);
    if (!path) return {};
    auto sub = string_property(*path, kUnitInterface, "SubState");
    return sub ? " (SubState=" + *sub + ")" : std::string();
  }

  // The unit this process runs in; empty outside one.
  static std::string own_unit() {
    char* raw = nullptr;
    int r = sd_pid_get_unit(0, &raw);
    CString unit(raw);
    if (r < 0 || !unit) return {};
    return unit.get();
  }

  BusPtr bus_;
};

}  // namespace

Result<std::unique_ptr<UnitManager>> make_systemd_unit_manager() {
  int booted = sd_booted();
  if (booted < 0)
    return fail(Errc::unsupported, std::string("systemd is not running: ") + std::strerror(-booted));
  if (booted == 0)
    return fail(Errc::unsupported,
                "systemd is not running (sd_booted: this system was not booted with systemd)");
  sd_bus* raw = nullptr;
  int r = sd_bus_open_system(&raw);
  BusPtr bus(raw);
  if (r < 0)
    return fail(Errc::unsupported, std::string("cannot connect to the system bus: ") + std::strerror(-r));
  return std::unique_ptr<UnitManager>(std::make_unique<SystemdUnitManager>(std::move(bus)));
}

}  // namespace agentd
