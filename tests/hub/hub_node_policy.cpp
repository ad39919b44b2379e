#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- node policy (exchange-api.md §8; EX route/node/Policy.scala) ----------------------------

namespace {

// [{"name":..,"value":..,"type"?:..}] as the Exchange keeps it; `where` names the field in errors.
Result<json::Ptr> policy_properties(const cJSON* obj, const std::string& where) {
  auto out = json::array();
  const cJSON* list = cJSON_GetObjectItemCaseSensitive(obj, "properties");
  if (!list || cJSON_IsNull(list)) return out;
  if (!cJSON_IsArray(list)) return fail(Errc::parse, "field '" + where + "' must be an array");
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, list) {
    if (!cJSON_IsObject(item)) return fail(Errc::parse, "each of '" + where + "' must be an object");
    auto name = json::get_string(item, "name");
    if (!name) return std::unexpected(name.error());
    if (name->empty()) return fail(Errc::parse, "a property of '" + where + "' has an empty name");
    auto type = json::opt_string(item, "type");
    if (!type) return std::unexpected(type.error());
    const cJSON* value = cJSON_GetObjectItemCaseSensitive(item, "value");
    if (!value || cJSON_IsNull(value))
      return fail(Errc::parse, "property '" + *name + "' of '" + where + "' has no value");
    auto p = json::object();
    json::set(p.get(), "name", *name);
    json::set(p.get(), "value", json::clone(value));
    if (!type->empty()) json::set(p.get(), "type", *type);
    json::append(out.get(), std::move(p));
  }
  return out;
}

// {"properties":[...],"constraints":[...]} of the top level, "deployment" or "management".
Status policy_part(const cJSON* obj, const std::string& prefix, cJSON* into) {
  auto props = policy_properties(obj, prefix + "properties");
  if (!props) return std::unexpected(props.error());
  auto constraints = json::opt_string_array(obj, "constraints");
  if (!constraints) return std::unexpected(constraints.error());
  json::set(into, "properties", std::move(*props));
  json::set(into, "constraints", string_array(*constraints));
  return {};
}

}  // namespace

Reply Hub::get_node_policy(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, false, &ref)) return *d;
  const Node* n = ref.node;
  if (!n || n->policy.empty()) return not_found("not found");
  Reply r;
  r.body = n->policy;
  return r;
}

Reply Hub::put_node_policy(const Call& call, const std::string& org, const std::string& node,
                           const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Node& n = *ref.node;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto policy = json::object();
  for (const char* key : {"label", "description", "nodePolicyVersion"}) {
    auto v = json::opt_string(body->get(), key);
    if (!v) return bad_input(v.error().message);
    json::set(policy.get(), key, *v);
  }
  if (auto st = policy_part(body->get(), "", policy.get()); !st) return bad_input(st.error().message);
  for (const char* part : {"deployment", "management"}) {
    const cJSON* p = cJSON_GetObjectItemCaseSensitive(body->get(), part);
    if (p && !cJSON_IsNull(p) && !cJSON_IsObject(p))
      return bad_input("field '" + std::string(part) + "' must be an object");
    auto out = json::object();
    if (auto st = policy_part(p, std::string(part) + ".", out.get()); !st)
      return bad_input(st.error().message);
    json::set(policy.get(), part, std::move(out));
  }
  json::set(policy.get(), "lastUpdated", now_);
  n.policy = json::print(policy.get());
  n.last_updated = now_;
  if (!(call.params.count("noheartbeat") && call.params.at("noheartbeat") == "true")) n.last_heartbeat = now_;
  // EX writes ResChangeOperation.CREATEDMODIFIED, whose text is "created/modified".
  add_change(org, "nodepolicies", node, "created/modified", "node");
  return written(201, "policy added or updated");
}

Reply Hub::delete_node_policy(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  Node* n = ref.node;
  if (!n || n->policy.empty()) return not_found("node policy '" + org + "/" + node + "' not found");
  n->policy.clear();
  n->last_updated = now_;
  add_change(org, "nodepolicies", node, "deleted", "node");
  return written(204, "");
}

}  // namespace agentd::standin
