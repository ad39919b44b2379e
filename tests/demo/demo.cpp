// agentd-demo: a rolling agent upgrade across one HA group, live (architecture.md
// "The demo"). Starts the stand-in hub, an org, N nodes and a group; gives every
// member its own dpkg root with version 1.0.0 of a real `horizon` package and the
// publisher's key; starts one agentd per node (the package pipeline); builds and
// publishes a signed 2.0.0 and prints every member's transitions as they happen;
// then a summary (prepare, in parallel, and apply, one member at a time), a
// timeline chart (SVG) and the invariant check of protocol.md §7. Exits 1 if an
// invariant broke or the rollout did not finish.
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness/harness.h"
#include "harness/package_rollout.h"

using namespace agentd;
using namespace agentd::harness;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int members = 5;
  std::string out = "demo-out";
  double install_seconds = 1.0;
  int package_kib = 1024;
  std::string lease = "6";
  std::string heartbeat = "1";
  std::string fast_poll = "0.5";
  std::string poll = "2";
  std::string changes = "1";
  std::string idle_heartbeat = "60";
  int timeout_seconds = 0;  // 0: scaled with the group size
  bool quiet = false;
  double idle_minutes = 0;          // > 0: measure a quiet group instead of rolling out
  bool beside_anax = true;          // each member beside an anax stand-in (--alone: not)
  std::string anax_interval = "1";  // the anax stand-ins' NMP worker period (anax: 60 s)
  std::string log_level = "info";   // the members' AGENTD_LOG_LEVEL
};

const char* kUsage =
    "usage: agentd-demo [--members N] [--out DIR] [--install-seconds S] [--package-kib N] [--lease S]\n"
    "                   [--heartbeat S] [--fast-poll S] [--poll S] [--changes S] [--idle-heartbeat S]\n"
    "                   [--timeout S] [--alone | --anax-interval S] [--log-level LEVEL] [--quiet]\n"
    "       agentd-demo --idle MINUTES [--members N] [--alone] [interval options]\n"
    "\n"
    "Rolls agent version 1.0.0 -> 2.0.0 across an HA group of N members (default 5), each\n"
    "member a real agentd process with its own state directory and its own dpkg root,\n"
    "against the Exchange stand-in on a free loopback port. 2.0.0 is a real .deb (about\n"
    "--package-kib KiB; its postinst takes --install-seconds) published with a manifest\n"
    "signed by a key every member pins: each member downloads and verifies it at once\n"
    "(prepare, no lease), then installs it with dpkg, checks its health and releases, one\n"
    "member at a time (apply, under the lease).\n"
    "\n"
    "As on a real node, every member runs beside an anax stand-in (the Open Horizon\n"
    "agent's node management: its NMP worker polls the hub every --anax-interval\n"
    "seconds, default 1, anax: 60; downloads anax's bundle; asks the agbot for the\n"
    "group's lock). agentd takes anax's job, installs the bundle anax downloaded and\n"
    "reports through anax's local API; anax's cron executor is disarmed, as agentd's\n"
    "package does. --alone runs agentd without anax (it polls the hub and downloads\n"
    "itself).\n"
    "\n"
    "Prints one line per member per\n"
    "transition, then a summary; writes DIR/timeline.svg, DIR/summary.txt,\n"
    "DIR/hub-writes.jsonl and each member's log (--log-level debug: every decision's\n"
    "status text too). Exit status 0 when the rollout\n"
    "completed, every root runs 2.0.0 and protocol.md's invariants I1-I4 hold, 1\n"
    "otherwise, 2 on a usage error.\n"
    "\n"
    "With --idle, nothing is published: the members sit in a quiet group for MINUTES\n"
    "(agentd's default intervals unless given) and the demo reports the hub requests per\n"
    "member per minute, the share answered 304, and each agentd's peak RSS. Beside\n"
    "anax (unless --alone), agentd reads its node and jobs from anax's local API and\n"
    "anax's own hub requests (its worker every 60 s) are reported apart.\n";

