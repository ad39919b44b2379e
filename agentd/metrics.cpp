#include "metrics.h"

#include <sys/stat.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "files.h"
#include "log.h"

namespace agentd {

const char* to_string(HubRoute r) {
  switch (r) {
    case HubRoute::node: return "node";
    case HubRoute::node_policy: return "node_policy";
    case HubRoute::management_policies: return "management_policies";
    case HubRoute::agent_versions: return "agent_versions";
    case HubRoute::changes: return "changes";
    case HubRoute::group_read: return "group_read";
    case HubRoute::group_write: return "group_write";
    case HubRoute::group_member: return "group_member";
    case HubRoute::management_status: return "management_status";
    case HubRoute::software_version: return "software_version";
    case HubRoute::css_object: return "css_object";
  }
  return "?";
}

const char* to_string(HubOutcome o) {
  switch (o) {
    case HubOutcome::ok: return "ok";
    case HubOutcome::not_modified: return "not_modified";
    case HubOutcome::conflict: return "conflict";
    case HubOutcome::client_error: return "client_error";
    case HubOutcome::server_error: return "server_error";
    case HubOutcome::transport_error: return "transport_error";
  }
  return "?";
}

HubOutcome hub_outcome(long status) {
  if (status <= 0) return HubOutcome::transport_error;
  if (status == 304) return HubOutcome::not_modified;
  if (status == 412) return HubOutcome::conflict;
  if (status >= 500) return HubOutcome::server_error;
  if (status >= 400) return HubOutcome::client_error;
  return HubOutcome::ok;
}

const char* to_string(StepMetric s) {
  switch (s) {
    case StepMetric::install: return "install";
    case StepMetric::restart: return "restart";
    case StepMetric::health: return "health";
    case StepMetric::rollback: return "rollback";
  }
  return "?";
}

namespace {

// Label values are escaped as the text format requires: backslash, quote, newline.
std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string number(std::uint64_t v) {
  return std::to_string(v);
}

std::string number(std::int64_t v) {
  return std::to_string(v);
}

void head(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

template <class T>
void gauge(std::string& out, const char* name, const char* help, T value) {
  head(out, name, "gauge", help);
  out += std::string(name) + " " + number(value) + "\n";
}

void counter(std::string& out, const char* name, const char* help, std::uint64_t value) {
  head(out, name, "counter", help);
  out += std::string(name) + " " + number(value) + "\n";
}

constexpr State kStates[] = {State::idle,      State::preparing, State::waiting, State::upgrading,
                             State::verifying, State::succeeded, State::failed,  State::rolledback};
constexpr Progress kProgress[] = {Progress::none,           Progress::install_begun,  Progress::installed,
                                  Progress::restart_begun,  Progress::restarted,      Progress::healthy,
                                  Progress::failed,         Progress::rollback_begun, Progress::rolled_back,
                                  Progress::rollback_failed};

}  // namespace

std::string render_gauges(const MemberGauges& g) {
  std::string out;
  head(out, "agentd_member_state", "gauge",
       "The member's state in its group entry (protocol.md section 2), one-hot.");
  for (State s : kStates)
    out += std::string("agentd_member_state{state=\"") + to_string(s) + "\"} " + (s == g.state ? "1" : "0") +
           "\n";
  head(out, "agentd_member_progress", "gauge",
       "How far the disruptive part of the upgrade has gone on this node (persisted), one-hot.");
  for (Progress p : kProgress)
    out += std::string("agentd_member_progress{progress=\"") + to_string(p) + "\"} " +
           (p == g.progress ? "1" : "0") + "\n";
  head(out, "agentd_member_info", "gauge", "The member's group, running agent version and target version.");
  out += "agentd_member_info{group=\"" + label_value(g.group) + "\",version=\"" + label_value(g.version) +
         "\",target_version=\"" + label_value(g.target) + "\"} 1\n";
  gauge(out, "agentd_lease_held", "1 while this member holds the group's lease.",
        static_cast<std::int64_t>(g.lease_held));
  gauge(out, "agentd_lease_epoch", "The epoch (fencing token) of this member's latest lease.", g.epoch);
  gauge(out, "agentd_lease_acquired_timestamp_seconds",
        "Unix time this member acquired the lease it holds; 0 when it holds none.", g.lease_acquired_seconds);
  gauge(out, "agentd_lease_duration_seconds", "The lease duration this member writes on acquire.",
        g.lease_duration_seconds);
  gauge(out, "agentd_group_halted", "1 while the group is halted for this member's target version.",
        static_cast<std::int64_t>(g.halted));
  gauge(out, "agentd_group_rollout_active", "1 while any member of the group is in a rollout state.",
        static_cast<std::int64_t>(g.rollout_active));
  gauge(out, "agentd_group_members", "Members of the group.", g.members);
  gauge(out, "agentd_group_members_unhealthy",
        "Other members this member judges unhealthy during a rollout (protocol.md section 4.1).",
        g.members_unhealthy);
  if (g.hub_coordinates)
    gauge(out, "agentd_hub_coordination_supported",
          "1 when the hub has the coordination extension (protocol.md section 3), 0 when it has not.",
          static_cast<std::int64_t>(*g.hub_coordinates));
  gauge(out, "agentd_last_upgrade_success_timestamp_seconds",
        "Unix time of the last successful upgrade this agentd process saw; 0 when none.",
        g.last_success_seconds);
  return out;
}

std::string render(const MetricValues& v) {
  std::string out = render_gauges(v.member);
  const MetricCounters& c = v.counters;
  head(out, "agentd_hub_requests_total", "counter",
       "Requests to the hub by route and outcome (each retry counts).");
  for (std::size_t r = 0; r < kHubRoutes; ++r)
    for (std::size_t o = 0; o < kHubOutcomes; ++o) {
      if (c.hub_requests[r][o] == 0) continue;
      out += std::string("agentd_hub_requests_total{route=\"") + to_string(static_cast<HubRoute>(r)) +
             "\",outcome=\"" + to_string(static_cast<HubOutcome>(o)) + "\"} " + number(c.hub_requests[r][o]) +
             "\n";
    }
  counter(out, "agentd_write_conflicts_total",
          "Writes of this member's entry answered 412 (protocol.md section 4.3).", c.write_conflicts);
  counter(out, "agentd_fences_total", "Times this member found its lease ended before a step (section 4.4).",
          c.fences);
  counter(out, "agentd_lease_renewals_total", "Lease renewals that landed.", c.renewals);
  counter(out, "agentd_lost_writes_recovered_total",
          "Writes whose answer was lost, found landed by their writeId (section 4.6).",
          c.lost_writes_recovered);
  counter(out, "agentd_download_bytes_total", "Bytes of upgrade files downloaded.", c.download_bytes);
  counter(out, "agentd_download_resumes_total", "Download requests that continued a partial file.",
          c.download_resumes);
  counter(out, "agentd_download_failures_total", "Prepares (download and verification) that failed.",
          c.download_failures);
  head(out, "agentd_steps_total", "counter", "Install, restart, health check and rollback runs by outcome.");
  for (std::size_t s = 0; s < kStepMetrics; ++s)
    for (int ok = 0; ok < 2; ++ok)
      out += std::string("agentd_steps_total{step=\"") + to_string(static_cast<StepMetric>(s)) +
             "\",outcome=\"" + (ok == 0 ? "ok" : "failed") + "\"} " + number(c.steps[s][ok]) + "\n";
  counter(out, "agentd_halts_seen_total", "Times this member saw its group halt for its target.",
          c.halts_seen);
  return out;
}

// ---- Metrics -------------------------------------------------------------------

void Metrics::hub_request(HubRoute route, long http_status) {
  std::lock_guard lock(mu_);
  ++c_.hub_requests[static_cast<std::size_t>(route)][static_cast<std::size_t>(hub_outcome(http_status))];
}

void Metrics::download(std::uint64_t bytes, bool resumed) {
  std::lock_guard lock(mu_);
  c_.download_bytes += bytes;
  if (resumed) ++c_.download_resumes;
}

void Metrics::step(StepMetric s, bool ok) {
  std::lock_guard lock(mu_);
  ++c_.steps[static_cast<std::size_t>(s)][ok ? 0 : 1];
}

void Metrics::count(std::uint64_t MetricCounters::*counter) {
  std::lock_guard lock(mu_);
  ++(c_.*counter);
}

MetricCounters Metrics::counters() const {
  std::lock_guard lock(mu_);
  return c_;
}

// ---- MetricsFile ----------------------------------------------------------------

MetricsFile::MetricsFile(std::string dir, Logger& log) : dir_(std::move(dir)), log_(log) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
}

void MetricsFile::update(const MetricValues& v, Mono now, Mono counters_every, Mono every) {
  if (!enabled()) return;
  std::string gauges = render_gauges(v.member);
  const bool first = !written_at_;
  const bool state_changed = gauges != gauges_;
  const Mono since = first ? Mono::max() : now - *written_at_;
  if (!first && !state_changed && since < every) {
    if (since < counters_every) return;
    if (render(v) == content_) return;
  }
  std::string content = render(v);
  // Recorded whether or not the write works: a missing directory is tried again
  // at the next change or heartbeat, not on every pass.
  written_at_ = now;
  gauges_ = std::move(gauges);
  content_ = content;
  // node_exporter reads *.prom only: the temporary file (agentd.prom.tmp) is never read half written.
  auto s = write_file_atomic(path(), content, 0644);
  if (!s) {
    // No directory: node_exporter's textfile collector is not installed here, an
    // ordinary case (info). A directory agentd cannot write is a fault (warn).
    struct stat st {};
    const bool no_dir = ::stat(dir_.c_str(), &st) != 0 && errno == ENOENT;
    if (s.error().message != error_)
      log_.log(no_dir ? Level::info : Level::warn, "metrics-write-failed",
               {{"path", path()}, {"error", s.error().describe()}});
    error_ = s.error().message;
    return;
  }
  if (!error_.empty()) log_.info("metrics-write-recovered", {{"path", path()}});
  error_.clear();
  ++writes_;
}

}  // namespace agentd
