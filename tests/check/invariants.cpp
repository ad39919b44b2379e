#include "check/invariants.h"

#include <cjson/cJSON.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "agentd/json.h"

namespace agentd::check {

namespace {

// A lease without leaseDurationSeconds is malformed (protocol.md §2); judge it with
// the default of §5 so that it rather counts as live than hides a violation.
constexpr std::int64_t kDefaultLeaseSeconds = 120;

Error at(const std::string& where, const Error& e) {
  return Error{e.code, where + ": " + e.message, 0};
}

template <class T>
Result<std::vector<T>> parse_lines(std::string_view text, const std::string& file,
                                   Result<T> (*parse_one)(const cJSON*)) {
  std::vector<T> out;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    std::string where = file + ":" + std::to_string(line_no);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto root = json::parse(line, "log line");
    if (!root) return std::unexpected(at(where, root.error()));
    if (!cJSON_IsObject(root->get())) return fail(Errc::parse, where + ": log line must be a JSON object");
    auto one = parse_one(root->get());
    if (!one) return std::unexpected(at(where, one.error()));
    one->where = where;
    out.push_back(std::move(*one));
  }
  return out;
}

// `var` names the variable it declares: it cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define CHECK_TRY(var, expr) \
  auto var = (expr);         \
  if (!var) return std::unexpected(var.error());
// NOLINTEND(bugprone-macro-parentheses)

Result<HubWrite> parse_hub_write(const cJSON* o) {
  HubWrite w;
  CHECK_TRY(seq, json::get_int(o, "seq"));
  CHECK_TRY(t_us, json::get_int(o, "tUs"));
  CHECK_TRY(org, json::get_string(o, "org"));
  CHECK_TRY(group, json::get_string(o, "group"));
  CHECK_TRY(revision, json::get_int(o, "revision"));
  CHECK_TRY(op, json::get_string(o, "op"));
  CHECK_TRY(actor, json::opt_string(o, "actor"));
  CHECK_TRY(node, json::opt_string(o, "node"));
  CHECK_TRY(members, json::opt_string_array(o, "members"));
  CHECK_TRY(settings, parse_settings(cJSON_GetObjectItemCaseSensitive(o, "agentUpgradeSettings")));
  w.seq = *seq;
  w.t_us = *t_us;
  w.org = *org;
  w.group = *group;
  w.revision = *revision;
  w.op = *op;
  w.actor = *actor;
  w.node = *node;
  w.members = std::move(*members);
  w.settings = *settings;
  const cJSON* au = cJSON_GetObjectItemCaseSensitive(o, "agentUpgrade");
  if (au && !cJSON_IsNull(au)) {
    if (!cJSON_IsObject(au)) return fail(Errc::parse, "agentUpgrade must be an object");
    const cJSON* item = nullptr;
    cJSON_ArrayForEach(item, au) {
      auto e = parse_entry(item);
      if (!e)
        return fail(Errc::parse, "agentUpgrade." + std::string(item->string) + ": " + e.error().message);
      w.entries.emplace(item->string, std::move(*e));
    }
  }
  return w;
}

Result<Step> parse_step(const cJSON* o) {
  Step s;
  CHECK_TRY(t_us, json::get_int(o, "tUs"));
  CHECK_TRY(node, json::get_string(o, "node"));
  CHECK_TRY(group, json::get_string(o, "group"));
  CHECK_TRY(step, json::get_string(o, "step"));
  CHECK_TRY(epoch, json::get_int(o, "epoch"));
  CHECK_TRY(version, json::opt_string(o, "version"));
  CHECK_TRY(phase, json::opt_string(o, "phase"));
  if (!phase->empty() && *phase != "begin" && *phase != "end")
    return fail(Errc::parse, "phase must be begin or end, not '" + *phase + "'");
  s.end = *phase == "end";
  s.phased = !phase->empty();
  s.t_us = *t_us;
  s.node = *node;
  s.group = *group;
  s.step = *step;
  s.epoch = *epoch;
  s.version = *version;
  return s;
}

#undef CHECK_TRY

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::io, path + ": cannot read: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail(Errc::io, path + ": read error");
  return ss.str();
}

