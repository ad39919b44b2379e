#include "store.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>

#include "agentd/files.h"

namespace agentd::standin {

bool Group::has_member(const std::string& node) const {
  return std::find(members.begin(), members.end(), node) != members.end();
}

void Group::remove_member(const std::string& node) {
  members.erase(std::remove(members.begin(), members.end(), node), members.end());
  entries.erase(node);
}

std::string Org::group_of(const std::string& node) const {
  for (const auto& [name, g] : groups)
    if (g.has_member(node)) return name;
  return {};
}

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

json::Ptr raw_json(const std::string& text) {
  auto p = json::parse(text, "stored value");
  if (!p) return json::Ptr(cJSON_CreateNull());
  return std::move(*p);
}

namespace {

// The state file is the hub's own: reads fall back to defaults instead of failing
// on each field, so a file from an older stand-in still loads.
std::string str(const cJSON* o, const char* key) {
  auto v = json::opt_string(o, key);
  return v ? *v : std::string();
}
std::int64_t num(const cJSON* o, const char* key) {
  auto v = json::opt_int(o, key, 0);
  return v ? *v : 0;
}
bool boolean(const cJSON* o, const char* key) {
  auto v = json::opt_bool(o, key, false);
  return v ? *v : false;
}
std::string text_of(const cJSON* o, const char* key, const std::string& fallback) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) return fallback;
  return json::print(v);
}
void set_raw(cJSON* o, const char* key, const std::string& text) {
  json::set(o, key, raw_json(text));
}

template <class F>
void each(const cJSON* o, const char* key, F f) {
  const cJSON* m = cJSON_GetObjectItemCaseSensitive(o, key);
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, m) {
    f(item);
  }
}

json::Ptr node_to_state(const Node& n) {
  auto o = json::object();
  json::set(o.get(), "tokenHash", n.token_hash);
  json::set(o.get(), "name", n.name);
  json::set(o.get(), "owner", n.owner);
  json::set(o.get(), "nodeType", n.node_type);
  json::set(o.get(), "pattern", n.pattern);
  json::set(o.get(), "arch", n.arch);
  json::set(o.get(), "msgEndPoint", n.msg_end_point);
  json::set(o.get(), "publicKey", n.public_key);
  json::set(o.get(), "clusterNamespace", n.cluster_namespace);
  json::set(o.get(), "isNamespaceScoped", n.is_namespace_scoped);
  set_raw(o.get(), "registeredServices", n.registered_services);
  set_raw(o.get(), "userInput", n.user_input);
  set_raw(o.get(), "softwareVersions", n.software_versions);
  set_raw(o.get(), "heartbeatIntervals", n.heartbeat_intervals);
  if (n.last_heartbeat) json::set(o.get(), "lastHeartbeat", *n.last_heartbeat);
  json::set(o.get(), "lastUpdated", n.last_updated);
  auto st = json::object();
  for (const auto& [nmp, text] : n.mgmt_status) json::set(st.get(), nmp.c_str(), raw_json(text));
  json::set(o.get(), "managementStatus", std::move(st));
  if (!n.policy.empty()) set_raw(o.get(), "policy", n.policy);
  return o;
}

Node node_from_state(const cJSON* o) {
  Node n;
  n.token_hash = str(o, "tokenHash");
  n.name = str(o, "name");
  n.owner = str(o, "owner");
  n.node_type = str(o, "nodeType");
  n.pattern = str(o, "pattern");
  n.arch = str(o, "arch");
  n.msg_end_point = str(o, "msgEndPoint");
  n.public_key = str(o, "publicKey");
  n.cluster_namespace = str(o, "clusterNamespace");
  n.is_namespace_scoped = boolean(o, "isNamespaceScoped");
  n.registered_services = text_of(o, "registeredServices", n.registered_services);
  n.user_input = text_of(o, "userInput", n.user_input);
  n.software_versions = text_of(o, "softwareVersions", n.software_versions);
  n.heartbeat_intervals = text_of(o, "heartbeatIntervals", n.heartbeat_intervals);
  const cJSON* hb = cJSON_GetObjectItemCaseSensitive(o, "lastHeartbeat");
  if (cJSON_IsString(hb)) n.last_heartbeat = hb->valuestring;
  n.last_updated = str(o, "lastUpdated");
  each(o, "managementStatus", [&](const cJSON* s) { n.mgmt_status[s->string] = json::print(s); });
  n.policy = text_of(o, "policy", "");
  return n;
}

