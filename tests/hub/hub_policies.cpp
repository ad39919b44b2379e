#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- management policies and status (exchange-api.md §4) ----------------------------------

Reply Hub::get_policies(const std::string& org, const std::string& name, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "mgmtpolicy=" + org + "/*");
  auto map = json::object();
  int count = 0;
  if (auto o = state_.orgs.find(org); o != state_.orgs.end()) {
    for (const auto& [id, text] : o->second.policies) {
      if (!name.empty() && id != name) continue;
      json::set(map.get(), (org + "/" + id).c_str(), raw_json(text));
      ++count;
    }
  }
  if (count == 0) return empty_map("managementPolicy");
  return map_reply("managementPolicy", std::move(map));
}

Reply Hub::write_policy(const Call& call, const std::string& org, const std::string& name,
                        const Identity& who) {
  std::string full = org + "/" + name;
  bool create = call.method == "POST";
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto existing = o->second.policies.find(name);
  json::Ptr old;
  if (existing != o->second.policies.end()) old = raw_json(existing->second);
  if (create && old) return api(403, "already-exists", "management policy '" + full + "' already exists");
  if (!create && !old) return not_found("management policy '" + full + "' not found");
  if (!create && !is_admin_of(who, org)) {
    auto owner = json::opt_string(old.get(), "owner");
    if (!owner || *owner != who.full()) return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  }
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  const cJSON* b = body->get();
  auto label = json::opt_string(b, "label");
  auto description = json::opt_string(b, "description");
  auto constraints = json::opt_string_array(b, "constraints");
  auto patterns = json::opt_string_array(b, "patterns");
  auto enabled = json::opt_bool(b, "enabled", false);
  auto start = json::opt_string(b, "start", "now");
  auto window = json::opt_int(b, "startWindow", 0);
  if (!label) return bad_input(label.error().message);
  if (!description) return bad_input(description.error().message);
  if (!constraints) return bad_input(constraints.error().message);
  if (!patterns) return bad_input(patterns.error().message);
  if (!enabled) return bad_input(enabled.error().message);
  if (!start) return bad_input(start.error().message);
  if (!window) return bad_input(window.error().message);
  if (!constraints->empty() && !patterns->empty())
    return bad_input("you can not specify both constraints and patterns");
  const cJSON* props = cJSON_GetObjectItemCaseSensitive(b, "properties");
  if (props && !cJSON_IsNull(props) && !cJSON_IsArray(props))
    return bad_input("field 'properties' must be an array");
  const cJSON* aup = cJSON_GetObjectItemCaseSensitive(b, "agentUpgradePolicy");
  if (aup && !cJSON_IsNull(aup) && !cJSON_IsObject(aup))
    return bad_input("field 'agentUpgradePolicy' must be an object");
  auto manifest = json::opt_string(aup, "manifest");
  auto downgrade = json::opt_bool(aup, "allowDowngrade", false);
  if (!manifest) return bad_input(manifest.error().message);
  if (!downgrade) return bad_input(downgrade.error().message);

  auto p = json::object();
  auto upgrade = json::object();
  json::set(upgrade.get(), "allowDowngrade", *downgrade);
  json::set(upgrade.get(), "manifest", *manifest);
  json::set(p.get(), "agentUpgradePolicy", std::move(upgrade));
  json::set(p.get(), "constraints", string_array(*constraints));
  json::set(p.get(), "created", old ? json::opt_string(old.get(), "created").value_or(now_) : now_);
  json::set(p.get(), "description", *description);
  json::set(p.get(), "enabled", *enabled);
  json::set(p.get(), "label", *label);
  json::set(p.get(), "lastUpdated", now_);
  json::set(p.get(), "owner", old ? json::opt_string(old.get(), "owner").value_or(who.full()) : who.full());
  json::set(p.get(), "patterns", string_array(*patterns));
  json::set(p.get(), "properties", props && cJSON_IsArray(props) ? json::clone(props) : json::array());
  json::set(p.get(), "start", *start);
  json::set(p.get(), "startWindow", std::max<std::int64_t>(*window, 0));
  o->second.policies[name] = json::print(p.get());
  add_change(org, "mgmtpolicy", name, create ? "created" : "modified", "mgmtpolicy");
  return written(201, "management policy '" + full + "' " + (create ? "created" : "updated"));
}

Reply Hub::delete_policy(const std::string& org, const std::string& name, const Identity& who) {
  std::string full = org + "/" + name;
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.policies.count(name))
    return not_found("management policy '" + full + "' not found");
  if (!is_admin_of(who, org)) {
    auto owner = json::opt_string(raw_json(o->second.policies[name]).get(), "owner");
    if (!owner || *owner != who.full()) return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  }
  o->second.policies.erase(name);
  for (auto& [id, n] : o->second.nodes) n.mgmt_status.erase(name);  // FK cascade
  add_change(org, "mgmtpolicy", name, "deleted", "mgmtpolicy");
  return written(204, "");
}

