#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- nodes (exchange-api.md §3) -----------------------------------------------------------

namespace {

json::Ptr node_json(const Org& o, const std::string& id, const Node& n) {
  auto j = json::object();
  json::set(j.get(), "token", kTokenMask);
  json::set(j.get(), "name", n.name);
  json::set(j.get(), "owner", n.owner);
  json::set(j.get(), "nodeType", n.node_type.empty() ? std::string("device") : n.node_type);
  json::set(j.get(), "pattern", n.pattern);
  json::set(j.get(), "registeredServices", raw_json(n.registered_services));
  json::set(j.get(), "userInput", raw_json(n.user_input));
  json::set(j.get(), "msgEndPoint", n.msg_end_point);
  json::set(j.get(), "softwareVersions", raw_json(n.software_versions));
  if (n.last_heartbeat)
    json::set(j.get(), "lastHeartbeat", *n.last_heartbeat);
  else
    cJSON_AddNullToObject(j.get(), "lastHeartbeat");
  json::set(j.get(), "publicKey", n.public_key);
  json::set(j.get(), "arch", n.arch);
  json::set(j.get(), "heartbeatIntervals", raw_json(n.heartbeat_intervals));
  std::string group = o.group_of(id);
  if (group.empty())
    cJSON_AddNullToObject(j.get(), "ha_group");
  else
    json::set(j.get(), "ha_group", group);
  json::set(j.get(), "lastUpdated", n.last_updated);
  json::set(j.get(), "clusterNamespace", n.cluster_namespace);
  json::set(j.get(), "isNamespaceScoped", n.is_namespace_scoped);
  return j;
}

// One attribute of a node body; `patch` applies only what is present.
Status apply_node_field(const cJSON* body, const char* key, Node* n) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(body, key);
  std::string k = key;
  auto string_field = [&](std::string* field) -> Status {
    auto s = json::opt_string(body, key);
    if (!s) return std::unexpected(s.error());
    *field = *s;
    return {};
  };
  auto json_field = [&](std::string* field, bool array, const char* fallback) -> Status {
    if (!v || cJSON_IsNull(v)) {
      *field = fallback;
      return {};
    }
    if (array ? !cJSON_IsArray(v) : !cJSON_IsObject(v))
      return fail(Errc::parse, "field '" + k + "' must be " + (array ? "an array" : "an object"));
    *field = json::print(v);
    return {};
  };
  if (k == "name") return string_field(&n->name);
  if (k == "nodeType") return string_field(&n->node_type);
  if (k == "pattern") return string_field(&n->pattern);
  if (k == "arch") return string_field(&n->arch);
  if (k == "msgEndPoint") return string_field(&n->msg_end_point);
  if (k == "publicKey") return string_field(&n->public_key);
  if (k == "clusterNamespace") return string_field(&n->cluster_namespace);
  if (k == "registeredServices") return json_field(&n->registered_services, true, "[]");
  if (k == "userInput") return json_field(&n->user_input, true, "[]");
  if (k == "softwareVersions") return json_field(&n->software_versions, false, "{}");
  if (k == "heartbeatIntervals")
    return json_field(&n->heartbeat_intervals, false,
                      R"({"minInterval":0,"maxInterval":0,"intervalAdjustment":0})");
  if (k == "isNamespaceScoped") {
    auto b = json::opt_bool(body, key, false);
    if (!b) return std::unexpected(b.error());
    n->is_namespace_scoped = *b;
    return {};
  }
  if (k == "token") {
    auto s = json::opt_string(body, key);
    if (!s) return std::unexpected(s.error());
    if (!s->empty()) n->token_hash = sha256_hex(*s);
    return {};
  }
  return {};
}

// PATCH applies the first attribute present, in this order (exchange-api.md §3.2: one per PATCH).
constexpr const char* kNodeAttributes[] = {"token",
                                           "name",
                                           "nodeType",
                                           "pattern",
                                           "registeredServices",
                                           "userInput",
                                           "msgEndPoint",
                                           "softwareVersions",
                                           "publicKey",
                                           "arch",
                                           "heartbeatIntervals",
                                           "clusterNamespace",
                                           "isNamespaceScoped"};

}  // namespace