json::Ptr group_to_state(const Group& g) {
  auto o = json::object();
  json::set(o.get(), "description", g.description);
  json::set(o.get(), "admin", g.admin);
  json::set(o.get(), "lastUpdated", g.last_updated);
  auto m = json::array();
  for (const auto& id : g.members) json::append(m.get(), id);
  json::set(o.get(), "members", std::move(m));
  json::set(o.get(), "revision", g.revision);
  if (!g.settings.empty()) set_raw(o.get(), "agentUpgradeSettings", g.settings);
  auto e = json::object();
  for (const auto& [node, text] : g.entries) json::set(e.get(), node.c_str(), raw_json(text));
  json::set(o.get(), "agentUpgrade", std::move(e));
  auto er = json::object();
  for (const auto& [node, rev] : g.entry_revisions) json::set(er.get(), node.c_str(), rev);
  json::set(o.get(), "entryRevisions", std::move(er));
  return o;
}

Group group_from_state(const cJSON* o) {
  Group g;
  g.description = str(o, "description");
  g.admin = boolean(o, "admin");
  g.last_updated = str(o, "lastUpdated");
  auto m = json::opt_string_array(o, "members");
  if (m) g.members = *m;
  g.revision = num(o, "revision");
  g.settings = text_of(o, "agentUpgradeSettings", "");
  each(o, "agentUpgrade", [&](const cJSON* e) { g.entries[e->string] = json::print(e); });
  each(o, "entryRevisions", [&](const cJSON* e) {
    if (cJSON_IsNumber(e)) g.entry_revisions[e->string] = static_cast<std::int64_t>(e->valuedouble);
  });
  return g;
}

json::Ptr org_to_state(const Org& org) {
  auto o = json::object();
  json::set(o.get(), "label", org.label);
  json::set(o.get(), "description", org.description);
  json::set(o.get(), "lastUpdated", org.last_updated);
  auto users = json::object();
  for (const auto& [id, u] : org.users) {
    auto uo = json::object();
    json::set(uo.get(), "passwordHash", u.password_hash);
    json::set(uo.get(), "admin", u.admin);
    json::set(uo.get(), "email", u.email);
    json::set(uo.get(), "lastUpdated", u.last_updated);
    json::set(users.get(), id.c_str(), std::move(uo));
  }
  json::set(o.get(), "users", std::move(users));
  auto nodes = json::object();
  for (const auto& [id, n] : org.nodes) json::set(nodes.get(), id.c_str(), node_to_state(n));
  json::set(o.get(), "nodes", std::move(nodes));
  auto groups = json::object();
  for (const auto& [name, g] : org.groups) json::set(groups.get(), name.c_str(), group_to_state(g));
  json::set(o.get(), "hagroups", std::move(groups));
  auto pols = json::object();
  for (const auto& [name, text] : org.policies) json::set(pols.get(), name.c_str(), raw_json(text));
  json::set(o.get(), "managementPolicies", std::move(pols));
  return o;
}

Org org_from_state(const cJSON* o) {
  Org org;
  org.label = str(o, "label");
  org.description = str(o, "description");
  org.last_updated = str(o, "lastUpdated");
  each(o, "users", [&](const cJSON* u) {
    User user;
    user.password_hash = str(u, "passwordHash");
    user.admin = boolean(u, "admin");
    user.email = str(u, "email");
    user.last_updated = str(u, "lastUpdated");
    org.users[u->string] = user;
  });
  each(o, "nodes", [&](const cJSON* n) { org.nodes[n->string] = node_from_state(n); });
  each(o, "hagroups", [&](const cJSON* g) { org.groups[g->string] = group_from_state(g); });
  each(o, "managementPolicies", [&](const cJSON* p) { org.policies[p->string] = json::print(p); });
  return org;
}

