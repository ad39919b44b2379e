#include "group.h"

#include <algorithm>

namespace agentd {

namespace {
constexpr const char* kStateNames[] = {"idle",      "preparing", "waiting", "upgrading",
                                       "verifying", "succeeded", "failed",  "rolledback"};
}

const char* to_string(State s) {
  return kStateNames[static_cast<int>(s)];
}

std::optional<State> state_from_string(const std::string& s) {
  for (int i = 0; i < 8; ++i)
    if (s == kStateNames[i]) return static_cast<State>(i);
  return std::nullopt;
}

bool GroupDocument::is_member(const std::string& node) const {
  return std::find(members.begin(), members.end(), node) != members.end();
}

const Entry* GroupDocument::entry(const std::string& node) const {
  auto it = entries.find(node);
  return it == entries.end() ? nullptr : &it->second;
}

std::int64_t GroupDocument::min_available() const {
  auto n = static_cast<std::int64_t>(members.size());
  std::int64_t v = settings.min_available ? *settings.min_available : n - settings.max_concurrent;
  if (n >= 2 && v < 1) v = 1;  // protocol.md §5: never below 1 in a group of 2 or more
  return std::max<std::int64_t>(v, 0);
}

Result<Entry> parse_entry(json::View obj) {
  if (!obj.is_object()) return fail(Errc::parse, "agentUpgrade entry must be an object");
  Entry e;
  auto st = obj.str("state");
  if (!st) return std::unexpected(st.error());
  auto state = state_from_string(*st);
  if (!state) return fail(Errc::parse, "unknown agentUpgrade state '" + *st + "'");
  e.state = *state;
#define AGENTD_STR(field, key)                 \
  {                                            \
    auto v = obj.opt_str(key);                 \
    if (!v) return std::unexpected(v.error()); \
    e.field = std::move(*v);                   \
  }
  AGENTD_STR(version, "version")
  AGENTD_STR(target_version, "targetVersion")
  AGENTD_STR(acquire_time, "acquireTime")
  AGENTD_STR(renew_time, "renewTime")
  AGENTD_STR(waiting_since, "waitingSince")
  AGENTD_STR(last_seen, "lastSeen")
  AGENTD_STR(message, "message")
  AGENTD_STR(write_id, "writeId")
#undef AGENTD_STR
  auto epoch = obj.opt_num("epoch", 0);
  if (!epoch) return std::unexpected(epoch.error());
  if (*epoch < 0) return fail(Errc::parse, "field 'epoch' must not be negative");
  e.epoch = *epoch;
  auto dur = obj.opt_num("leaseDurationSeconds", 0);
  if (!dur) return std::unexpected(dur.error());
  if (*dur < 0 || *dur > 86400) return fail(Errc::parse, "field 'leaseDurationSeconds' out of range");
  e.lease_duration_seconds = *dur;
  return e;
}

json::Ptr entry_to_json(const Entry& e) {
  auto o = json::object();
  json::set(o.get(), "state", to_string(e.state));
  json::set(o.get(), "version", e.version);
  json::set(o.get(), "targetVersion", e.target_version);
  json::set(o.get(), "epoch", e.epoch);
  if (holds_lease(e.state)) {
    // Without a lease (protocol.md §4.4) only leaseDurationSeconds 0 remains.
    json::set(o.get(), "leaseDurationSeconds", e.lease_duration_seconds);
    if (!e.acquire_time.empty()) json::set(o.get(), "acquireTime", e.acquire_time);
    if (!e.renew_time.empty()) json::set(o.get(), "renewTime", e.renew_time);
  }
  if (!e.waiting_since.empty()) json::set(o.get(), "waitingSince", e.waiting_since);
  json::set(o.get(), "lastSeen", e.last_seen);
  json::set(o.get(), "message", e.message);
  if (!e.write_id.empty()) json::set(o.get(), "writeId", e.write_id);
  return o;
}

json::Ptr settings_to_json(const Settings& s) {
  auto o = json::object();
  json::set(o.get(), "maxConcurrent", s.max_concurrent);
  if (s.min_available) json::set(o.get(), "minAvailable", *s.min_available);
  json::set(o.get(), "paused", s.paused);
  return o;
}

Result<Settings> parse_settings(json::View obj) {
  Settings s;
  if (obj.null_or_absent()) return s;
  if (!obj.is_object()) return fail(Errc::parse, "agentUpgradeSettings must be an object");
  auto mc = obj.opt_num("maxConcurrent", 1);
  if (!mc) return std::unexpected(mc.error());
  if (*mc < 1 || *mc > 10000) return fail(Errc::parse, "agentUpgradeSettings.maxConcurrent must be 1..10000");
  s.max_concurrent = *mc;
  if (!obj.member("minAvailable").null_or_absent()) {
    auto v = obj.num("minAvailable");
    if (!v) return std::unexpected(v.error());
    if (*v < 0 || *v > 10000) return fail(Errc::parse, "agentUpgradeSettings.minAvailable must be 0..10000");
    s.min_available = *v;
  }
  auto p = obj.opt_bool("paused", false);
  if (!p) return std::unexpected(p.error());
  s.paused = *p;
  return s;
}

Result<GroupDocument> parse_group_document(const std::string& body, std::int64_t revision) {
  auto root = json::parse(body, "group document");
  if (!root) return std::unexpected(root.error());
  auto groups = json::View(root->get()).arr("nodeGroups");
  if (!groups) return std::unexpected(groups.error());
  if (groups->size() != 1) return fail(Errc::parse, "group document must hold exactly one group");
  const json::View g = groups->at(0);
  if (!g.is_object()) return fail(Errc::parse, "nodeGroups[0] must be an object");
  GroupDocument doc;
  doc.revision = revision;
  auto name = g.str("name");
  if (!name) return std::unexpected(name.error());
  doc.name = *name;
  auto members = g.opt_str_array("members");
  if (!members) return std::unexpected(members.error());
  doc.members = std::move(*members);
  auto settings = parse_settings(g.member("agentUpgradeSettings"));
  if (!settings) return std::unexpected(settings.error());
  doc.settings = *settings;
  const json::View au = g.member("agentUpgrade");
  if (!au.null_or_absent()) {
    if (!au.is_object()) return fail(Errc::parse, "agentUpgrade must be an object");
    for (const json::View item : au) {
      auto e = parse_entry(item);
      if (!e) {
        e.error().message = "agentUpgrade." + item.key() + ": " + e.error().message;
        return std::unexpected(e.error());
      }
      // JSON lets a key repeat; which copy counts would be up to the parser, and
      // a second entry could hide a live lease from us.
      if (!doc.entries.emplace(item.key(), std::move(*e)).second)
        return fail(Errc::parse, "agentUpgrade has more than one entry for '" + item.key() + "'");
    }
  }
  return doc;
}

Result<std::int64_t> parse_etag(const std::string& etag) {
  std::string s = etag;
  if (s.rfind("W/", 0) == 0) s = s.substr(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (s.empty()) return fail(Errc::unsupported, "hub sent no ETag on the group document");
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || v > 100'000'000'000'000'000LL)
      return fail(Errc::unsupported, "hub sent a non-numeric ETag '" + etag + "'");
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace agentd