// The coordination state of one group after one logged write, with the hub time
// from which each lease counts (the last write_entry to that node's entry).
struct Snapshot {
  const HubWrite* write = nullptr;
  std::map<std::string, std::int64_t> lease_since_us;
};

struct GroupHistory {
  std::string key;  // org/group
  std::vector<Snapshot> snapshots;
};

bool lease_live(const Entry& e, std::int64_t since_us, std::int64_t now_us) {
  // protocol.md §4.4: upgrading with leaseDurationSeconds 0 and no renewTime is a
  // fenced member whose step still runs: disrupted (I3), but it holds no lease.
  if (!carries_lease(e)) return false;
  std::int64_t d = e.lease_duration_seconds > 0 ? e.lease_duration_seconds : kDefaultLeaseSeconds;
  return since_us + d * 1'000'000 > now_us;
}

std::string at_write(const HubWrite& w) {
  return "revision=" + std::to_string(w.revision) + " seq=" + std::to_string(w.seq);
}

std::string describe_lease(const std::string& node, const Entry& e) {
  return node + " (" + to_string(e.state) + " epoch " + std::to_string(e.epoch) + ")";
}

// I1 at one snapshot: live leases judged with the hub's clock at this write.
void check_i1(const GroupHistory& g, const Snapshot& s, std::vector<Violation>& out) {
  const HubWrite& w = *s.write;
  std::vector<std::string> live;
  for (const auto& [node, e] : w.entries) {
    auto since = s.lease_since_us.find(node);
    if (since != s.lease_since_us.end() && lease_live(e, since->second, w.t_us))
      live.push_back(describe_lease(node, e));
  }
  if (static_cast<std::int64_t>(live.size()) <= w.settings.max_concurrent) return;
  std::string list;
  for (const auto& l : live) list += (list.empty() ? "" : ", ") + l;
  out.push_back({"I1", g.key,
                 at_write(w) + ": " + std::to_string(live.size()) + " live leases > maxConcurrent " +
                     std::to_string(w.settings.max_concurrent) + ": " + list});
}

// I2: an acquisition is a write that puts an entry into a lease state from outside
// one, or changes the epoch of a lease; its epoch must exceed every earlier one.
struct AcquisitionTrack {
  bool any = false;
  std::int64_t max_epoch = 0;
  std::string max_node;
  std::string max_where;
};

void check_i2(const GroupHistory& g, const std::map<std::string, Entry>* before, const HubWrite& w,
              AcquisitionTrack& t, std::vector<Violation>& out) {
  for (const auto& [node, e] : w.entries) {
    if (!carries_lease(e)) continue;  // a fenced member without a lease acquires nothing
    const Entry* prev = nullptr;
    if (before) {
      auto it = before->find(node);
      if (it != before->end()) prev = &it->second;
    }
    if (prev && carries_lease(*prev) && prev->epoch == e.epoch) continue;  // renewal or verifying
    if (t.any && e.epoch <= t.max_epoch) {
      out.push_back({"I2", g.key,
                     at_write(w) + ": " + node + " acquired epoch " + std::to_string(e.epoch) +
                         (e.epoch == t.max_epoch ? ", repeating" : ", lower than") + " epoch " +
                         std::to_string(t.max_epoch) + " acquired by " + t.max_node + " at " + t.max_where});
    }
    if (!t.any || e.epoch > t.max_epoch) {
      t.max_epoch = e.epoch;
      t.max_node = node;
      t.max_where = at_write(w);
    }
    t.any = true;
  }
}