bool parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (k == "--help" || k == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (k == "--quiet") {
      a->quiet = true;
    } else if (k == "--beside-anax") {
      a->beside_anax = true;
    } else if (k == "--alone") {
      a->beside_anax = false;
    } else if (!value(&v)) {  // NOLINT(bugprone-branch-clone): as an unknown option, below
      return false;
    } else if (k == "--members") {
      a->members = std::atoi(v.c_str());
      if (a->members < 1 || a->members > 200) return false;
    } else if (k == "--out") {
      a->out = v;
    } else if (k == "--install-seconds") {
      a->install_seconds = std::atof(v.c_str());
    } else if (k == "--package-kib") {
      a->package_kib = std::atoi(v.c_str());
      if (a->package_kib < 0 || a->package_kib > 1024 * 1024) return false;
    } else if (k == "--lease") {
      a->lease = v;
    } else if (k == "--heartbeat") {
      a->heartbeat = v;
    } else if (k == "--fast-poll") {
      a->fast_poll = v;
    } else if (k == "--poll") {
      a->poll = v;
    } else if (k == "--changes") {
      a->changes = v;
    } else if (k == "--idle-heartbeat") {
      a->idle_heartbeat = v;
    } else if (k == "--idle") {
      a->idle_minutes = std::atof(v.c_str());
      if (a->idle_minutes <= 0) return false;
    } else if (k == "--anax-interval") {
      a->anax_interval = v;
    } else if (k == "--timeout") {
      a->timeout_seconds = std::atoi(v.c_str());
    } else if (k == "--log-level") {
      a->log_level = v;
    } else {
      return false;
    }
  }
  return true;
}

double seconds(std::int64_t us) {
  return static_cast<double>(us) / 1e6;
}

// One member's state over time, from the hub's write log (hub clock, exact).
struct Span {
  std::string node;
  State state;
  std::int64_t from_us;
  std::int64_t to_us;
};

struct Timeline {
  std::int64_t t0_us = 0;
  std::int64_t t1_us = 0;
  std::vector<std::string> nodes;
  std::vector<Span> spans;
  int max_concurrent = 0;
};

Timeline build_timeline(const std::vector<check::HubWrite>& writes, const std::vector<std::string>& nodes,
                        std::int64_t t0_us) {
  Timeline tl;
  tl.nodes = nodes;
  tl.t0_us = t0_us;
  std::map<std::string, std::pair<State, std::int64_t>> current;
  for (const auto& w : writes) {
    int holding = 0;
    for (const auto& [n, e] : w.entries) holding += holds_lease(e.state) ? 1 : 0;
    tl.max_concurrent = std::max(tl.max_concurrent, holding);
    for (const auto& [n, e] : w.entries) {
      auto it = current.find(n);
      if (it == current.end()) {
        current[n] = {e.state, std::max(w.t_us, t0_us)};
      } else if (it->second.first != e.state) {
        if (w.t_us > t0_us)
          tl.spans.push_back({n, it->second.first, std::max(it->second.second, t0_us), w.t_us});
        it->second = {e.state, std::max(w.t_us, t0_us)};
      }
    }
    tl.t1_us = std::max(tl.t1_us, w.t_us);
  }
  for (const auto& [n, s] : current) tl.spans.push_back({n, s.first, s.second, tl.t1_us});
  return tl;
}

const char* color(State s) {
  switch (s) {
    case State::idle: return "#d9d9d9";
    case State::preparing: return "#9ecae1";
    case State::waiting: return "#fdd49e";
    case State::upgrading: return "#fc8d59";
    case State::verifying: return "#fee08b";
    case State::succeeded: return "#91cf60";
    case State::failed: return "#d73027";
    case State::rolledback: return "#762a83";
  }
  return "#000";
}

