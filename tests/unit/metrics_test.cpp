// The metrics file: its exact text, the writer's rules, and promtool's verdict.
#include "agentd/metrics.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "agentd/log.h"
#include "support/metrics_sample.h"
#include "support/temp_dir.h"

using namespace agentd;
using agentd::testing::holder;
using agentd::testing::TempDir;

namespace {

class Events final : public Logger {
 public:
  void log(Level level, std::string_view event, std::initializer_list<Field>) override {
    events.emplace_back(event);
    levels.push_back(level);
  }
  int count(const std::string& e) const {
    return static_cast<int>(std::count(events.begin(), events.end(), e));
  }
  std::vector<std::string> events;
  std::vector<Level> levels;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The exact text of holder(), kept beside the monitoring tests, which run
// promtool check metrics on it (tests/monitoring/run.sh).
std::string holder_text() {
  return slurp((std::filesystem::path(__FILE__).parent_path() / "../monitoring/holder.prom").string());
}

}  // namespace

TEST_SUITE("metrics") {
  TEST_CASE("render: the exact text of a lease holder mid-install") {
    const std::string expected = holder_text();
    REQUIRE(!expected.empty());
    CHECK(render(holder()) == expected);
  }

  TEST_CASE("render: label values are escaped; an unknown hub hides the coordination gauge") {
    MetricValues v;
    v.member.group = "a\"b\\c\nd";
    std::string text = render(v);
    CHECK(text.find(R"(agentd_member_info{group="a\"b\\c\nd",version="",target_version=""} 1)") !=
          std::string::npos);
    CHECK(text.find("agentd_hub_coordination_supported") == std::string::npos);
    v.member.hub_coordinates = false;
    CHECK(render(v).find("\nagentd_hub_coordination_supported 0\n") != std::string::npos);
  }

  TEST_CASE("hub outcomes: 2xx ok, 304, 412, other 4xx, 5xx, no answer") {
    CHECK(hub_outcome(200) == HubOutcome::ok);
    CHECK(hub_outcome(201) == HubOutcome::ok);
    CHECK(hub_outcome(304) == HubOutcome::not_modified);
    CHECK(hub_outcome(412) == HubOutcome::conflict);
    CHECK(hub_outcome(404) == HubOutcome::client_error);
    CHECK(hub_outcome(503) == HubOutcome::server_error);
    CHECK(hub_outcome(0) == HubOutcome::transport_error);
  }

  TEST_CASE("Metrics counts by route and outcome, downloads and steps") {
    Metrics m;
    m.hub_request(HubRoute::changes, 200);
    m.hub_request(HubRoute::changes, 200);
    m.hub_request(HubRoute::group_write, 412);
    m.download(100, false);
    m.download(50, true);
    m.step(StepMetric::health, false);
    m.count(&MetricCounters::fences);
    MetricCounters c = m.counters();
    CHECK(c.hub_requests[static_cast<std::size_t>(HubRoute::changes)][0] == 2);
    CHECK(c.hub_requests[static_cast<std::size_t>(HubRoute::group_write)]
                        [static_cast<std::size_t>(HubOutcome::conflict)] == 1);
    CHECK(c.download_bytes == 150);
    CHECK(c.download_resumes == 1);
    CHECK(c.steps[static_cast<std::size_t>(StepMetric::health)][1] == 1);
    CHECK(c.fences == 1);
  }