GroupHistory* find_group_for_step(std::vector<GroupHistory>& groups, const Step& s) {
  GroupHistory* found = nullptr;
  for (auto& g : groups) {
    const HubWrite& last = *g.snapshots.back().write;
    if (last.group != s.group) continue;
    if (!found) found = &g;
    // Same group name in several orgs: prefer the one the node belongs to.
    for (const auto& snap : g.snapshots)
      if (snap.write->entries.contains(s.node)) return &g;
  }
  return found;
}

void check_i3(std::vector<GroupHistory>& groups, const Step& s, std::vector<Violation>& out) {
  if (s.end || (s.step != "install" && s.step != "restart")) return;
  if (s.group.empty()) return;  // an ungrouped node upgrades without a lease (protocol.md §3)
  std::string head =
      "step " + s.step + " of " + s.node + " epoch " + std::to_string(s.epoch) + " at " + s.where;
  GroupHistory* g = find_group_for_step(groups, s);
  if (!g) {
    out.push_back({"I3", s.group, head + ": the hub log has no such group"});
    return;
  }
  const Snapshot* snap = nullptr;
  for (const auto& candidate : g->snapshots)
    if (candidate.write->t_us <= s.t_us) snap = &candidate;
  if (!snap) {
    out.push_back({"I3", g->key, head + ": taken before the first logged write of the group"});
    return;
  }
  const HubWrite& w = *snap->write;
  head += " (hub state " + at_write(w) + ")";
  auto it = w.entries.find(s.node);
  if (it == w.entries.end()) {
    out.push_back({"I3", g->key, head + ": the node has no entry"});
    return;
  }
  const Entry& mine = it->second;
  auto since = snap->lease_since_us.find(s.node);
  if (!holds_lease(mine.state)) {
    out.push_back({"I3", g->key, head + ": without a lease (entry is " + to_string(mine.state) + ")"});
  } else if (mine.epoch != s.epoch) {
    out.push_back(
        {"I3", g->key, head + ": stale epoch, the entry holds epoch " + std::to_string(mine.epoch)});
  } else if (since == snap->lease_since_us.end() || !lease_live(mine, since->second, s.t_us)) {
    out.push_back({"I3", g->key, head + ": the lease had expired"});
  }
  for (const auto& [node, e] : w.entries) {
    if (node == s.node || e.epoch <= s.epoch) continue;
    auto other_since = snap->lease_since_us.find(node);
    if (other_since != snap->lease_since_us.end() && lease_live(e, other_since->second, s.t_us))
      out.push_back(
          {"I3", g->key, head + ": " + describe_lease(node, e) + " held a live lease with a higher epoch"});
  }
}

