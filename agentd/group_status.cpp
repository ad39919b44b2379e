#include "group_status.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <tuple>

#include "json.h"

namespace agentd {

namespace {

std::optional<std::int64_t> age_seconds(const Entry& e, Wall now) {
  Wall renewed;
  if (!parse_time(e.renew_time, &renewed)) return std::nullopt;
  auto age = std::chrono::duration_cast<std::chrono::seconds>(now - renewed).count();
  if (age < 0) return std::nullopt;
  return age;
}

// protocol.md §1 goal 4: one line per halting entry, with how to resume it.
std::vector<std::string> halt_lines(const GroupDocument& doc) {
  std::vector<std::string> lines;
  for (const auto& [node, e] : doc.entries) {
    if (!is_halting(e.state)) continue;
    lines.push_back("halted for " + (e.target_version.empty() ? std::string("?") : e.target_version) + ": " +
                    node + " is " + to_string(e.state) +
                    (e.message.empty() ? "" : ": " + one_line(e.message)) + " (agentctl resume " + doc.name +
                    " " + node + ")");
  }
  return lines;
}

std::vector<std::string> holders(const GroupDocument& doc) {
  std::vector<std::string> out;
  for (const auto& [node, e] : doc.entries)
    if (carries_lease(e)) out.push_back(node);
  return out;
}

// Members first, in the group's order, then entries of nodes that are not members.
template <class Each>
void for_each_row(const GroupDocument& doc, Each each) {
  for (const auto& m : doc.members) each(m, doc.entry(m), true);
  for (const auto& [node, e] : doc.entries)
    if (!doc.is_member(node)) each(node, &e, false);
}

}  // namespace

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

std::string settings_line(const GroupDocument& doc) {
  std::string s = "maxConcurrent=" + std::to_string(doc.settings.max_concurrent) +
                  " minAvailable=" + std::to_string(doc.min_available());
  if (!doc.settings.min_available) s += " (default)";
  s += doc.settings.paused ? " paused=yes" : " paused=no";
  return s;
}

std::string lease_age(const Entry& e, Wall now) {
  if (!holds_lease(e.state)) return "-";
  Wall renewed;
  std::string dur = std::to_string(e.lease_duration_seconds) + "s";
  if (!parse_time(e.renew_time, &renewed)) return "? of " + dur;
  auto age = std::chrono::duration_cast<std::chrono::seconds>(now - renewed).count();
  // Wall clocks of two machines: a hint for people, not a decision (protocol.md §4.1).
  if (age < 0) return "0s of " + dur + " (clock skew)";
  std::string s = std::to_string(age) + "s of " + dur;
  if (age > e.lease_duration_seconds) s += " (stale?)";
  return s;
}

std::string status_table(const GroupDocument& doc, Wall now) {
  std::string out = "group " + doc.name + "  revision " + std::to_string(doc.revision) + "  members " +
                    std::to_string(doc.members.size()) + "\n";
  out += "settings: " + settings_line(doc) + "\n";
  auto halts = halt_lines(doc);
  for (const auto& h : halts) out += h + "\n";
  if (halts.empty()) out += "halted: no\n";
  // The holder's message is its progress (protocol.md §2 `message`).
  for (const auto& node : holders(doc)) {
    const Entry& e = *doc.entry(node);
    out += "lease: " + node + " epoch " + std::to_string(e.epoch) + ", " + lease_age(e, now) +
           (e.message.empty() ? "" : ": " + one_line(e.message)) + "\n";
  }

  std::vector<std::vector<std::string>> rows{
      {"MEMBER", "STATE", "VERSION", "TARGET", "EPOCH", "LEASE", "MESSAGE"}};
  for_each_row(doc, [&](const std::string& node, const Entry* e, bool member) {
    const std::string note = member ? "" : "not a member";
    if (!e) {
      rows.push_back({node, "(no entry)", "", "", "", "", note});
      return;
    }
    std::string msg = one_line(e->message);
    if (!note.empty()) msg = note + (msg.empty() ? "" : "; " + msg);
    rows.push_back({node, to_string(e->state), e->version, e->target_version, std::to_string(e->epoch),
                    lease_age(*e, now), msg});
  });
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string status_json(const GroupDocument& doc, Wall now) {
  auto root = json::object();
  json::set(root.get(), "group", doc.name);
  json::set(root.get(), "revision", doc.revision);
  auto settings = json::object();
  json::set(settings.get(), "maxConcurrent", doc.settings.max_concurrent);
  json::set(settings.get(), "minAvailable", doc.min_available());
  json::set(settings.get(), "minAvailableIsDefault", !doc.settings.min_available.has_value());
  json::set(settings.get(), "paused", doc.settings.paused);
  json::set(root.get(), "settings", std::move(settings));
  auto halts = json::array();
  bool halted = false;
  for (const auto& [node, e] : doc.entries) {
    if (!is_halting(e.state)) continue;
    halted = true;
    auto h = json::object();
    json::set(h.get(), "node", node);
    json::set(h.get(), "state", to_string(e.state));
    json::set(h.get(), "targetVersion", e.target_version);
    json::set(h.get(), "message", e.message);
    json::append(halts.get(), std::move(h));
  }
  json::set(root.get(), "halted", halted);
  json::set(root.get(), "halts", std::move(halts));
  auto lease_holders = json::array();
  for (const auto& node : holders(doc)) json::append(lease_holders.get(), node);
  json::set(root.get(), "leaseHolders", std::move(lease_holders));
  auto members = json::array();
  for_each_row(doc, [&](const std::string& node, const Entry* e, bool member) {
    const Entry none;
    const Entry& x = e ? *e : none;
    auto m = json::object();
    json::set(m.get(), "node", node);
    json::set(m.get(), "member", member);
    json::set(m.get(), "hasEntry", e != nullptr);
    json::set(m.get(), "state", e ? to_string(x.state) : "");
    json::set(m.get(), "version", x.version);
    json::set(m.get(), "targetVersion", x.target_version);
    json::set(m.get(), "epoch", x.epoch);
    json::set(m.get(), "lastSeen", x.last_seen);
    json::set(m.get(), "waitingSince", x.waiting_since);
    json::set(m.get(), "message", x.message);
    if (e && carries_lease(x)) {
      auto lease = json::object();
      json::set(lease.get(), "durationSeconds", x.lease_duration_seconds);
      json::set(lease.get(), "acquireTime", x.acquire_time);
      json::set(lease.get(), "renewTime", x.renew_time);
      if (auto age = age_seconds(x, now)) json::set(lease.get(), "ageSeconds", *age);
      json::set(m.get(), "lease", std::move(lease));
    }
    json::append(members.get(), std::move(m));
  });
  json::set(root.get(), "members", std::move(members));
  return json::print(root.get());
}

std::vector<std::string> status_changes(const GroupDocument* before, const GroupDocument& after, Wall now) {
  std::vector<std::string> lines;
  const std::string t = format_time(now);
  if (!before || settings_line(*before) != settings_line(after))
    lines.push_back(t + " group " + after.name + " settings: " + settings_line(after));
  auto halts = halt_lines(after);
  if (!before || halt_lines(*before) != halts) {
    for (const auto& h : halts) lines.push_back(t + " " + h);
    if (halts.empty()) lines.push_back(t + " halted: no");
  }
  for_each_row(after, [&](const std::string& node, const Entry* e, bool member) {
    const Entry* was = before ? before->entry(node) : nullptr;
    // lastSeen and renewTime move with every heartbeat: only what a person follows counts.
    auto shown = [](const Entry& x) {
      return std::tie(x.state, x.version, x.target_version, x.epoch, x.message, x.lease_duration_seconds);
    };
    if (before &&
        ((!e && !was && before->is_member(node) == member) || (e && was && shown(*e) == shown(*was))))
      return;
    if (!e) {
      lines.push_back(t + " " + node + " (no entry)");
      return;
    }
    std::string line = t + " " + node + " " + to_string(e->state) + " " + e->version;
    if (!e->target_version.empty() && e->target_version != e->version) line += " -> " + e->target_version;
    line += " epoch " + std::to_string(e->epoch);
    if (carries_lease(*e)) line += " lease " + lease_age(*e, now);
    if (!member) line += " (not a member)";
    if (!e->message.empty()) line += ": " + one_line(e->message);
    lines.push_back(line);
  });
  return lines;
}

}  // namespace agentd
