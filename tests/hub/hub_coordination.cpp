#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- coordination writes (protocol.md §3) ---------------------------------------------------

namespace {

// If-Match: 428 when missing, 412 with the current ETag when stale. With
// If-Match-Scope: entry (and `entry_scope`, a hub that knows it) a write to
// `node`'s entry is stale only when that entry changed after the revision given
// (protocol.md §3, amended).
std::optional<Reply> check_if_match(const Call& call, const std::string& org, const std::string& name,
                                    const Group& g, const std::string& node = "", bool entry_scope = false) {
  std::string h = call.header("if-match");
  if (h.empty()) return api(428, "precondition-required", "If-Match with the group's revision is required");
  auto want = parse_etag(h);
  bool stale = !want || *want > g.revision;
  if (!stale && entry_scope && !node.empty() && call.header("if-match-scope") == "entry") {
    auto it = g.entry_revisions.find(node);
    stale = (it == g.entry_revisions.end() ? g.revision : it->second) > *want;
  } else if (!stale) {
    stale = *want != g.revision;
  }
  if (stale) {
    Reply r = api(412, "precondition-failed",
                  "high availability node group '" + org + "/" + name + "' is at revision " +
                      std::to_string(g.revision) + ", not " + h);
    r.headers.emplace_back("ETag", quoted(g.revision));
    return r;
  }
  return std::nullopt;
}

Reply with_etag(Reply r, std::int64_t revision) {
  r.headers.emplace_back("ETag", quoted(revision));
  r.write = true;
  return r;
}

}  // namespace

Reply Hub::put_entry(const Call& call, const std::string& org, const std::string& name,
                     const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (!who.is_root() && who.org != org) return denied(who, "WRITE_OTHER_ORGS", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name)) {
    if (who.is_node()) return denied(who, "WRITE_ALL_NODES", target);
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  }
  Group& g = o->second.groups[name];
  // A node writes only its own entry, and only while a member; an org admin, or a user
  // owning every member, may write any entry.
  if (who.is_node() && (who.id != node || !g.has_member(node))) return denied(who, "WRITE_ALL_NODES", target);
  if (who.is_user() && !is_admin_of(who, org)) {
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (n == o->second.nodes.end() || n->second.owner != who.full())
        return denied(who, "WRITE_ALL_NODES", target);
    }
  }
  if (!g.has_member(node))
    return not_found("high availability node group member '" + org + "/" + name + "/" + node + "' not found");
  if (auto r = check_if_match(call, org, name, g, node, options_.mode == Mode::full)) return *r;
  auto body = json::parse(call.body, "agentUpgrade entry");
  if (!body) return bad_input(body.error().message);
  if (auto e = parse_entry(body->get()); !e) return bad_input(e.error().message);
  g.entries[node] = json::print(body->get());  // as sent: unknown fields are preserved
  group_changed(org, name, &g, who, "write_entry", node);
  return with_etag(api(201, "ok",
                       "agentUpgrade entry of node '" + org + "/" + node +
                           "' in high availability node group '" + org + "/" + name + "' updated"),
                   g.revision);
}

Reply Hub::delete_entry(const Call& call, const std::string& org, const std::string& name,
                        const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (who.is_node() || (!who.is_root() && who.org != org)) return denied(who, "WRITE_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  Group& g = o->second.groups[name];
  if (!is_admin_of(who, org)) {
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (n == o->second.nodes.end() || n->second.owner != who.full())
        return denied(who, "WRITE_ALL_NODES", target);
    }
  }
  if (auto r = check_if_match(call, org, name, g)) return *r;
  if (!g.entries.count(node))
    return not_found("agentUpgrade entry of node '" + org + "/" + node +
                     "' in high availability node group '" + org + "/" + name + "' not found");
  g.entries.erase(node);
  group_changed(org, name, &g, who, "delete_entry", node);
  return with_etag(api(204, "ok", ""), g.revision);
}

Reply Hub::put_settings(const Call& call, const std::string& org, const std::string& name,
                        const Identity& who) {
  if (!is_admin_of(who, org)) return denied(who, "WRITE_ALL_NODES", "node=" + org + "/#");
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  Group& g = o->second.groups[name];
  if (auto r = check_if_match(call, org, name, g)) return *r;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  if (auto s = parse_settings(body->get()); !s) return bad_input(s.error().message);
  g.settings = json::print(body->get());
  group_changed(org, name, &g, who, "settings", "");
  return with_etag(
      api(201, "ok",
          "agentUpgradeSettings of high availability node group '" + org + "/" + name + "' updated"),
      g.revision);
}

}  // namespace agentd::standin