// I3 (amended): from the members' own logs, at no moment are more than maxConcurrent
// members of a group inside a disruptive step, lease or not. A step lasts from its
// begin to the node's next end. A begin without an end (its process died; a
// detached install may run on) lasts as long as the protocol lets peers assume:
// until the lease of the node's last write to the hub has run out. Either way a
// step counts for the group only while its node is a member: a node removed from
// the group (its entry dropped, protocol.md §3) no longer takes a place in it.
void check_i3_overlap(std::vector<GroupHistory>& groups, const std::vector<Step>& steps,
                      std::vector<Violation>& out) {
  struct Interval {
    std::int64_t begin, end;
    std::string node, where;
  };
  std::map<GroupHistory*, std::map<std::string, std::vector<const Step*>>> by_group;
  for (const auto& s : steps) {
    if (s.group.empty() || !s.phased) continue;  // a node in no group; a log without ends
    if (GroupHistory* g = find_group_for_step(groups, s)) by_group[g][s.node].push_back(&s);
  }
  for (auto& [g, nodes] : by_group) {
    std::vector<Interval> spans;
    for (auto& [node, list] : nodes) {
      std::stable_sort(list.begin(), list.end(),
                       [](const Step* a, const Step* b) { return a->t_us < b->t_us; });
      std::optional<Interval> open;
      for (const Step* s : list) {
        if (!s->end && !open) open = Interval{s->t_us, 0, node, s->step + " at " + s->where};
        if (s->end && open) {
          open->end = s->t_us;
          spans.push_back(*open);
          open.reset();
        }
      }
      if (open) {
        std::int64_t last_us = open->begin, lease_s = kDefaultLeaseSeconds;
        for (const auto& snap : g->snapshots) {
          const HubWrite& w = *snap.write;
          auto it = w.entries.find(node);
          if (w.op != "write_entry" || w.node != node || it == w.entries.end()) continue;
          last_us = std::max(last_us, w.t_us);
          if (it->second.lease_duration_seconds > 0) lease_s = it->second.lease_duration_seconds;
        }
        open->end = last_us + lease_s * 1'000'000;
        spans.push_back(*open);
      }
    }
    for (auto& span : spans) {
      for (const auto& snap : g->snapshots) {
        const HubWrite& w = *snap.write;
        if (w.t_us <= span.begin || w.t_us >= span.end) continue;
        if (std::find(w.members.begin(), w.members.end(), span.node) == w.members.end()) {
          span.end = w.t_us;  // removed from the group
          break;
        }
      }
    }
    // Sweep: ends before begins at the same instant.
    std::vector<std::pair<std::int64_t, int>> edges;  // (time, +index+1 begin / -(index+1) end)
    for (std::size_t i = 0; i < spans.size(); ++i) {
      edges.emplace_back(spans[i].begin, static_cast<int>(i) + 1);
      edges.emplace_back(spans[i].end, -static_cast<int>(i) - 1);
    }
    std::sort(edges.begin(), edges.end());
    std::set<std::size_t> inside;
    for (const auto& [t, e] : edges) {
      if (e < 0) {
        inside.erase(static_cast<std::size_t>(-e - 1));
        continue;
      }
      inside.insert(static_cast<std::size_t>(e - 1));
      std::int64_t max_concurrent = 1;
      for (const auto& snap : g->snapshots)
        if (snap.write->t_us <= t) max_concurrent = snap.write->settings.max_concurrent;
      if (static_cast<std::int64_t>(inside.size()) <= max_concurrent) continue;
      std::string list;
      for (std::size_t i : inside)
        list += (list.empty() ? "" : ", ") + spans[i].node + " (" + spans[i].where + ")";
      out.push_back({"I3", g->key,
                     std::to_string(inside.size()) +
                         " members inside a disruptive step at once > maxConcurrent " +
                         std::to_string(max_concurrent) + ": " + list});
    }
  }
}

void check_i4(const GroupHistory& g, const Options& options, std::vector<Violation>& out) {
  const HubWrite& last = *g.snapshots.back().write;
  if (last.op == "group_delete") return;
  std::optional<std::string> target = options.target;
  if (!target) {
    for (const auto& s : g.snapshots)
      for (const auto& [node, e] : s.write->entries)
        if (!e.target_version.empty() && (!target || compare_versions(e.target_version, *target) > 0))
          target = e.target_version;
  }
  std::string head = "final " + at_write(last);
  bool halted = false;
  for (const auto& [node, e] : last.entries) {
    if (holds_lease(e.state))
      out.push_back({"I4", g.key, head + ": " + describe_lease(node, e) + " left holding"});
    if (!is_halting(e.state)) continue;
    halted = true;
    if (e.message.empty())
      out.push_back({"I4", g.key,
                     head + ": halted by " + node + " (" + to_string(e.state) + ") with an empty message"});
  }
  if (halted || !target) return;
  for (const auto& member : last.members) {
    auto it = last.entries.find(member);
    if (it == last.entries.end()) {
      out.push_back({"I4", g.key, head + ": " + member + " has no entry, not at target " + *target});
      continue;
    }
    const Entry& e = it->second;
    bool done = e.version == *target && (e.state == State::succeeded || e.state == State::idle);
    if (!done)
      out.push_back({"I4", g.key,
                     head + ": " + member + " ends " + to_string(e.state) + " at version '" + e.version +
                         "', not at target " + *target + " and the group is not halted"});
  }
}

}  // namespace

