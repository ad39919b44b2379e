// The metrics file (agentd/metrics.h) of real members through a real rollout: the
// values node_exporter would read change as each member moves through its states.
#include <sys/stat.h>

#include <cstdlib>

#include "common.h"

using namespace agentd;
using namespace agentd::it;

namespace {

// The value of one series (`name{labels}` exactly as written) in a metrics file, or
// nullopt when the file or the series is missing.
std::optional<double> series(const Member& m, const std::string& name) {
  const std::string text = read_file(m.metrics_path());
  const std::string key = "\n" + name + " ";
  auto at = text.find(key);
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(text.c_str() + at + key.size(), nullptr);
}

double value(const Member& m, const std::string& name) {
  return series(m, name).value_or(-1);
}

// Polls until `name` of `m` satisfies `ok`; on failure shows the file.
void wait_metric(Rollout& r, const Member& m, const std::string& name, const std::function<bool(double)>& ok,
                 std::chrono::seconds timeout = kRolloutTimeout) {
  bool seen = poll_until(
      deadline_in(timeout),
      [&] {
        auto v = series(m, name);
        return v && ok(*v);
      },
      20ms);
  CHECK_MESSAGE(seen, m.node() << ": " << name << " never as expected; file:\n"
                               << read_file(m.metrics_path()) << "\n"
                               << r.diagnostics(20));
}

const std::string kReadOk = R"(agentd_hub_requests_total{route="group_read",outcome="ok"})";
const std::string kWriteOk = R"(agentd_hub_requests_total{route="group_write",outcome="ok"})";

}  // namespace

TEST_SUITE("integration") {
  TEST_CASE("metrics: a member's file follows it through idle, the lease, its install and success") {
    RolloutOptions o;
    o.members = 2;
    Rollout r(o);
    for (auto& m : r.members()) m->install_delay(1.5);  // renewals happen while it installs
    r.start_all();

    for (auto& m : r.members()) {
      wait_metric(r, *m, "agentd_hub_coordination_supported", [](double v) { return v == 1; });
      wait_metric(r, *m, "agentd_group_members", [](double v) { return v == 2; });
      CHECK(value(*m, "agentd_lease_duration_seconds") == 3);
    }
    std::string holder = wait_for_holder(r);
    REQUIRE(!holder.empty());
    Member& h = r.member(holder);
    Member& other = r.member(holder == "n1" ? "n2" : "n1");

    // The holder's file shows the lease and its epoch while it installs.
    wait_metric(r, h, "agentd_lease_held", [](double v) { return v == 1; });
    CHECK(value(h, R"(agentd_member_state{state="upgrading"})") == 1);
    const double epoch = value(h, "agentd_lease_epoch");
    CHECK(epoch > 0);
    CHECK(value(h, "agentd_lease_acquired_timestamp_seconds") > 1.6e9);
    CHECK(value(h, R"(agentd_member_info{group="g",version="1.0.0",target_version="2.0.0"})") == 1);
    CHECK(value(h, "agentd_group_rollout_active") == 1);
    CHECK(value(other, "agentd_lease_held") == 0);
    const double reads_then = value(h, kReadOk);
    wait_metric(r, h, "agentd_lease_renewals_total", [](double v) { return v >= 1; });

    // Success: the lease is gone, the version moved, the steps are counted, counters grew.
    wait_metric(r, h, R"(agentd_member_state{state="succeeded"})", [](double v) { return v == 1; });
    CHECK(value(h, "agentd_lease_held") == 0);
    CHECK(value(h, "agentd_lease_acquired_timestamp_seconds") == 0);
    CHECK(value(h, "agentd_lease_epoch") == epoch);
    CHECK(value(h, R"(agentd_member_info{group="g",version="2.0.0",target_version="2.0.0"})") == 1);
    CHECK(value(h, R"(agentd_steps_total{step="install",outcome="ok"})") == 1);
    CHECK(value(h, R"(agentd_steps_total{step="health",outcome="ok"})") == 1);
    CHECK(value(h, "agentd_last_upgrade_success_timestamp_seconds") > 1.6e9);
    CHECK(value(h, kReadOk) > reads_then);
    CHECK(value(h, kWriteOk) >= 3);  // waiting, acquire, release at least

    // The other member takes the next epoch, and the group goes quiet.
    wait_metric(r, other, R"(agentd_member_state{state="succeeded"})", [](double v) { return v == 1; });
    CHECK(value(other, "agentd_lease_epoch") > epoch);
    for (auto& m : r.members()) {
      wait_metric(r, *m, "agentd_group_rollout_active", [](double v) { return v == 0; });
      CHECK(value(*m, "agentd_group_halted") == 0);
      CHECK(value(*m, "agentd_group_members_unhealthy") == 0);
      struct stat st {};
      REQUIRE(::stat(m->metrics_path().c_str(), &st) == 0);
      CHECK((st.st_mode & 07777) == 0644);
    }
    MESSAGE("metrics file of " << holder << " after the rollout: " << read_file(h.metrics_path()).size()
                               << " bytes");
    check_invariants(r, true);
  }

  TEST_CASE("metrics: a failed install halts the group, and every member's file says so") {
    RolloutOptions o;
    o.members = 2;
    Rollout r(o);
    for (auto& m : r.members()) m->fail_install(true);
    r.start_all();
    // The first member to take the lease fails its install and rolls back.
    const std::string rolledback = R"(agentd_member_state{state="rolledback"})";
    bool failed = poll_until(deadline_in(kRolloutTimeout), [&] {
      return value(r.member(0), rolledback) == 1 || value(r.member(1), rolledback) == 1;
    });
    REQUIRE_MESSAGE(failed, r.diagnostics(20));
    Member& h = value(r.member(0), rolledback) == 1 ? r.member(0) : r.member(1);
    Member& other = &h == &r.member(0) ? r.member(1) : r.member(0);
    CHECK(value(h, R"(agentd_steps_total{step="install",outcome="failed"})") == 1);
    CHECK(value(h, R"(agentd_steps_total{step="rollback",outcome="ok"})") == 1);
    wait_metric(r, h, "agentd_group_halted", [](double v) { return v == 1; });
    wait_metric(r, other, "agentd_group_halted", [](double v) { return v == 1; });
    wait_metric(r, other, "agentd_halts_seen_total", [](double v) { return v == 1; });
    CHECK(value(other, "agentd_lease_held") == 0);
    CHECK(grep_lines(other.log_path(), "event=halt-seen").size() == 1);
  }

  TEST_CASE("metrics: an empty AGENTD_METRICS_DIR writes nothing; a missing directory is logged once") {
    RolloutOptions o;
    o.members = 2;
    o.publish = false;
    Rollout r(o);
    r.member(0).options().extra.push_back({"AGENTD_METRICS_DIR", ""});
    r.member(0).write_config();
    r.member(1).options().extra.push_back({"AGENTD_METRICS_DIR", r.member(1).dir() + "/no-such-dir"});
    r.member(1).write_config();
    r.start_all();
    bool logged = poll_until(deadline_in(30s), [&] {
      return !grep_lines(r.member(1).log_path(), "metrics-write-failed").empty();
    });
    CHECK_MESSAGE(logged, r.diagnostics(20));
    // Both keep working: their entries reach the group.
    CHECK(r.wait_group([](const GroupDocument& doc) { return doc.entries.size() == 2; }, deadline_in(30s)));
    CHECK(r.member(0).running());
    CHECK(r.member(1).running());
    CHECK(grep_lines(r.member(1).log_path(), "metrics-write-failed").size() == 1);
    CHECK_FALSE(file_exists(r.member(0).metrics_path()));
  }
}