Reply Hub::get_nodes(const std::string& org, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "node=" + org + "/#");
  if (who.is_node()) return denied(who, "READ_MY_NODES", "node=" + org + "/#");
  auto nodes = json::object();
  int count = 0;
  if (auto it = state_.orgs.find(org); it != state_.orgs.end()) {
    for (const auto& [id, n] : it->second.nodes) {
      if (!is_admin_of(who, org) && n.owner != who.full()) continue;
      json::set(nodes.get(), (org + "/" + id).c_str(), node_json(it->second, id, n));
      ++count;
    }
  }
  if (count == 0) return empty_map("nodes");
  return map_reply("nodes", std::move(nodes));
}

Reply Hub::get_node(const Call& call, const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, false, &ref)) return *d;
  const Node* n = ref.node;
  if (!n) return not_found("not found");
  if (auto a = call.params.find("attribute"); a != call.params.end()) {
    auto full = node_json(*ref.org, node, *n);
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(full.get(), a->second.c_str());
    if (!v) return bad_input("invalid input: '" + a->second + "' is not a node attribute");
    auto body = json::object();
    json::set(body.get(), "attribute", a->second);
    if (cJSON_IsString(v))
      json::set(body.get(), "value", v->valuestring);
    else if (cJSON_IsNull(v))
      json::set(body.get(), "value", "");
    else
      json::set(body.get(), "value", json::print(v));
    return json_reply(200, body.get());
  }
  auto nodes = json::object();
  json::set(nodes.get(), (org + "/" + node).c_str(), node_json(*ref.org, node, *n));
  return map_reply("nodes", std::move(nodes));
}

Reply Hub::put_node(const Call& call, const std::string& org, const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (!who.is_root() && who.org != org) return denied(who, "WRITE_OTHER_ORGS", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto existing = o->second.nodes.find(node);
  bool create = existing == o->second.nodes.end();
  if (create) {
    if (who.is_node()) return denied(who, "WRITE_ALL_NODES", target);
    if (o->second.users.count(node)) return conflict("node id '" + node + "' is already a user");
  } else {
    bool allowed = is_admin_of(who, org) || (who.is_node() && who.id == node) ||
                   (who.is_user() && existing->second.owner == who.full());
    if (!allowed) return denied(who, "WRITE_ALL_NODES", target);
  }
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  Node n = create ? Node{} : existing->second;
  if (create) {
    n.owner = who.full();
    auto token = json::opt_string(body->get(), "token");
    if (!token || token->empty()) return bad_input("invalid input: token must be specified");
  }
  for (const char* key : kNodeAttributes) {
    if (auto st = apply_node_field(body->get(), key, &n); !st) return bad_input(st.error().message);
  }
  n.last_updated = now_;
  if (!(call.params.count("noheartbeat") && call.params.at("noheartbeat") == "true")) n.last_heartbeat = now_;
  o->second.nodes[node] = n;
  add_change(org, "node", node, create ? "created" : "modified", "node");
  return written(201, "node '" + org + "/" + node + "' added or updated");
}

Reply Hub::patch_node(const Call& call, const std::string& org, const std::string& node,
                      const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  Node* n = ref.node;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  if (!n) return not_found("node '" + org + "/" + node + "' not found");
  for (const char* key : kNodeAttributes) {
    if (!present(body->get(), key)) continue;
    Node patched = *n;
    if (auto st = apply_node_field(body->get(), key, &patched); !st) return bad_input(st.error().message);
    patched.last_updated = now_;
    *n = patched;
    add_change(org, "node", node, "modified", "node");
    Reply r =
        api(201, "ok", "attribute '" + std::string(key) + "' of node '" + org + "/" + node + "' updated");
    r.write = true;
    return r;
  }
  return bad_input("invalid input: no valid node attribute specified");
}

Reply Hub::delete_node(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Org& o = *ref.org;
  std::string group = o.group_of(node);
  o.nodes.erase(node);
  add_change(org, "node", node, "deleted", "node");
  if (!group.empty()) {
    Group& g = o.groups[group];
    g.remove_member(node);
    g.last_updated = now_;
    add_change(org, "ha_group", group, "modified", "ha_group");
    group_changed(org, group, &g, who, "members", node);
  }
  return written(204, "node deleted");
}

Reply Hub::post_heartbeat(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Node& n = *ref.node;
  n.last_heartbeat = now_;
  heartbeat_dirty_ = true;
  return written(201, "node updated");
}

}  // namespace agentd::standin