json::Ptr change_to_state(const ChangeRow& c) {
  auto r = json::object();
  json::set(r.get(), "changeId", c.change_id);
  json::set(r.get(), "orgId", c.org);
  json::set(r.get(), "resource", c.resource);
  json::set(r.get(), "id", c.id);
  json::set(r.get(), "operation", c.operation);
  json::set(r.get(), "category", c.category);
  json::set(r.get(), "public", c.is_public);
  json::set(r.get(), "lastUpdated", c.last_updated);
  json::set(r.get(), "tUs", c.t_us);
  return r;
}

ChangeRow change_from_state(const cJSON* r) {
  ChangeRow c;
  c.change_id = num(r, "changeId");
  c.org = str(r, "orgId");
  c.resource = str(r, "resource");
  c.id = str(r, "id");
  c.operation = str(r, "operation");
  c.category = str(r, "category");
  c.is_public = boolean(r, "public");
  c.last_updated = str(r, "lastUpdated");
  c.t_us = num(r, "tUs");
  return c;
}

// The last `count` rows, one a line.
std::string change_lines(const std::deque<ChangeRow>& rows, std::size_t count) {
  std::string text;
  for (std::size_t i = rows.size() - count; i < rows.size(); ++i)
    text += json::print(change_to_state(rows[i]).get()) + "\n";
  return text;
}

Status rewrite_changes(const std::deque<ChangeRow>& rows, ChangeFile* f) {
  if (auto st = write_file_atomic(f->path, change_lines(rows, rows.size()), 0600); !st) return st;
  f->lines = rows.size();
  f->last_id = rows.empty() ? 0 : rows.back().change_id;
  f->rewrite = false;
  return {};
}

Status append_changes(const std::deque<ChangeRow>& rows, ChangeFile* f) {
  std::size_t fresh = 0;
  for (auto it = rows.rbegin(); it != rows.rend() && it->change_id > f->last_id; ++it) ++fresh;
  if (fresh == 0 && !f->rewrite) return {};
  if (f->rewrite || f->lines + fresh > 2 * kMaxChangeRows) return rewrite_changes(rows, f);
  std::string text = change_lines(rows, fresh);
  text.pop_back();  // append_line ends the last row
  if (auto st = append_line(f->path, text); !st) {
    // A part of the text may be in the file: a row cut short that later rows would
    // follow. The next save replaces the file instead (tmp + rename).
    f->rewrite = true;
    return st;
  }
  f->lines += fresh;
  f->last_id = rows.back().change_id;
  return {};
}

// Rows of PATH.changes newer than the state's own (a file from an older stand-in kept
// them inside the state), then the file rewritten with just the kept rows.
Status load_changes(HubState* s, ChangeFile* f) {
  auto text = read_file(f->path, 256u * 1024u * 1024u);
  if (!text && text.error().code != Errc::not_found) return std::unexpected(text.error());
  if (text) {
    std::string_view rest = *text;
    for (int line = 1; !rest.empty(); ++line) {
      auto nl = rest.find('\n');
      if (nl == std::string_view::npos) {
        std::fprintf(stderr, "exchange-standin: %s: dropped row %d, cut short by a crash\n", f->path.c_str(),
                     line);
        break;
      }
      auto row = json::parse(rest.substr(0, nl), f->path + " line " + std::to_string(line));
      if (!row) return std::unexpected(row.error());
      rest.remove_prefix(nl + 1);
      ChangeRow c = change_from_state(row->get());
      if (!s->changes.empty() && c.change_id <= s->changes.back().change_id) continue;
      s->changes.push_back(std::move(c));
    }
  }
  while (s->changes.size() > kMaxChangeRows) s->changes.pop_front();
  if (!s->changes.empty()) s->change_counter = std::max(s->change_counter, s->changes.back().change_id);
  if (!text && s->changes.empty()) return {};
  return rewrite_changes(s->changes, f);
}

}  // namespace

