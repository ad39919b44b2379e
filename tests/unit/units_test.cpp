// UnitManager over sd-bus. Without systemd as PID 1 (CI containers) the factory
// must refuse clearly; on a systemd machine it must read real unit state.
#include "upgrade/units.h"

#include <doctest/doctest.h>
#include <systemd/sd-daemon.h>

#include <string>

using namespace agentd;

TEST_SUITE("units") {
  TEST_CASE("make_systemd_unit_manager refuses without systemd and reads unit state with it") {
    auto m = make_systemd_unit_manager();
    if (sd_booted() <= 0) {
      REQUIRE_FALSE(m.has_value());
      CHECK(m.error().code == Errc::unsupported);
      CHECK(m.error().message.find("systemd is not running") != std::string::npos);
      return;
    }
    // A systemd machine, unless the system bus is unreachable (then say why).
    if (!m.has_value()) {
      CHECK(m.error().code == Errc::unsupported);
      CHECK(m.error().message.find("system bus") != std::string::npos);
      return;
    }
    // init.scope always exists and is active while systemd runs.
    auto init = (*m)->active_state("init.scope");
    REQUIRE_MESSAGE(init.has_value(), init.error().describe());
    CHECK(*init == "active");

    auto missing = (*m)->active_state("agentd-no-such-unit-xyz.service");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == Errc::not_found);
    CHECK(missing.error().message.find("agentd-no-such-unit-xyz.service") != std::string::npos);

    // dbus.service runs wherever the system bus does (skip when it is named otherwise).
    auto dbus = (*m)->active_state("dbus");
    if (dbus.has_value() && *dbus == "active") {
      auto pid = (*m)->main_pid("dbus.service");
      REQUIRE_MESSAGE(pid.has_value(), pid.error().describe());
      CHECK(*pid > 1u);
    }
  }
}