std::string svg(const Timeline& tl, const std::string& title) {
  const int left = 70, top = 50, row = 28, width = 900;
  double span_s = std::max(1.0, seconds(tl.t1_us - tl.t0_us));
  auto x = [&](std::int64_t us) { return left + static_cast<int>(seconds(us - tl.t0_us) / span_s * width); };
  int height = top + row * static_cast<int>(tl.nodes.size()) + 80;
  std::string s;
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%d\" y=\"24\" font-size=\"15\">%s</text>\n",
      left + width + 30, height, left, title.c_str());
  s += buf;
  for (std::size_t i = 0; i < tl.nodes.size(); ++i) {
    std::snprintf(buf, sizeof buf, "<text x=\"8\" y=\"%d\">%s</text>\n", top + static_cast<int>(i) * row + 18,
                  tl.nodes[i].c_str());
    s += buf;
  }
  for (const auto& sp : tl.spans) {
    auto idx = std::find(tl.nodes.begin(), tl.nodes.end(), sp.node) - tl.nodes.begin();
    if (idx >= static_cast<long>(tl.nodes.size())) continue;
    int x0 = x(sp.from_us), x1 = std::max(x(sp.to_us), x0 + 1);
    std::snprintf(
        buf, sizeof buf,
        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>%s %s %.2fs-%.2fs</title>"
        "</rect>\n",
        x0, top + static_cast<int>(idx) * row + 4, x1 - x0, row - 8, color(sp.state), sp.node.c_str(),
        to_string(sp.state), seconds(sp.from_us - tl.t0_us), seconds(sp.to_us - tl.t0_us));
    s += buf;
  }
  int axis_y = top + row * static_cast<int>(tl.nodes.size()) + 6;
  int step = span_s > 120 ? 30 : span_s > 40 ? 10 : span_s > 15 ? 5 : 1;
  for (int t = 0; t <= static_cast<int>(span_s); t += step) {
    int xx = left + static_cast<int>(t / span_s * width);
    std::snprintf(buf, sizeof buf,
                  "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/><text x=\"%d\" y=\"%d\" "
                  "text-anchor=\"middle\">%ds</text>\n",
                  xx, top - 4, xx, axis_y, xx, axis_y + 14, t);
    s += buf;
  }
  int lx = left;
  for (State st : {State::idle, State::preparing, State::waiting, State::upgrading, State::verifying,
                   State::succeeded, State::failed, State::rolledback}) {
    std::snprintf(
        buf, sizeof buf,
        "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"14\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
        lx, axis_y + 30, color(st), lx + 18, axis_y + 42, to_string(st));
    s += buf;
    lx += 105;
  }
  s += "</svg>\n";
  return s;
}