Reply Hub::get_status(const std::string& org, const std::string& node, const std::string& nmp,
                      const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, false, &ref)) return *d;
  const Node* n = ref.node;
  auto map = json::object();
  int count = 0;
  if (n) {
    for (const auto& [id, text] : n->mgmt_status) {
      if (!nmp.empty() && id != nmp) continue;
      auto s = json::object();
      json::set(s.get(), "agentUpgradePolicyStatus", raw_json(text));
      json::set(map.get(), (org + "/" + id).c_str(), std::move(s));
      ++count;
    }
  }
  if (count == 0) return empty_map("managementStatus");
  return map_reply("managementStatus", std::move(map));
}

Reply Hub::put_status(const Call& call, const std::string& org, const std::string& node,
                      const std::string& nmp, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Node& n = *ref.node;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto st = json::get_object(body->get(), "agentUpgradePolicyStatus");
  if (!st) return bad_input(st.error().message);
  auto scheduled = json::get_string(*st, "scheduledTime");
  if (!scheduled) return bad_input(scheduled.error().message);
  const char* fields[] = {"startTime", "endTime", "status", "errorMessage"};
  auto s = json::object();
  json::set(s.get(), "scheduledTime", *scheduled);
  for (const char* f : fields) {
    auto v = json::opt_string(*st, f);
    if (!v) return bad_input(v.error().message);
    json::set(s.get(), f, *v);
  }
  const cJSON* uv = cJSON_GetObjectItemCaseSensitive(*st, "upgradedVersions");
  if (uv && !cJSON_IsNull(uv) && !cJSON_IsObject(uv))
    return bad_input("field 'upgradedVersions' must be an object");
  auto versions = json::object();
  for (const char* f : {"softwareVersion", "certVersion", "configVersion"}) {
    auto v = json::opt_string(uv, f);
    if (!v) return bad_input(v.error().message);
    json::set(versions.get(), f, *v);
  }
  json::set(s.get(), "upgradedVersions", std::move(versions));
  json::set(s.get(), "lastUpdated", now_);
  // The status row's FK to the policy: a missing NMP is a database error (exchange-api.md §4.2).
  if (!ref.org->policies.count(nmp))
    return api(500, "internal_error", "management policy '" + org + "/" + nmp + "' not found");
  bool existed = n.mgmt_status.count(nmp) > 0;
  n.mgmt_status[nmp] = json::print(s.get());
  add_change(org, "nodemgmtpolstatus", node, existed ? "modified" : "created", "node");
  Reply r = api(201, "ok",
                "status added or updated for management policy '" + org + "/" + nmp + "' for node '" + org +
                    "/" + node + "'.");
  r.write = true;
  return r;
}

Reply Hub::delete_status(const std::string& org, const std::string& node, const std::string& nmp,
                         const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  Node* n = ref.node;
  if (!n || !n->mgmt_status.count(nmp))
    return not_found("status of management policy '" + org + "/" + nmp + "' for node '" + org + "/" + node +
                     "' not found");
  n->mgmt_status.erase(nmp);
  add_change(org, "nodemgmtpolstatus", node, "deleted", "node");
  return written(204, "");
}

Reply Hub::agent_file_version(const Call& call, const std::string& org, const Identity& who) {
  if (org != "IBM") return bad_input("invalid input: " + org);
  const std::string target = "org=IBM";
  if (call.method == "GET") {
    // READ_AGENT_CONFIG_MGMT: nodes (of any org), admins, root (exchange-api.md §5.3).
    if (!(who.is_root() || who.is_node() || who.admin)) return denied(who, "READ_AGENT_CONFIG_MGMT", target);
    if (state_.agent_file_version.empty()) return not_found("org 'IBM' not found");
    Reply r;
    r.body = state_.agent_file_version;
    return r;
  }
  if (!is_admin_of(who, "IBM")) return denied(who, "WRITE_AGENT_CONFIG_MGMT", target);
  if (call.method == "DELETE") {
    if (state_.agent_file_version.empty()) return not_found("org 'IBM' not found");
    state_.agent_file_version.clear();
    add_change("IBM", "agentfileversion", "IBM", "modified", "org", true);
    return written(204, "");
  }
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto v = json::object();
  for (const char* key : {"agentCertVersions", "agentConfigVersions", "agentSoftwareVersions"}) {
    if (!present(body->get(), key)) return bad_input("field '" + std::string(key) + "' is required");
    auto list = json::opt_string_array(body->get(), key);
    if (!list) return bad_input(list.error().message);
    json::set(v.get(), key, string_array(*list));
  }
  json::set(v.get(), "lastUpdated", now_);
  state_.agent_file_version = json::print(v.get());
  add_change("IBM", "agentfileversion", "IBM", "modified", "org", true);
  return written(201, "attribute 'AgentFileVersion' of org 'IBM' updated");
}

}  // namespace agentd::standin
