#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- HA groups (exchange-api.md §2, protocol.md §2-3) ---------------------------------------

namespace {

struct GroupView {
  bool all_members;  // org admin, root, or a member node (protocol.md §3: same result from any member)
  bool show_admin_description;
};

}  // namespace

Reply Hub::get_groups(const std::string& org, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "node=" + org + "/#");
  if (who.is_node()) return denied(who, "READ_MY_NODES", "node=" + org + "/#");
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || o->second.groups.empty()) return empty_groups();
  auto list = json::array();
  bool admin = is_admin_of(who, org);
  for (const auto& [name, g] : o->second.groups) {
    auto one = json::object();
    json::set(one.get(), "name", name);
    json::set(one.get(), "description", g.admin && !admin ? std::string() : g.description);
    std::vector<std::string> visible;
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (admin || (n != o->second.nodes.end() && n->second.owner == who.full())) visible.push_back(id);
    }
    json::set(one.get(), "members", string_array(visible));
    json::set(one.get(), "admin", g.admin);
    json::set(one.get(), "lastUpdated", g.last_updated);
    if (coordination()) {
      if (!g.settings.empty()) json::set(one.get(), "agentUpgradeSettings", raw_json(g.settings));
      auto entries = json::object();
      for (const auto& id : visible)
        if (auto e = g.entries.find(id); e != g.entries.end())
          json::set(entries.get(), id.c_str(), raw_json(e->second));
      json::set(one.get(), "agentUpgrade", std::move(entries));
    }
    json::append(list.get(), std::move(one));
  }
  auto body = json::object();
  json::set(body.get(), "nodeGroups", std::move(list));
  return json_reply(200, body.get());
}

Reply Hub::get_group(const Call& call, const std::string& org, const std::string& name, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "node=" + org + "/#");
  auto o = state_.orgs.find(org);
  const Group* g = nullptr;
  if (o != state_.orgs.end())
    if (auto it = o->second.groups.find(name); it != o->second.groups.end()) g = &it->second;
  // Today's Exchange: nodes lack READ_MY_NODES (exchange-api.md §2.3); the extension lets
  // members read their own group (protocol.md §3).
  if (who.is_node() && (!coordination() || !g || !g->has_member(who.id)))
    return denied(who, "READ_MY_NODES", "node=" + org + "/#");
  if (!g) return empty_groups();

  bool admin = is_admin_of(who, org);
  std::vector<std::string> visible;
  for (const auto& id : g->members) {
    auto n = o->second.nodes.find(id);
    if (admin || who.is_node() || (n != o->second.nodes.end() && n->second.owner == who.full()))
      visible.push_back(id);
  }
  bool etag = options_.mode == Mode::full || options_.mode == Mode::group_conditions;
  Reply r;
  if (etag) {
    r.headers.emplace_back("ETag", quoted(g->revision));
    std::string inm = call.header("if-none-match");
    if (!inm.empty() && none_match_hits(inm, g->revision)) {
      r.status = 304;
      return r;
    }
  }
  auto one = json::object();
  json::set(one.get(), "name", name);
  json::set(one.get(), "description", g->admin && !admin ? std::string() : g->description);
  json::set(one.get(), "members", string_array(visible));
  json::set(one.get(), "admin", g->admin);
  json::set(one.get(), "lastUpdated", g->last_updated);
  if (coordination()) {
    if (!g->settings.empty()) json::set(one.get(), "agentUpgradeSettings", raw_json(g->settings));
    auto entries = json::object();
    for (const auto& id : visible)
      if (auto e = g->entries.find(id); e != g->entries.end())
        json::set(entries.get(), id.c_str(), raw_json(e->second));
    json::set(one.get(), "agentUpgrade", std::move(entries));
  }
  auto list = json::array();
  json::append(list.get(), std::move(one));
  auto body = json::object();
  json::set(body.get(), "nodeGroups", std::move(list));
  r.status = 200;
  r.body = json::print(body.get());
  return r;
}

Reply Hub::post_group(const Call& call, const std::string& org, const std::string& name,
                      const Identity& who) {
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_ALL_NODES", "node=" + org + "/" + name);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto body = parse_body(call, true);
  if (!body) return bad_input(body.error().message);
  auto description = json::opt_string(body->get(), "description");
  auto members = json::opt_string_array(body->get(), "members");
  if (!description) return bad_input(description.error().message);
  if (!members) return bad_input(members.error().message);
  if (o->second.groups.count(name))
    return conflict("high availability node group '" + org + "/" + name + "' already exists");
  std::vector<std::string> ids = dedup(*members);
  bool admin = is_admin_of(who, org);
  for (const auto& id : ids) {
    auto n = o->second.nodes.find(id);
    if (n == o->second.nodes.end() || (!admin && n->second.owner != who.full()))
      return denied(who, "WRITE_ALL_NODES", "");  // EX postNodeGroup: trailing space, no target
  }
  bool force = call.params.count("force") && call.params.at("force") == "true";
  for (const auto& id : ids) {
    if (!o->second.group_of(id).empty() && !force)
      return conflict("some provided nodes already exist in other high availability node groups");
  }
  if (force) move_out(org, ids, name, who);  // seed: ?force=true moves nodes instead of 409
  Group& g = o->second.groups[name];
  g.description = *description;
  g.admin = admin;
  g.last_updated = now_;
  g.members = ids;
  for (const auto& id : ids) add_change(org, "node", id, "modified", "node");
  add_change(org, "ha_group", name, "created", "ha_group");
  group_changed(org, name, &g, who, "group_create", "");
  return written(201, "high availability node group '" + org + "/" + name + "' created");
}

