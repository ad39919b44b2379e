// A lease holder's metrics mid-install, shared by the metrics unit tests (whose
// exact text is tests/monitoring/holder.prom) and the metrics bench.
#pragma once

#include "agentd/metrics.h"

namespace agentd::testing {

// A member mid-rollout: it holds the lease of epoch 42 and has begun its install.
inline MetricValues holder() {
  MetricValues v;
  MemberGauges& g = v.member;
  g.group = "line1";
  g.version = "1.0.0";
  g.target = "2.0.0";
  g.state = State::upgrading;
  g.progress = Progress::install_begun;
  g.lease_held = true;
  g.epoch = 42;
  g.lease_acquired_seconds = 1700000000;
  g.lease_duration_seconds = 120;
  g.rollout_active = true;
  g.members = 5;
  g.members_unhealthy = 1;
  g.hub_coordinates = true;
  MetricCounters& c = v.counters;
  c.hub_requests[static_cast<std::size_t>(HubRoute::group_read)][static_cast<std::size_t>(HubOutcome::ok)] =
      7;
  c.hub_requests[static_cast<std::size_t>(HubRoute::group_read)]
                [static_cast<std::size_t>(HubOutcome::not_modified)] = 3;
  c.hub_requests[static_cast<std::size_t>(HubRoute::group_write)]
                [static_cast<std::size_t>(HubOutcome::conflict)] = 1;
  c.write_conflicts = 1;
  c.renewals = 2;
  c.download_bytes = 1048576;
  c.download_resumes = 1;
  c.steps[static_cast<std::size_t>(StepMetric::install)][0] = 1;
  return v;
}

}  // namespace agentd::testing
