// agentd-soak: a chaos soak with real processes (issue 10 part 2). Each run is a
// rollout of real agentd members against the real stand-in (tests/harness, fast
// intervals: lease 3 s), through randomized faults: kill -9 of a member or of the
// hub, responses dropped or reset after commit, 5xx and latency (stand-in
// faults), a partitioned member, a wall-clock jump (faketime, monotonic clock
// untouched), a full disk under one member's state directory (a small tmpfs),
// and an admin's force-release. Then the world heals; the run must end
// converged or halted with a reason, and protocol.md §7 (I1-I4, I3 as amended)
// must hold over the hub's write log and the members' step logs.
//
//   agentd-soak [--runs N | --minutes M] [--seed S] [--keep]
// Exit status: 0 every run held the invariants and converged or halted; 1 not;
// 2 bad usage or a set-up failure.
#include <sys/mount.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agentd/json.h"
#include "check/invariants.h"
#include "harness/harness.h"

using namespace agentd;
using namespace agentd::harness;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kUsage =
    "usage: agentd-soak [--runs N | --minutes M] [--seed S] [--keep]\n"
    "  --runs N     this many rollouts (default 5)\n"
    "  --minutes M  rollouts until M minutes have passed (for hours: --minutes 240)\n"
    "  --seed S     first run's seed (default: from the time); run k uses S+k\n"
    "  --keep       keep the directories of runs that failed\n";

const char* kFakeTime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const std::string kTarget = "2.0.0";

using Clock = std::chrono::steady_clock;

struct Totals {
  int runs = 0, converged = 0, halted = 0, stuck = 0, violated = 0;
  std::map<std::string, int> faults;
};

// A member's steps.jsonl written while it ran under faketime has its wall clock
// shifted: the checker compares those times with the hub's, so they are shifted
// back (the offset of each stretch of the file is known).
struct Shift {
  std::size_t from = 0, to = 0;  // byte range of the file
  std::int64_t offset_us = 0;
};

class Run {
 public:
  Run(std::uint64_t seed, Totals& totals) : rng_(seed), seed_(seed), totals_(totals) {}
  bool go(bool keep);