Reply Hub::put_group(const Call& call, const std::string& org, const std::string& name, const Identity& who) {
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_MY_NODES", "node=" + org + "/#");
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto description = json::opt_string(body->get(), "description");
  auto members = json::opt_string_array(body->get(), "members");
  if (!description) return bad_input(description.error().message);
  if (!members) return bad_input(members.error().message);
  bool has_members = present(body->get(), "members");
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name)) return not_found("not found");
  Group& g = o->second.groups[name];
  bool admin = is_admin_of(who, org);
  if (g.admin && !admin) return denied(who, "WRITE_ALL_NODES", "");
  std::vector<std::string> ids = has_members ? dedup(*members) : g.members;
  std::vector<std::string> touched = g.members;
  for (const auto& id : ids)
    if (std::find(touched.begin(), touched.end(), id) == touched.end()) touched.push_back(id);
  for (const auto& id : touched) {
    auto n = o->second.nodes.find(id);
    bool listed = std::find(ids.begin(), ids.end(), id) != ids.end();
    if ((listed && n == o->second.nodes.end()) ||
        (!admin && n != o->second.nodes.end() && n->second.owner != who.full()))
      return denied(who, "WRITE_ALL_NODES", "");
  }
  bool force = call.params.count("force") && call.params.at("force") == "true";
  for (const auto& id : ids) {
    std::string in = o->second.group_of(id);
    if (!in.empty() && in != name && !force)
      return conflict("some provided nodes already exist in other high availability node groups");
  }
  if (force) move_out(org, ids, name, who);
  if (present(body->get(), "description")) g.description = *description;
  g.members = ids;
  g.last_updated = now_;
  for (const auto& id : touched) add_change(org, "node", id, "modified", "node");
  add_change(org, "ha_group", name, "modified", "ha_group");
  group_changed(org, name, &g, who, "members", "");
  Reply r =
      api(201, "ok", "high availability node group '" + name + "' in org '" + org + "' updated successfully");
  r.write = true;
  return r;
}

Reply Hub::delete_group(const std::string& org, const std::string& name, const Identity& who) {
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_ALL_NODES", "node=" + org + "/" + name);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  Group& g = o->second.groups[name];
  bool admin = is_admin_of(who, org);
  if (g.admin && !admin) return denied(who, "WRITE_ALL_NODES", "");
  if (!admin)
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (n != o->second.nodes.end() && n->second.owner != who.full())
        return denied(who, "WRITE_ALL_NODES", "");
    }
  std::vector<std::string> members = g.members;
  o->second.groups.erase(name);
  for (const auto& id : members) add_change(org, "node", id, "modified", "node");
  add_change(org, "ha_group", name, "deleted", "ha_group");
  group_changed(org, name, nullptr, who, "group_delete", "");
  return written(204, "deleted");
}

Reply Hub::post_member(const Call& call, const std::string& org, const std::string& name,
                       const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  // A node adding itself fails in the real Exchange (exchange-api.md §2.3); here: 403.
  if (who.is_node() || (!who.is_root() && who.org != org)) return denied(who, "WRITE_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  auto n = o->second.nodes.find(node);
  if (n == o->second.nodes.end()) return not_found("node '" + org + "/" + node + "' not found");
  Group& g = o->second.groups[name];
  bool admin = is_admin_of(who, org);
  if (!admin && n->second.owner != who.full()) return denied(who, "WRITE_ALL_NODES", target);
  if (!admin) {
    bool owns_all = !g.admin;
    for (const auto& id : g.members) {
      auto m = o->second.nodes.find(id);
      if (m != o->second.nodes.end() && m->second.owner != who.full()) owns_all = false;
    }
    if (!owns_all)
      return forbidden(
          "you do not have permission to edit this high availability node group (you do not own all "
          "nodes assigned to this group)");
  }
  bool force = call.params.count("force") && call.params.at("force") == "true";
  std::string in = o->second.group_of(node);
  if (!in.empty() && (!force || in == name)) {
    if (force) {  // already where the caller wants it
      return written(201, "");
    }
    return conflict("node '" + org + "/" + node + "' exists in an another high availability node group");
  }
  if (!in.empty()) move_out(org, {node}, name, who);
  g.members.push_back(node);
  g.last_updated = now_;
  add_change(org, "node", node, "modified", "node");
  add_change(org, "ha_group", name, "modified", "ha_group");
  group_changed(org, name, &g, who, "members", node);
  return written(201, "");
}

Reply Hub::delete_member(const std::string& org, const std::string& name, const std::string& node,
                         const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (!who.is_root() && who.org != org) return denied(who, "WRITE_OTHER_ORGS", target);
  if (who.is_node() && who.id != node) return denied(who, "WRITE_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o != state_.orgs.end() && who.is_user() && !is_admin_of(who, org)) {
    auto n = o->second.nodes.find(node);
    if (n != o->second.nodes.end() && n->second.owner != who.full())
      return denied(who, "WRITE_ALL_NODES", target);
  }
  if (o == state_.orgs.end() || !o->second.groups.count(name) || !o->second.groups[name].has_member(node))
    return not_found("high availability node group member '" + org + "/" + name + "/" + node + "' not found");
  Group& g = o->second.groups[name];
  g.remove_member(node);
  g.last_updated = now_;
  add_change(org, "node", node, "modified", "node");
  add_change(org, "ha_group", name, "modified", "ha_group");
  group_changed(org, name, &g, who, "members", node);
  return written(204, "");
}

}  // namespace agentd::standin