json::Ptr state_to_json(const HubState& s) {
  auto o = json::object();
  json::set(o.get(), "format", 1);
  json::set(o.get(), "revisionCounter", s.revision_counter);
  json::set(o.get(), "changeCounter", s.change_counter);
  json::set(o.get(), "logSeq", s.log_seq);
  auto orgs = json::object();
  for (const auto& [id, org] : s.orgs) json::set(orgs.get(), id.c_str(), org_to_state(org));
  json::set(o.get(), "orgs", std::move(orgs));
  if (!s.agent_file_version.empty()) set_raw(o.get(), "agentFileVersion", s.agent_file_version);
  auto css = json::object();
  for (const auto& [key, obj] : s.css) {
    auto c = json::object();
    json::set(c.get(), "size", obj.size);
    json::set(c.get(), "file", obj.file);
    if (obj.has_meta) {
      auto meta = json::object();
      json::set(meta.get(), "description", obj.description);
      json::set(meta.get(), "hashAlgorithm", obj.hash_algorithm);
      json::set(meta.get(), "publicKey", obj.public_key);
      json::set(meta.get(), "signature", obj.signature);
      json::set(c.get(), "meta", std::move(meta));
    }
    json::set(css.get(), key.c_str(), std::move(c));
  }
  json::set(o.get(), "css", std::move(css));
  auto locks = json::object();
  for (const auto& [key, l] : s.agbot_locks) {
    auto r = json::object();
    json::set(r.get(), "nodeId", l.node);
    json::set(r.get(), "nmpName", l.nmp);
    json::set(r.get(), "updated", l.updated);
    json::set(locks.get(), key.c_str(), std::move(r));
  }
  json::set(o.get(), "agbotLocks", std::move(locks));
  json::set(o.get(), "agbotLogSeq", s.agbot_log_seq);
  return o;
}

Result<HubState> state_from_json(const cJSON* root) {
  if (!cJSON_IsObject(root)) return fail(Errc::parse, "state file must hold a JSON object");
  HubState s;
  s.revision_counter = num(root, "revisionCounter");
  s.change_counter = num(root, "changeCounter");
  s.log_seq = num(root, "logSeq");
  each(root, "orgs", [&](const cJSON* o) { s.orgs[o->string] = org_from_state(o); });
  s.agent_file_version = text_of(root, "agentFileVersion", "");
  each(root, "changes", [&](const cJSON* r) { s.changes.push_back(change_from_state(r)); });
  each(root, "css", [&](const cJSON* c) {
    CssObject obj;
    obj.size = num(c, "size");
    obj.file = str(c, "file");
    const cJSON* meta = cJSON_GetObjectItemCaseSensitive(c, "meta");
    if (cJSON_IsObject(meta)) {
      obj.has_meta = true;
      obj.description = str(meta, "description");
      obj.hash_algorithm = str(meta, "hashAlgorithm");
      obj.public_key = str(meta, "publicKey");
      obj.signature = str(meta, "signature");
    }
    s.css[c->string] = std::move(obj);
  });
  each(root, "agbotLocks", [&](const cJSON* l) {
    s.agbot_locks[l->string] = AgbotLock{str(l, "nodeId"), str(l, "nmpName"), str(l, "updated")};
  });
  s.agbot_log_seq = num(root, "agbotLogSeq");
  return s;
}

namespace {

Result<HubState> load_state_file(const std::string& path) {
  auto text = read_file(path, 1024u * 1024u * 1024u);
  if (!text) {
    if (text.error().code == Errc::not_found) return HubState{};
    return std::unexpected(text.error());
  }
  auto root = json::parse(*text, "state file " + path);
  if (!root) return std::unexpected(root.error());
  return state_from_json(root->get());
}

}  // namespace

std::string changes_path(const std::string& state_path) {
  return state_path + ".changes";
}

Result<HubState> load_state(const std::string& path, ChangeFile* changes) {
  auto s = load_state_file(path);
  if (!s) return s;
  *changes = ChangeFile{changes_path(path)};
  if (auto st = load_changes(&*s, changes); !st) return std::unexpected(st.error());
  return s;
}

Status save_state(const std::string& path, const HubState& s, ChangeFile* changes) {
  if (auto st = append_changes(s.changes, changes); !st) return st;
  return write_file_atomic(path, json::print(state_to_json(s).get()), 0600);
}

}  // namespace agentd::standin