 private:
  std::int64_t between(std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  void fault(const std::string& kind, const std::string& what) {
    ++totals_.faults[kind];
    std::printf("  %6.1fs %s: %s\n", elapsed(), kind.c_str(), what.c_str());
    std::fflush(stdout);
  }
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

  void start_member(std::size_t i);
  void kill_member(std::size_t i);
  void inject(Rollout& r);
  void heal(Rollout& r);
  void tend(Rollout& r);  // restarts what is due, ends faults that are over
  bool halted(Rollout& r);
  std::vector<check::Violation> check(Rollout& r);

  std::mt19937_64 rng_;
  std::uint64_t seed_;
  Totals& totals_;
  Clock::time_point t0_;
  Rollout* r_ = nullptr;
  std::map<std::size_t, Clock::time_point> restart_at_;  // members killed, to start again then
  std::map<std::size_t, std::int64_t> faked_;            // members running under faketime: offset (s)
  std::map<std::size_t, std::size_t> faked_from_;        // where their steps log stood at start
  std::map<std::size_t, std::vector<Shift>> shifts_;
  std::optional<Clock::time_point> hub_back_at_;
  Clock::time_point faults_end_{};  // stand-in faults set until then
  std::optional<Clock::time_point> partition_end_, disk_free_at_;
  std::size_t disk_member_ = 0;
  std::string mount_;
  std::string halt_reason_;
  int shifted_ = 0;  // step log lines written under faketime, shifted back
};

std::size_t file_size_or_0(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<std::size_t>(n);
}

void Run::start_member(std::size_t i) {
  Member& m = r_->member(i);
  if (m.running()) return;
  auto f = faked_.find(i);
  if (f == faked_.end()) {
    m.start();
    return;
  }
  faked_from_[i] = file_size_or_0(m.steps_path());
  char offset[32];
  std::snprintf(offset, sizeof offset, "%+llds", static_cast<long long>(f->second));
  m.start({}, {{"LD_PRELOAD", kFakeTime},
               {"FAKETIME", offset},
               {"FAKETIME_DONT_FAKE_MONOTONIC", "1"},
               {"FAKETIME_NO_CACHE", "1"}});
}

void Run::kill_member(std::size_t i) {
  Member& m = r_->member(i);
  if (m.running()) m.kill9();
  auto f = faked_.find(i);
  if (f != faked_.end()) {
    shifts_[i].push_back({faked_from_[i], file_size_or_0(m.steps_path()), f->second * 1'000'000});
    faked_.erase(f);
  }
}

void Run::inject(Rollout& r) {
  std::size_t n = r.size();
  std::size_t i = static_cast<std::size_t>(between(0, static_cast<std::int64_t>(n) - 1));
  Member& m = r.member(i);
  switch (between(0, 8)) {
    case 0:
      if (!m.running()) break;
      fault("kill-member", m.node());
      kill_member(i);
      restart_at_[i] = Clock::now() + std::chrono::milliseconds(between(200, 4000));
      break;
    case 1:
      if (hub_back_at_ || !r.hub().running()) break;
      fault("kill-hub", "exchange-standin kill -9");
      r.hub().kill9();
      hub_back_at_ = Clock::now() + std::chrono::milliseconds(between(300, 4000));
      break;
    case 2:
    case 3: {
      if (hub_back_at_) break;
      Faults f;
      std::string what;
      switch (between(0, 3)) {
        case 0:
          f.drop_after_commit = static_cast<int>(between(1, 3));
          what = "drop-after-commit";
          break;
        case 1:
          f.reset_after_commit = static_cast<int>(between(1, 3));
          f.reset_path_contains = "/agentupgrade/";
          what = "reset-after-commit";
          break;
        case 2:
          f.error_rate = 0.3;
          what = "5xx";
          break;
        default:
          f.latency_ms = static_cast<int>(between(100, 1500));
          what = "latency";
          break;
      }
      try {
        r.hub().set_faults(f);
        fault(what, "stand-in");
        faults_end_ = Clock::now() + std::chrono::milliseconds(between(1000, 4000));
      } catch (const std::runtime_error&) {
      }
      break;
    }
    case 4: {
      if (hub_back_at_ || partition_end_) break;
      Faults f;
      f.partitioned = {"o/" + m.node()};
      try {
        r.hub().set_faults(f);
        fault("partition", m.node());
        partition_end_ = Clock::now() + std::chrono::milliseconds(between(1000, 8000));
        faults_end_ = *partition_end_;
      } catch (const std::runtime_error&) {
      }
      break;
    }
    case 5: {
      if (faked_.contains(i) || !m.running()) break;
      std::int64_t offset = (chance(0.5) ? 1 : -1) * between(3600, 6 * 3600);
      fault("wall-clock-jump", m.node() + " restarted under faketime " + std::to_string(offset) + "s");
      kill_member(i);
      faked_[i] = offset;
      start_member(i);
      break;
    }
    case 6: {
      if (mount_.empty() || disk_free_at_) break;
      // Fill the member's state directory: agentd cannot persist and exits
      // (protocol.md §4.2: no transition unrecorded); it is started again once
      // there is room, as systemd would.
      std::string filler = mount_ + "/filler";
      FILE* fp = std::fopen(filler.c_str(), "w");
      if (!fp) break;
      std::vector<char> block(64 * 1024, 'x');
      while (std::fwrite(block.data(), 1, block.size(), fp) == block.size()) {
      }
      std::fclose(fp);
      fault("disk-full", r.member(disk_member_).node());
      disk_free_at_ = Clock::now() + std::chrono::milliseconds(between(500, 4000));
      break;
    }
    case 7: {
      std::string holder;
      try {
        auto h = lease_holders(r.group());
        if (!h.empty()) holder = h.front();
      } catch (const std::runtime_error&) {
      }
      if (holder.empty()) break;
      auto out = r.agentctl({"force-release", r.options().group, holder});
      if (out.status.code == 0) fault("force-release", holder);
      break;
    }
    default: break;  // a quiet moment
  }
}

void Run::tend(Rollout& r) {
  auto now = Clock::now();
  if (hub_back_at_ && now >= *hub_back_at_) {
    r.hub().restart();
    hub_back_at_.reset();
    faults_end_ = now;  // the restarted stand-in has none
    partition_end_.reset();
  }
  if (!hub_back_at_ && faults_end_ != Clock::time_point{} && now >= faults_end_) {
    try {
      r.hub().set_faults(Faults{});
      faults_end_ = {};
      partition_end_.reset();
    } catch (const std::runtime_error&) {
    }
  }
  if (disk_free_at_ && now >= *disk_free_at_) {
    std::error_code ec;
    fs::remove(mount_ + "/filler", ec);
    disk_free_at_.reset();
  }
  for (auto it = restart_at_.begin(); it != restart_at_.end();) {
    if (now >= it->second) {
      start_member(it->first);
      it = restart_at_.erase(it);
    } else {
      ++it;
    }
  }
  // A member that exited by itself (a full disk) is started again when there is room.
  for (std::size_t i = 0; i < r.size(); ++i) {
    Member& m = r.member(i);
    if (!m.running() && !restart_at_.contains(i) && !disk_free_at_ && m.process()) {
      kill_member(i);  // reaps it, closes its faketime stretch
      start_member(i);
    }
  }
}

void Run::heal(Rollout& r) {
  if (hub_back_at_) hub_back_at_ = Clock::now();
  faults_end_ = Clock::now();
  if (disk_free_at_) disk_free_at_ = Clock::now();
  for (auto& [i, at] : restart_at_) at = Clock::now();
  tend(r);
  tend(r);
}

bool Run::halted(Rollout& r) {
  try {
    GroupDocument doc = r.group();
    if (!lease_holders(doc).empty()) return false;
    for (const auto& [node, e] : doc.entries)
      if (is_halting(e.state) && e.target_version == kTarget && !e.message.empty()) {
        halt_reason_ = node + " " + to_string(e.state) + ": " + e.message;
        return true;
      }
  } catch (const std::runtime_error&) {
  }
  return false;
}

std::vector<check::Violation> Run::check(Rollout& r) {
  auto writes = check::read_hub_log(r.hub().write_log_path());
  if (!writes) return {{"input", r.options().group, writes.error().message}};
  std::vector<check::Step> steps;
  for (std::size_t i = 0; i < r.size(); ++i) {
    Member& m = r.member(i);
    std::string text = read_file(m.steps_path());
    auto parsed = check::parse_steps(text, m.steps_path());
    if (!parsed) return {{"input", r.options().group, parsed.error().message}};
    // Undo faketime: the k-th line starts at a known byte offset.
    std::size_t pos = 0, k = 0;
    std::vector<std::size_t> starts;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      if (text.find_first_not_of(" \t\r", pos) < end) starts.push_back(pos);
      pos = end + 1;
    }
    for (auto& s : *parsed) {
      std::size_t at = k < starts.size() ? starts[k] : 0;
      for (const auto& sh : shifts_[i]) {
        if (at < sh.from || at >= sh.to) continue;
        s.t_us -= sh.offset_us;
        ++shifted_;
      }
      ++k;
    }
    steps.insert(steps.end(), parsed->begin(), parsed->end());
  }
  check::Options o;
  o.target = kTarget;
  o.final_state = true;
  return check::find_violations(*writes, steps, o);
}