  TEST_CASE("MetricsFile: written atomically with mode 0644 whatever the umask; nothing left beside it") {
    TempDir dir;
    Events log;
    MetricsFile file(dir.path() + "/", log);
    REQUIRE(file.path() == dir.path() + "/agentd.prom");
    const mode_t old_umask = ::umask(0077);
    file.update(holder(), Mono{0}, Mono{1000}, Mono{10'000});
    ::umask(old_umask);
    CHECK(slurp(file.path()) == holder_text());
    struct stat st {};
    REQUIRE(::stat(file.path().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir.path()))
      names.push_back(e.path().filename());
    CHECK(names == std::vector<std::string>{"agentd.prom"});
    CHECK(file.writes() == 1);
  }

  TEST_CASE("MetricsFile: a state change is written at once; counters wait for their interval") {
    TempDir dir;
    Events log;
    MetricsFile file(dir.path(), log);
    MetricValues v = holder();
    file.update(v, Mono{0}, Mono{1000}, Mono{10'000});
    file.update(v, Mono{100}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 1);  // nothing changed
    v.counters.renewals = 3;
    file.update(v, Mono{200}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 1);  // only a counter: waits
    CHECK(slurp(file.path()).find("agentd_lease_renewals_total 2\n") != std::string::npos);
    v.member.progress = Progress::installed;
    file.update(v, Mono{300}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 2);  // the member moved: at once, with the counters as they are
    CHECK(slurp(file.path()).find("agentd_lease_renewals_total 3\n") != std::string::npos);
    v.counters.renewals = 4;
    file.update(v, Mono{1000}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 2);
    file.update(v, Mono{1300}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 3);  // a counter interval later
    file.update(v, Mono{9000}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 3);  // same content
    file.update(v, Mono{11'300}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 4);  // the heartbeat rewrites it anyway (node_exporter's mtime stays fresh)
  }

  TEST_CASE("MetricsFile: a missing directory is logged once, never thrown; it is used once it exists") {
    TempDir dir;
    Events log;
    MetricsFile file(dir.path() + "/node-exporter", log);
    MetricValues v = holder();
    file.update(v, Mono{0}, Mono{1000}, Mono{10'000});
    v.member.progress = Progress::installed;
    file.update(v, Mono{10}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 0);
    CHECK(log.count("metrics-write-failed") == 1);
    // No node_exporter on this node: said, but not as a warning.
    CHECK(log.levels.at(0) == Level::info);
    std::filesystem::create_directory(dir.path() + "/node-exporter");
    v.member.progress = Progress::restart_begun;
    file.update(v, Mono{20}, Mono{1000}, Mono{10'000});
    CHECK(file.writes() == 1);
    CHECK(log.count("metrics-write-recovered") == 1);
    CHECK(std::filesystem::exists(file.path()));
  }

  TEST_CASE("MetricsFile: an unwritable directory is logged once; empty disables the file") {
    TempDir dir;
    Events log;
    // Not a directory: fails for root too (agentd runs as root without CAP_DAC_OVERRIDE).
    const std::string not_dir = dir.write("plain-file", "x");
    MetricsFile file(not_dir, log);
    for (int i = 0; i < 3; ++i) {
      MetricValues v = holder();
      v.member.epoch = i;
      file.update(v, Mono{i * 10}, Mono{1000}, Mono{10'000});
    }
    CHECK(file.writes() == 0);
    CHECK(log.count("metrics-write-failed") == 1);
    CHECK(log.levels.at(0) == Level::warn);  // there, but not writable: a fault
    if (::geteuid() != 0) {
      const std::string ro = dir.path() + "/ro";
      std::filesystem::create_directory(ro);
      ::chmod(ro.c_str(), 0555);
      MetricsFile read_only(ro, log);
      read_only.update(holder(), Mono{0}, Mono{1000}, Mono{10'000});
      CHECK(read_only.writes() == 0);
      CHECK(log.count("metrics-write-failed") == 2);
    }
    MetricsFile off("", log);
    CHECK_FALSE(off.enabled());
    off.update(holder(), Mono{0}, Mono{1000}, Mono{10'000});
    CHECK(off.writes() == 0);
  }

  TEST_CASE("promtool check metrics accepts the file") {
    if (::access("/usr/bin/promtool", X_OK) != 0) {
      MESSAGE("promtool is not installed (Debian package prometheus): skipped");
      return;
    }
    TempDir dir;
    Events log;
    MetricsFile file(dir.path(), log);
    MetricValues v = holder();
    v.member.hub_coordinates = false;
    v.member.group = "quote\"d";
    file.update(v, Mono{0}, Mono{1000}, Mono{10'000});
    const std::string out = dir.file("promtool.out");
    const std::string cmd = "/usr/bin/promtool check metrics < " + file.path() + " > " + out + " 2>&1";
    const int rc = std::system(cmd.c_str());
    CHECK_MESSAGE(rc == 0, slurp(out));
  }
}