__attribute__((format(printf, 2, 3))) void appendf(std::string* s, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  *s += buf;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Requests per member from the stand-in's counters: (members, total, not modified).
struct RequestCounts {
  long long members = 0, total = 0, not_modified = 0, group_reads = 0, conflicts = 0, file_reads = 0;
};

// Callers named "o/n1#anax" are the anax stand-ins (counted apart: `anax`).
RequestCounts request_counts(Hub& hub, const std::string& prefix, bool anax = false) {
  RequestCounts c;
  for (const auto& [caller, s] : hub.stats()) {
    if (!caller.starts_with(prefix) || caller.ends_with("#anax") != anax) continue;
    ++c.members;
    c.total += s.total;
    c.not_modified += s.not_modified;
    c.group_reads += s.group_reads;
    c.conflicts += s.conflicts;
    c.file_reads += s.file_reads;
  }
  return c;
}

// CPU seconds (user + system) a process has used so far, from /proc/PID/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::atof(field.c_str());
    if (i == 15) stime = std::atof(field.c_str());
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long peak_rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// A quiet group: what one idle member costs the hub and the node (protocol.md §1 goal 6).
int idle(const Args& args, const std::vector<std::string>& interval_flags) {
  RolloutOptions ro;
  ro.members = args.members;
  ro.group = "line1";
  ro.publish = false;
  // agentd's defaults, unless an interval was given on the command line.
  auto pick = [&](const std::string& flag, const std::string& given, const std::string& dflt) {
    return std::find(interval_flags.begin(), interval_flags.end(), flag) != interval_flags.end() ? given
                                                                                                 : dflt;
  };
  ro.member.lease_seconds = pick("--lease", args.lease, "120");
  ro.member.heartbeat_seconds = pick("--heartbeat", args.heartbeat, "20");
  ro.member.fast_poll_seconds = pick("--fast-poll", args.fast_poll, "2");
  ro.member.poll_seconds = pick("--poll", args.poll, "10");
  ro.member.changes_seconds = pick("--changes", args.changes, "30");
  ro.member.idle_heartbeat_seconds = pick("--idle-heartbeat", args.idle_heartbeat, "600");
  ro.member.http_timeout_seconds = "30";
  ro.member.connect_timeout_seconds = "10";
  ro.member.log_level = args.log_level;
  if (args.beside_anax) {
    // anax polls the hub itself (its NMP worker, every 60 s here as in anax);
    // agentd learns of jobs from anax's local API.
    ro.anax = true;
    ro.anax_options.interval_seconds = "60";
    ro.anax_options.cron_file = false;
    ro.member.extra.push_back({"AGENTD_ANAX", "on"});
  }
  Rollout r(ro);
  r.start_all();
  if (!r.wait_group([&](const GroupDocument& d) { return d.entries.size() == r.size(); },
                    deadline_in(120s))) {
    std::fprintf(stderr, "members did not join the group in time\n%s", r.diagnostics().c_str());
    return 1;
  }
  RequestCounts before = request_counts(r.hub(), "o/n");
  RequestCounts anax_before = request_counts(r.hub(), "o/n", true);
  std::vector<double> cpu_before;
  for (auto& m : r.members()) cpu_before.push_back(cpu_seconds(m->process()->pid()));
  auto t0 = Clock::now();
  std::printf("idle       %d members in a quiet group for %.1f min (changes every %ss, idle heartbeat %ss)\n",
              args.members, args.idle_minutes, ro.member.changes_seconds.c_str(),
              ro.member.idle_heartbeat_seconds.c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long long>(args.idle_minutes * 60'000)));
  RequestCounts after = request_counts(r.hub(), "o/n");
  RequestCounts anax_after = request_counts(r.hub(), "o/n", true);
  double minutes = std::chrono::duration<double>(Clock::now() - t0).count() / 60.0;
  long rss_max = 0;
  double cpu_max = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    pid_t pid = r.member(i).process()->pid();
    rss_max = std::max(rss_max, peak_rss_kib(pid));
    cpu_max = std::max(cpu_max, cpu_seconds(pid) - cpu_before[i]);
  }
  r.stop_all();
  double per_member = after.members ? static_cast<double>(after.total - before.total) /
                                          static_cast<double>(after.members) / minutes
                                    : 0.0;
  long long reads = after.group_reads - before.group_reads;
  std::printf("  hub requests per idle member per minute: %.2f%s\n", per_member,
              args.beside_anax ? " (agentd, beside anax)" : "");
  if (args.beside_anax && anax_after.members > 0)
    std::printf("  hub requests per idle anax stand-in per minute: %.2f (anax's own, for comparison)\n",
                static_cast<double>(anax_after.total - anax_before.total) /
                    static_cast<double>(anax_after.members) / minutes);
  std::printf("  group reads in the window: %lld, answered 304: %lld\n", reads,
              after.not_modified - before.not_modified);
  std::printf("  peak RSS of one idle agentd (VmHWM, largest of %d): %ld KiB\n", args.members, rss_max);
  std::printf("  CPU of one idle agentd (largest of %d): %.2f s in %.1f min = %.4f%% of one core\n",
              args.members, cpu_max, minutes, 100.0 * cpu_max / (minutes * 60.0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, &args)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<std::string> given(argv + 1, argv + argc);
  if (args.idle_minutes > 0) {
    try {
      return idle(args, given);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "agentd-demo: %s\n", e.what());
      return 1;
    }
  }
  try {
    PackageRolloutOptions po;
    po.members = args.members;
    po.group = "line1";
    po.member.lease_seconds = args.lease;
    po.member.heartbeat_seconds = args.heartbeat;
    po.member.fast_poll_seconds = args.fast_poll;
    po.member.poll_seconds = args.poll;
    po.member.changes_seconds = args.changes;
    po.member.idle_heartbeat_seconds = args.idle_heartbeat;
    po.member.log_level = args.log_level;
    po.member.extra.emplace_back("AGENTD_HEALTH_TIMEOUT_SECONDS", "30");
    po.beside_anax = args.beside_anax;
    po.anax.interval_seconds = args.anax_interval;
    po.anax.cron_interval_seconds = "1";
    po.anax.cron_file = false;  // agentd's package disarms anax's cron executor
    PackageRollout p(po);
    Rollout& r = p.rollout();
    std::printf("hub        http://127.0.0.1:%d/v1 (stand-in), org o, group line1, %d members\n",
                r.hub().port(), args.members);
    std::printf("members    each with its own dpkg root holding %s, and the publisher's key pinned\n",
                p.installed(r.member(0)).c_str());
    if (args.beside_anax)
      std::printf("anax       beside every member: NMP worker every %ss, its cron executor disarmed\n",
                  args.anax_interval.c_str());
    std::string package =
        p.build(AgentPackage{.version = "2.0.0",
                             .padding_bytes = static_cast<std::size_t>(args.package_kib) * 1024,
                             .install_seconds = args.install_seconds});
    r.start_all();
    // Everyone joins at 1.0.0 before the new version is published.
    if (!r.wait_group([&](const GroupDocument& d) { return d.entries.size() == r.size(); },
                      deadline_in(60s))) {
      std::fprintf(stderr, "members did not join the group in time\n%s", r.diagnostics().c_str());
      return 1;
    }
    auto wall_us = [] {
      return std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
    std::int64_t t0_us = wall_us();
    auto t0 = Clock::now();
    std::printf("publish    %s (%.0f KiB), manifest signed with Ed25519, node management policy\n",
                std::filesystem::path(package).filename().c_str(),
                static_cast<double>(std::filesystem::file_size(package)) / 1024.0);
    p.publish("2.0.0", package);

    // Live: one line per member per transition, from the group document.
    std::map<std::string, State> last;
    for (const auto& [n, e] : r.group().entries) last[n] = e.state;
    const std::string job = r.options().org + "/" + r.options().nmp;
    std::map<std::string, std::string> last_job;  // anax's record of the job, per member
    auto anax_done = [&] {
      for (std::size_t i = 0; args.beside_anax && i < r.size(); ++i)
        if (last_job[r.member(i).node()] != "successful") return false;
      return true;
    };
    int timeout = args.timeout_seconds > 0 ? args.timeout_seconds : 60 + args.members * 20;
    auto deadline = deadline_in(std::chrono::seconds(timeout));
    bool done = false;
    while (Clock::now() < deadline) {
      GroupDocument d;
      try {
        d = r.group();
      } catch (const std::exception&) {
        continue;
      }
      double t = std::chrono::duration<double>(Clock::now() - t0).count();
      for (const auto& [n, e] : d.entries) {
        auto it = last.find(n);
        if (it != last.end() && it->second == e.state) continue;
        if (!args.quiet)
          std::printf("%7.2fs  %-4s %-10s -> %-10s epoch=%-4lld %s\n", t, n.c_str(),
                      it == last.end() ? "-" : to_string(it->second), to_string(e.state),
                      static_cast<long long>(e.epoch), e.message.c_str());
        last[n] = e.state;
      }
      for (std::size_t i = 0; args.beside_anax && i < r.size(); ++i) {
        const std::string& n = r.member(i).node();
        std::string st;
        try {
          st = r.anax(i).status(job).value_or("");
        } catch (const std::exception&) {
          continue;
        }
        if (st == last_job[n]) continue;
        if (!args.quiet && !st.empty())
          std::printf("%7.2fs  %-4s anax's job: %s\n", t, n.c_str(), st.c_str());
        last_job[n] = st;
      }
      done = anax_done() && d.entries.size() == r.size() &&
             std::all_of(d.entries.begin(), d.entries.end(), [](const auto& kv) {
               return kv.second.state == State::succeeded && kv.second.version == "2.0.0";
             });
      if (done) break;
      std::this_thread::sleep_for(50ms);
    }
    double makespan = std::chrono::duration<double>(Clock::now() - t0).count();
    // The agbot frees its lock once the holder's status is final (its monitor lags).
    bool agbot_free = done && poll_until(deadline_in(30s), [&] { return r.hub().agbot_locks().empty(); });
    RequestCounts requests = request_counts(r.hub(), "o/n");
    RequestCounts anax_requests = request_counts(r.hub(), "o/n", true);
    int executor_runs = 0;
    for (std::size_t i = 0; args.beside_anax && i < r.size(); ++i) executor_runs += r.anax(i).executor_runs();
    int grants = 0, releases = 0;
    for (const auto& e : r.hub().agbot_lock_events()) (e.op == "grant" ? grants : releases) += 1;
    r.stop_all();
    bool all_installed = p.all_installed("2.0.0 ii");

    std::filesystem::create_directories(args.out);
    std::filesystem::copy_file(r.hub().write_log_path(), args.out + "/hub-writes.jsonl",
                               std::filesystem::copy_options::overwrite_existing);
    for (auto& m : r.members())
      std::filesystem::copy_file(m->log_path(), args.out + "/" + m->node() + ".log",
                                 std::filesystem::copy_options::overwrite_existing);

    auto writes = check::read_hub_log(r.hub().write_log_path());
    if (!writes) throw std::runtime_error(writes.error().describe());
    std::vector<std::string> nodes;
    for (auto& m : r.members()) nodes.push_back(m->node());
    Timeline tl = build_timeline(*writes, nodes, t0_us);

    // Per member: prepare (parallel, no lease) and apply (under the lease) times.
    struct Times {
      std::int64_t prepare_from = 0, prepare_to = 0, lease_from = 0, lease_to = 0;
    };
    std::map<std::string, Times> times;
    for (const auto& sp : tl.spans) {
      Times& t = times[sp.node];
      if (sp.state == State::preparing) t.prepare_from = sp.from_us, t.prepare_to = sp.to_us;
      if (sp.state == State::upgrading) t.lease_from = sp.from_us;
      if (sp.state == State::verifying) t.lease_to = sp.to_us;
    }
    std::vector<std::pair<std::int64_t, std::int64_t>> leases;  // (acquire, release)
    std::vector<double> upgrade_s;
    for (const auto& [n, t] : times) {
      if (t.lease_from && t.lease_to) {
        leases.emplace_back(t.lease_from, t.lease_to);
        upgrade_s.push_back(seconds(t.lease_to - t.lease_from));
      }
    }
    std::sort(leases.begin(), leases.end());
    std::vector<double> gaps;
    for (std::size_t i = 1; i < leases.size(); ++i)
      gaps.push_back(seconds(leases[i].first - leases[i - 1].second));

    std::string summary;
    appendf(&summary, "\nsummary (%d members, fast poll %ss, lease %ss, install %.1fs)\n", args.members,
            args.fast_poll.c_str(), args.lease.c_str(), args.install_seconds);
    appendf(&summary, "  rollout %s in %.2fs (publish to last release)\n",
            done ? "completed" : "DID NOT COMPLETE", makespan);
    appendf(&summary, "  %-6s %26s %26s %s\n", "member", "prepare (download+verify)",
            "apply (install+health)", "dpkg in its root");
    for (const auto& n : nodes) {
      const Times& t = times[n];
      appendf(&summary, "  %-6s %8.2fs (%6.2f-%6.2f) %8.2fs (%6.2f-%6.2f) %s\n", n.c_str(),
              seconds(t.prepare_to - t.prepare_from), seconds(t.prepare_from - t0_us),
              seconds(t.prepare_to - t0_us), t.lease_to ? seconds(t.lease_to - t.lease_from) : 0.0,
              t.lease_to ? seconds(t.lease_from - t0_us) : 0.0,
              t.lease_to ? seconds(t.lease_to - t0_us) : 0.0, p.installed(r.member(n)).c_str());
    }
    appendf(&summary, "  prepare ran on every member at once (no lease); apply one member at a time\n");
    if (!gaps.empty()) {
      appendf(&summary,
              "  handoff gap (release -> next acquire): median %.3fs, max %.3fs over %zu handoffs\n",
              median(gaps), *std::max_element(gaps.begin(), gaps.end()), gaps.size());
    }
    if (!upgrade_s.empty()) {
      double under = std::accumulate(upgrade_s.begin(), upgrade_s.end(), 0.0);
      appendf(&summary, "  time under the lease per member: median %.2fs; makespan / sum of it: %.2f\n",
              median(upgrade_s), under > 0 ? makespan / under : 0.0);
      // The makespan above runs from publish, so it includes prepare (every member at
      // once) and the first read of the new target; the members' apply phase starts
      // together at the first acquisition.
      if (!leases.empty()) {
        std::int64_t last_release = 0;
        for (const auto& l : leases) last_release = std::max(last_release, l.second);
        double apply = seconds(last_release - leases.front().first);
        appendf(&summary, "  first acquisition to last release: %.2fs; / sum of time under the lease: %.3f\n",
                apply, under > 0 ? apply / under : 0.0);
      }
    }
    if (!leases.empty())
      appendf(&summary, "  412s per acquisition: %.2f (%lld answered 412, %zu acquisitions)\n",
              static_cast<double>(requests.conflicts) / static_cast<double>(leases.size()),
              requests.conflicts, leases.size());
    appendf(&summary, "  most members upgrading at once: %d\n", tl.max_concurrent);
    if (args.beside_anax) {
      int successful = 0;
      for (const auto& [n, st] : last_job) successful += st == "successful" ? 1 : 0;
      appendf(&summary, "  anax's job: successful on %d of %zu members; anax's cron executor ran %d times\n",
              successful, r.size(), executor_runs);
      appendf(&summary, "  agbot's group lock: %d grants, %d releases, %s\n", grants, releases,
              agbot_free ? "free at the end" : "STILL HELD");
      appendf(&summary,
              "  release files fetched from the CSS: %lld by anax, %lld by agentd (one download per node)\n",
              anax_requests.file_reads, requests.file_reads);
    } else {
      appendf(&summary, "  release files fetched from the CSS: %lld by agentd\n", requests.file_reads);
    }
    if (requests.members > 0)
      appendf(&summary, "  hub requests per member: %.1f (%lld group reads, %lld answered 304)\n",
              static_cast<double>(requests.total) / static_cast<double>(requests.members),
              requests.group_reads, requests.not_modified);
    auto violations = r.violations(true, std::string("2.0.0"));
    if (violations.empty()) {
      appendf(&summary, "  invariants I1-I4: hold\n");
    } else {
      appendf(&summary, "  invariants: %zu VIOLATED\n", violations.size());
      for (const auto& v : violations) appendf(&summary, "    %s\n", check::to_string(v).c_str());
    }
    appendf(&summary, "  %s\n",
            all_installed ? "every root runs 2.0.0 (dpkg-query)" : "NOT every root runs 2.0.0");
    appendf(&summary, "  timeline chart: %s/timeline.svg\n", args.out.c_str());
    std::fputs(summary.c_str(), stdout);
    std::ofstream(args.out + "/summary.txt") << summary;
    std::ofstream(args.out + "/timeline.svg")
        << svg(tl, "agentd rolling upgrade: " + std::to_string(args.members) + " members, 1.0.0 -> 2.0.0");
    if (!done) std::fputs(r.diagnostics(20).c_str(), stderr);
    bool anax_ok = !args.beside_anax || (agbot_free && executor_runs == 0);
    return done && all_installed && violations.empty() && anax_ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "agentd-demo: %s\n", e.what());
    return 1;
  }
}