bool Run::go(bool keep) {
  RolloutOptions ro;
  ro.members = static_cast<int>(between(3, 5));
  r_ = nullptr;
  Rollout r(ro);
  r_ = &r;
  t0_ = Clock::now();
  ++totals_.runs;
  std::printf("run %d seed %llu: %d members\n", totals_.runs, static_cast<unsigned long long>(seed_),
              ro.members);
  // One member's state directory on a 1 MiB tmpfs, to fill it up on purpose.
  disk_member_ = static_cast<std::size_t>(between(0, ro.members - 1));
  std::string dir = r.member(disk_member_).state_dir();
  fs::create_directories(dir);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m,mode=0700") == 0) {
    mount_ = dir;
    // The steps log stays off the full disk: a lost end of a step would read as a
    // step that never ended (the checker's I3), a fault of the soak, not of agentd.
    fs::create_symlink(r.member(disk_member_).dir() + "/steps-outside-tmpfs.jsonl", dir + "/steps.jsonl");
  }
  struct Unmount {
    std::string& path;
    ~Unmount() {
      if (!path.empty()) ::umount2(path.c_str(), MNT_DETACH);
      path.clear();
    }
  } unmount{mount_};
  for (std::size_t i = 0; i < r.size(); ++i) {
    r.member(i).install_delay(static_cast<double>(between(200, 2500)) / 1000);
    if (chance(0.02)) {
      r.member(i).fail_health(true);
      fault("fail-health", r.member(i).node());
    }
    if (chance(0.02)) {
      r.member(i).fail_install(true);
      fault("fail-install", r.member(i).node());
    }
  }
  r.start_all();
  // Faults for a while, then the world heals and the rollout must finish.
  auto faults_until = Clock::now() + std::chrono::seconds(between(8, 25));
  auto next = Clock::now();
  while (Clock::now() < faults_until && !r.rollout_done(kTarget)) {
    if (Clock::now() >= next) {
      inject(r);
      next = Clock::now() + std::chrono::milliseconds(between(300, 2500));
    }
    tend(r);
    std::this_thread::sleep_for(50ms);
  }
  heal(r);
  bool converged = false, was_halted = false;
  poll_until(
      deadline_in(150s),
      [&] {
        tend(r);
        converged = r.rollout_done(kTarget);
        was_halted = !converged && halted(r);
        return converged || was_halted;
      },
      200ms);
  // Let a halted group settle (nothing may be left upgrading), then stop everyone.
  if (was_halted) std::this_thread::sleep_for(2s);
  for (std::size_t i = 0; i < r.size(); ++i) kill_member(i);
  auto violations = check(r);
  bool ok = violations.empty() && (converged || was_halted);
  if (converged) ++totals_.converged;
  if (was_halted) ++totals_.halted;
  if (!converged && !was_halted) ++totals_.stuck;
  if (!violations.empty()) ++totals_.violated;
  std::string end = converged    ? "converged"
                    : was_halted ? "halted (" + halt_reason_ + ")"
                                 : "NEITHER converged nor halted";
  std::printf("run %d seed %llu: %s in %.1fs%s\n", totals_.runs, static_cast<unsigned long long>(seed_),
              end.c_str(), elapsed(), violations.empty() ? "" : ", VIOLATIONS:");
  if (shifted_ > 0) std::printf("  %d step log lines written under faketime, shifted back\n", shifted_);
  for (const auto& v : violations) std::printf("    %s\n", check::to_string(v).c_str());
  if (!ok) {
    std::printf("%s\n", r.diagnostics(30).c_str());
    if (keep) {
      r.dir().keep();
      std::printf("  kept %s\n", r.dir().path().c_str());
    }
  }
  std::fflush(stdout);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  double minutes = 0;
  bool keep = false;
  std::uint64_t seed = static_cast<std::uint64_t>(::time(nullptr));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "agentd-soak: %s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--runs") {
      runs = std::atoi(value());
    } else if (a == "--minutes") {
      minutes = std::atof(value());
      runs = 0;
    } else if (a == "--seed") {
      seed = std::strtoull(value(), nullptr, 10);
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "agentd-soak: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (::access(kFakeTime, R_OK) != 0) {
    std::fprintf(stderr, "agentd-soak: %s missing (apt-get install faketime)\n", kFakeTime);
    return 2;
  }
  Totals totals;
  auto t0 = Clock::now();
  bool all_ok = true;
  try {
    for (int k = 0;; ++k) {
      if (runs > 0 && k >= runs) break;
      if (runs == 0 && std::chrono::duration<double>(Clock::now() - t0).count() >= minutes * 60) break;
      Run run(seed + static_cast<std::uint64_t>(k), totals);
      if (!run.go(keep)) all_ok = false;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "agentd-soak: set-up failed: %s\n", e.what());
    return 2;
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  int ended = totals.converged + totals.halted;
  std::printf(
      "soak: %d runs in %.0f s: %d converged, %d halted with a reason (%.0f%% converged or halted), "
      "%d neither; %d with violations\nfaults:",
      totals.runs, secs, totals.converged, totals.halted, totals.runs ? 100.0 * ended / totals.runs : 0.0,
      totals.stuck, totals.violated);
  int sum = 0;
  for (const auto& [k, v] : totals.faults) {
    std::printf(" %s=%d", k.c_str(), v);
    sum += v;
  }
  std::printf(" (total %d)\n", sum);
  return all_ok ? 0 : 1;
}
