// Shared by the integration tests: real agentd processes against the stand-in,
// with the fast intervals of MemberOptions (lease 3 s).
#pragma once

#include <doctest/doctest.h>

#include <csignal>
#include <set>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace agentd::it {

using namespace agentd::harness;
using namespace std::chrono_literals;

// Long enough for a 5-member rollout with the fast intervals on a loaded 2-core machine.
inline constexpr auto kRolloutTimeout = 90s;

// protocol.md §7 over everything logged so far; with `final_state`, I4 as well.
// The rollout's job as anax names it ("org/nmp"), for members beside anax stand-ins.
inline std::string job_key(Rollout& r) {
  return r.options().org + "/" + r.options().nmp;
}

// anax's record of the job on every member, as "n1=successful n2=...".
inline std::string anax_statuses(Rollout& r) {
  std::string out;
  for (std::size_t i = 0; i < r.size(); ++i)
    out += r.member(i).node() + "=" + r.anax(i).status(job_key(r)).value_or("<none>") + " ";
  return out;
}

inline void check_invariants(Rollout& r, bool final_state) {
  std::string text = r.violations_text(final_state);
  CHECK_MESSAGE(text.empty(), "invariant violations:\n" << text);
}

// A member whose agentd ended by itself (not by kill -9 from the test) and how, or "".
inline std::string exited_member(Rollout& r) {
  for (auto& m : r.members()) {
    Process* p = m->process();
    if (p && !p->running() && p->exit_status()->signal != SIGKILL)
      return m->node() + " (exit code " + std::to_string(p->exit_status()->code) + ", signal " +
             std::to_string(p->exit_status()->signal) + ")";
  }
  return "";
}

// Waits for a rollout to finish; on failure shows the state and the logs. Gives
// up early when an agentd exits by itself.
inline void require_done(Rollout& r, const std::string& version,
                         std::chrono::seconds timeout = kRolloutTimeout) {
  std::string exited;
  poll_until(
      deadline_in(timeout),
      [&] {
        exited = exited_member(r);
        return !exited.empty() || r.rollout_done(version);
      },
      100ms);
  bool done = exited.empty() && r.rollout_done(version);
  if (!done) {
    std::string versions;
    for (auto& m : r.members()) versions += m->node() + "=" + m->version() + " ";
    std::string why = "rollout to " + version + " did not finish";
    if (!exited.empty()) why += "; the agentd of " + exited + " exited";
    FAIL_CHECK(why << "; agent versions: " << versions << "\n" << r.diagnostics());
  }
  REQUIRE(done);
}

// The node that holds the lease first (waiting for up to `timeout`); "" if none did.
inline std::string wait_for_holder(Rollout& r, std::chrono::seconds timeout = 30s) {
  std::string holder;
  r.wait_group(
      [&](const GroupDocument& doc) {
        auto h = lease_holders(doc);
        if (!h.empty()) holder = h.front();
        return !holder.empty();
      },
      deadline_in(timeout));
  return holder;
}

// The member whose entry halts the group (failed or rolledback), once one does;
// "" when none did within the timeout.
inline std::string wait_for_halting(Rollout& r, std::chrono::seconds timeout = kRolloutTimeout) {
  std::string failed;
  r.wait_group(
      [&](const GroupDocument& doc) {
        for (const auto& [node, e] : doc.entries)
          if (is_halting(e.state)) failed = node;
        return !failed.empty();
      },
      deadline_in(timeout));
  return failed;
}

// Total number of installs the fake agents of `r` ran, except on `except`.
inline int installs_except(Rollout& r, const std::string& except) {
  int n = 0;
  for (auto& m : r.members())
    if (m->node() != except) n += m->agent_calls("install");
  return n;
}

// From the hub's write log: the most entries in a lease state in any one logged
// state (stronger than I1, which lets an expired lease linger), and the number of
// distinct (node, epoch) leases, i.e. acquisitions.
struct LeaseStats {
  std::size_t most_at_once = 0;
  std::size_t acquisitions = 0;
};

inline LeaseStats lease_stats(Rollout& r) {
  auto writes = check::read_hub_log(r.hub().write_log_path());
  REQUIRE_MESSAGE(writes.has_value(), writes.error().message);
  std::set<std::pair<std::string, std::int64_t>> leases;
  LeaseStats stats;
  for (const auto& w : *writes) {
    std::size_t holding = 0;
    for (const auto& [node, e] : w.entries)
      if (holds_lease(e.state)) ++holding, leases.emplace(node, e.epoch);
    stats.most_at_once = std::max(stats.most_at_once, holding);
  }
  stats.acquisitions = leases.size();
  return stats;
}

}  // namespace agentd::it
