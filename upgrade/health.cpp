#include "upgrade/health.h"

namespace agentd {

std::optional<std::string> health_problem(const HealthCheck& check, const std::string& package_version) {
  auto v = check.installed_version();
  if (!v) return "cannot read the agent's version: " + v.error().message;
  if (*v != package_version) return "the agent's package is at " + *v + ", expected " + package_version;
  if (check.units != nullptr && !check.agent_unit.empty()) {
    auto st = check.units->active_state(check.agent_unit);
    if (!st) return st.error().message;
    if (*st != "active") return check.agent_unit + " is " + *st;
  }
  if (auto n = check.hub->get_node(); !n)
    return "the hub does not answer with this node's credentials: " + n.error().message;
  if (check.command) {
    if (auto s = check.command(); !s) return s.error().message;
  }
  return std::nullopt;
}

Status wait_healthy(const HealthCheck& check, const std::string& package_version) {
  const Mono deadline = check.clock->mono() + check.timeout;
  for (;;) {
    auto problem = health_problem(check, package_version);
    if (!problem) return {};
    if (check.clock->mono() + check.retry >= deadline)
      return fail(Errc::process,
                  "not healthy within " + std::to_string(check.timeout.count() / 1000) + " s: " + *problem);
    if (!check.sleeper->sleep_for(check.retry)) return fail(Errc::cancelled, "stopping");
  }
}

}  // namespace agentd