std::string to_string(const Violation& v) {
  return v.invariant + " group=" + v.group + " " + v.text;
}

Result<std::vector<HubWrite>> parse_hub_log(std::string_view text, const std::string& file) {
  return parse_lines<HubWrite>(text, file, &parse_hub_write);
}

Result<std::vector<Step>> parse_steps(std::string_view text, const std::string& file) {
  return parse_lines<Step>(text, file, &parse_step);
}

Result<std::vector<HubWrite>> read_hub_log(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::unexpected(text.error());
  return parse_hub_log(*text, path);
}

Result<std::vector<Step>> read_steps(const std::string& path) {
  auto text = read_file(path);
  if (!text) return std::unexpected(text.error());
  return parse_steps(*text, path);
}

std::vector<Violation> find_violations(const std::vector<HubWrite>& writes, const std::vector<Step>& steps,
                                       const Options& options) {
  std::vector<Violation> out;
  std::vector<GroupHistory> groups;
  std::map<std::string, std::size_t> index;  // org/group -> groups[]
  std::map<std::string, AcquisitionTrack> acquisitions;

  for (const auto& w : writes) {
    std::string key = w.org + "/" + w.group;
    auto [it, fresh] = index.emplace(key, groups.size());
    if (fresh) groups.push_back(GroupHistory{key, {}});
    GroupHistory& g = groups[it->second];
    const Snapshot* before = g.snapshots.empty() ? nullptr : &g.snapshots.back();

    Snapshot s;
    s.write = &w;
    for (const auto& [node, e] : w.entries) {
      // A lease counts from the last write of its entry; an entry that appears
      // without one in the log counts from the moment it was first seen.
      const bool written_now = w.op == "write_entry" && w.node == node;
      if (!written_now && before && before->lease_since_us.contains(node) &&
          before->write->entries.contains(node)) {
        s.lease_since_us[node] = before->lease_since_us.at(node);
      } else {
        s.lease_since_us[node] = w.t_us;
      }
    }
    check_i2(g, before ? &before->write->entries : nullptr, w, acquisitions[key], out);
    g.snapshots.push_back(std::move(s));
    check_i1(g, g.snapshots.back(), out);
  }
  for (const auto& s : steps) check_i3(groups, s, out);
  check_i3_overlap(groups, steps, out);
  if (options.final_state)
    for (const auto& g : groups) check_i4(g, options, out);
  return out;
}

Result<std::vector<Violation>> check_files(const std::string& hub_log,
                                           const std::vector<std::string>& step_logs,
                                           const Options& options) {
  auto writes = read_hub_log(hub_log);
  if (!writes) return std::unexpected(writes.error());
  std::vector<Step> steps;
  for (const auto& path : step_logs) {
    auto more = read_steps(path);
    if (!more) return std::unexpected(more.error());
    steps.insert(steps.end(), more->begin(), more->end());
  }
  return find_violations(*writes, steps, options);
}

int compare_versions(const std::string& a, const std::string& b) {
  auto split = [](const std::string& v) {
    std::vector<std::string> parts;
    std::string cur;
    for (char c : v) {
      if (c == '.' || c == '-') {
        parts.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    parts.push_back(cur);
    return parts;
  };
  auto numeric = [](const std::string& s) {
    return !s.empty() && s.size() < 18 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  auto pa = split(a), pb = split(b);
  for (std::size_t i = 0; i < std::max(pa.size(), pb.size()); ++i) {
    std::string x = i < pa.size() ? pa[i] : "0", y = i < pb.size() ? pb[i] : "0";
    if (numeric(x) && numeric(y)) {
      long long nx = std::stoll(x), ny = std::stoll(y);
      if (nx != ny) return nx < ny ? -1 : 1;
    } else if (x != y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}

}  // namespace agentd::check
