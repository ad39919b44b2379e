// Pure parsers of the Exchange's and the CSS's answers (exchange_parse.h).
#include "exchange_parse.h"

#include <algorithm>
#include <cctype>

#include "json.h"

namespace agentd {

namespace {

// Adds where an error happened to a parse error from the json layer.
std::unexpected<Error> in(const std::string& what, Error e) {
  e.message = what + ": " + e.message;
  return std::unexpected(std::move(e));
}

// What of the hub's own words goes into an error (and so into the log): a
// hostile hub's megabyte-long msg must not become a megabyte of log per request.
constexpr std::size_t kMaxHubText = 200;

std::string excerpt(std::string_view text) {
  std::string out(text.substr(0, kMaxHubText));
  for (char& ch : out)
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = ' ';
  if (text.size() > kMaxHubText) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

// agentd's manifest extension (exchange_types.h UpgradeSection): "sha256" {file: 64 hex
// digits} and "sizes" {file: bytes}, both optional.
Status parse_file_maps(json::View section, const std::string& key, UpgradeSection* s) {
  const json::View sha = section.member("sha256");
  if (!sha.null_or_absent()) {
    if (!sha.is_object()) return fail(Errc::parse, "field '" + key + ".sha256' must be an object");
    for (const json::View item : sha) {
      const std::string field = key + ".sha256." + item.key();
      if (!item.is_string()) return fail(Errc::parse, "field '" + field + "' must be a string");
      std::string hex = item.text();
      if (!is_hex64(hex)) return fail(Errc::parse, "field '" + field + "' must be 64 hex digits");
      std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return std::tolower(c); });
      s->sha256[item.key()] = std::move(hex);
    }
  }
  const json::View sizes = section.member("sizes");
  if (!sizes.null_or_absent()) {
    if (!sizes.is_object()) return fail(Errc::parse, "field '" + key + ".sizes' must be an object");
    for (const json::View item : sizes) {
      const std::string name = item.key();
      const std::string field = key + ".sizes." + name;
      // By name, as before: of a repeated name the first value counts.
      auto n = sizes.num(name.c_str());
      if (!n || *n < 0) return fail(Errc::parse, "field '" + field + "' must be a non-negative integer");
      s->sizes[name] = static_cast<std::uint64_t>(*n);
    }
  }
  return {};
}

Result<UpgradeSection> parse_section(json::View root, const char* key) {
  UpgradeSection s;
  const json::View o = root.member(key);
  if (o.null_or_absent()) return s;
  if (!o.is_object()) return fail(Errc::parse, std::string("field '") + key + "' must be an object");
  auto files = o.opt_str_array("files");
  if (!files) return std::unexpected(files.error());
  auto version = o.opt_str("version");
  if (!version) return std::unexpected(version.error());
  s.files = std::move(*files);
  s.version = std::move(*version);
  if (auto st = parse_file_maps(o, key, &s); !st) return std::unexpected(st.error());
  return s;
}

// One node policy property typed as anax types it (externalpolicy/property_list.go):
// JSON numbers and booleans keep their type; strings are versions or lists when
// "type" says so ("list of strings" is one comma-separated string), else strings.
Result<std::pair<std::string, PropertyValue>> parse_property(json::View p, const std::string& where) {
  if (!p.is_object()) return fail(Errc::parse, where + " must be an object");
  auto name = p.str("name");
  if (!name) return in(where, name.error());
  if (name->empty()) return fail(Errc::parse, where + ": field 'name' must not be empty");
  const std::string field = where + " '" + *name + "'";
  auto type = p.opt_str("type");
  if (!type) return in(field, type.error());
  const json::View v = p.member("value");
  if (v.absent()) return fail(Errc::parse, field + ": field 'value' is missing");
  if (v.is_bool()) return std::make_pair(*name, PropertyValue::of_bool(v.is_true()));
  if (v.is_number()) return std::make_pair(*name, PropertyValue::of_number(v.number()));
  if (!v.is_string()) return fail(Errc::parse, field + ": field 'value' must be a string, number or boolean");
  std::string text = v.text();
  if (*type == "version") return std::make_pair(*name, PropertyValue::of_version(std::move(text)));
  if (*type == "list of strings") {
    std::vector<std::string> items;
    std::size_t i = 0;
    while (i <= text.size()) {
      std::size_t j = std::min(text.find(',', i), text.size());
      std::string item = text.substr(i, j - i);
      while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.erase(0, 1);
      while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.pop_back();
      if (!item.empty()) items.push_back(std::move(item));
      i = j + 1;
    }
    return std::make_pair(*name, PropertyValue::of_list(items));
  }
  return std::make_pair(*name, PropertyValue::of_string(std::move(text)));
}

// Adds the "properties" array of `obj` (absent or null: none) to `out`, replacing same names.
Status add_properties(json::View obj, const std::string& where, Properties* out) {
  const json::View list = obj.member("properties");
  if (list.null_or_absent()) return {};
  if (!list.is_array()) return fail(Errc::parse, "field '" + where + "' must be an array");
  for (const json::View item : list) {
    auto p = parse_property(item, where + " item");
    if (!p) return std::unexpected(p.error());
    (*out)[p->first] = std::move(p->second);
  }
  return {};
}

Result<ManagementPolicy> parse_policy(json::View p) {
  ManagementPolicy m;
  if (!p.is_object()) return fail(Errc::parse, "policy must be an object");
  m.id = p.key();
  auto label = p.opt_str("label");
  if (!label) return std::unexpected(label.error());
  auto description = p.opt_str("description");
  if (!description) return std::unexpected(description.error());
  auto constraints = p.opt_str_array("constraints");
  if (!constraints) return std::unexpected(constraints.error());
  auto patterns = p.opt_str_array("patterns");
  if (!patterns) return std::unexpected(patterns.error());
  auto enabled = p.opt_bool("enabled", false);
  if (!enabled) return std::unexpected(enabled.error());
  auto start = p.opt_str("start", "now");
  if (!start) return std::unexpected(start.error());
  auto window = p.opt_num("startWindow", 0);
  if (!window) return std::unexpected(window.error());
  auto updated = p.opt_str("lastUpdated");
  if (!updated) return std::unexpected(updated.error());
  m.label = std::move(*label);
  m.description = std::move(*description);
  m.constraints = std::move(*constraints);
  m.patterns = std::move(*patterns);
  m.enabled = *enabled;
  m.start = start->empty() ? "now" : *start;
  m.start_window = std::max<std::int64_t>(*window, 0);  // the Exchange clamps negatives too
  m.last_updated = std::move(*updated);
  const json::View up = p.member("agentUpgradePolicy");
  if (!up.null_or_absent()) {
    if (!up.is_object()) return fail(Errc::parse, "field 'agentUpgradePolicy' must be an object");
    auto manifest = up.opt_str("manifest");
    if (!manifest) return std::unexpected(manifest.error());
    auto downgrade = up.opt_bool("allowDowngrade", false);
    if (!downgrade) return std::unexpected(downgrade.error());
    m.agent_upgrade.manifest = *manifest;
    m.agent_upgrade.allow_downgrade = *downgrade;
  }
  return m;
}

}  // namespace

Result<NodeRecord> parse_node(std::string_view body, const std::string& org, const std::string& node_id) {
  auto root = json::parse(body, "node response");
  if (!root) return std::unexpected(root.error());
  auto nodes = json::View(root->get()).obj("nodes");
  if (!nodes) return std::unexpected(nodes.error());
  const std::string key = org + "/" + node_id;  // exchange-api.md §3.1: keyed "org/node"
  const json::View n = nodes->member(key.c_str());
  if (!n.is_object()) return fail(Errc::parse, "response holds no node '" + key + "'");

  NodeRecord rec;
  rec.id = node_id;
  struct Field {
    const char* key;
    std::string* out;
  };
  for (auto [k, out] :
       {Field{"name", &rec.name}, Field{"owner", &rec.owner}, Field{"nodeType", &rec.node_type},
        Field{"pattern", &rec.pattern}, Field{"arch", &rec.arch},
        Field{"ha_group", &rec.ha_group}}) {  // ha_group: null when in no group
    auto v = n.opt_str(k);
    if (!v) return std::unexpected(v.error());
    *out = std::move(*v);
  }
  const json::View sv = n.member("softwareVersions");
  if (!sv.null_or_absent()) {
    if (!sv.is_object()) return fail(Errc::parse, "field 'softwareVersions' must be an object");
    for (const json::View item : sv) {
      if (!item.is_string()) return fail(Errc::parse, "softwareVersions." + item.key() + " must be a string");
      rec.software_versions[item.key()] = item.text();
    }
  }
  return rec;
}

Result<std::vector<ManagementPolicy>> parse_management_policies(std::string_view body) {
  auto root = json::parse(body, "management policy list");
  if (!root) return std::unexpected(root.error());
  auto map = json::View(root->get()).obj("managementPolicy");
  if (!map) return std::unexpected(map.error());
  std::vector<ManagementPolicy> out;
  for (const json::View item : *map) {
    auto p = parse_policy(item);
    if (!p) return in("managementPolicy." + item.key(), p.error());
    out.push_back(std::move(*p));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<Manifest> parse_manifest(std::string_view body) {
  auto root = json::parse(body, "upgrade manifest");
  if (!root) return std::unexpected(root.error());
  const json::View r(root->get());
  if (!r.is_object()) return fail(Errc::parse, "manifest must be an object");
  Manifest m;
  auto sw = parse_section(r, "softwareUpgrade");
  if (!sw) return std::unexpected(sw.error());
  auto cert = parse_section(r, "certificateUpgrade");
  if (!cert) return std::unexpected(cert.error());
  auto conf = parse_section(r, "configurationUpgrade");
  if (!conf) return std::unexpected(conf.error());
  m.software = std::move(*sw);
  m.certificate = std::move(*cert);
  m.configuration = std::move(*conf);
  return m;
}

Result<ObjectMetadata> parse_object_metadata(std::string_view body, const std::string& type,
                                             const std::string& id) {
  auto root = json::parse(body, "object metadata");
  if (!root) return std::unexpected(root.error());
  const json::View o(root->get());
  if (!o.is_object()) return fail(Errc::parse, "metadata must be an object");
  ObjectMetadata m;
  struct Field {
    const char* key;
    std::string* out;
  };
  for (auto [k, out] : {Field{"objectID", &m.object_id}, Field{"objectType", &m.object_type},
                        Field{"description", &m.description}, Field{"hashAlgorithm", &m.hash_algorithm},
                        Field{"signature", &m.signature}}) {
    auto v = o.opt_str(k);
    if (!v) return std::unexpected(v.error());
    *out = std::move(*v);
  }
  auto size = o.opt_num("objectSize", 0);
  if (!size) return std::unexpected(size.error());
  m.size = *size;
  // anax (exchange/css.go GetObject) accepts only metadata with an id and data.
  if (m.object_id.empty()) return fail(Errc::parse, "field 'objectID' is missing or empty");
  if (m.object_id != id)
    return fail(Errc::parse, "metadata is for object '" + m.object_id + "', not '" + id + "'");
  if (!m.object_type.empty() && m.object_type != type)
    return fail(Errc::parse, "metadata is for type '" + m.object_type + "', not '" + type + "'");
  if (m.size <= 0)
    return fail(Errc::parse, "field 'objectSize' must be greater than 0 (the object has no data)");
  return m;
}

Result<Properties> parse_node_policy(std::string_view body) {
  auto root = json::parse(body, "node policy");
  if (!root) return std::unexpected(root.error());
  const json::View r(root->get());
  if (!r.is_object()) return fail(Errc::parse, "node policy must be an object");
  // anax NodePolicy.GetManagementPolicy: the top-level properties, then the
  // management ones, which win on the same name.
  Properties props;
  if (auto st = add_properties(r, "properties", &props); !st) return std::unexpected(st.error());
  const json::View mgmt = r.member("management");
  if (!mgmt.null_or_absent()) {
    if (!mgmt.is_object()) return fail(Errc::parse, "field 'management' must be an object");
    if (auto st = add_properties(mgmt, "management.properties", &props); !st)
      return std::unexpected(st.error());
  }
  return props;
}

Result<std::vector<std::string>> parse_agent_software_versions(std::string_view body) {
  auto root = json::parse(body, "AgentFileVersion");
  if (!root) return std::unexpected(root.error());
  const json::View r(root->get());
  if (!r.is_object()) return fail(Errc::parse, "response must be an object");
  return r.opt_str_array("agentSoftwareVersions");
}

Result<std::int64_t> parse_max_change_id(std::string_view body) {
  auto root = json::parse(body, "maxchangeid response");
  if (!root) return std::unexpected(root.error());
  return json::View(root->get()).num("maxChangeId");
}

Result<Changes> parse_changes(std::string_view body) {
  auto root = json::parse(body, "changes response");
  if (!root) return std::unexpected(root.error());
  const json::View r(root->get());
  Changes out;
  auto list = r.arr("changes");
  if (!list) return std::unexpected(list.error());
  for (const json::View item : *list) {
    if (!item.is_object()) return fail(Errc::parse, "each change must be an object");
    Change c;
    for (auto [k, field] : {std::pair{"orgId", &c.org}, std::pair{"resource", &c.resource},
                            std::pair{"id", &c.id}, std::pair{"operation", &c.operation}}) {
      auto v = item.str(k);
      if (!v) return std::unexpected(v.error());
      *field = std::move(*v);
    }
    out.changes.push_back(std::move(c));
  }
  auto most = r.num("mostRecentChangeId");
  if (!most) return std::unexpected(most.error());
  auto hit = r.opt_bool("hitMaxRecords", false);
  if (!hit) return std::unexpected(hit.error());
  auto version = r.opt_str("exchangeVersion");
  if (!version) return std::unexpected(version.error());
  out.most_recent_change_id = *most;
  out.hit_max_records = *hit;
  out.exchange_version = *version;
  return out;
}

std::string hub_error_text(std::string_view body) {
  if (body.empty()) return {};
  if (auto j = json::parse(body, "error body"); j && json::View(j->get()).is_object()) {
    const json::View r(j->get());
    auto code = r.opt_str("code");
    auto msg = r.opt_str("msg");
    std::string c = code ? excerpt(*code) : "", m = msg ? excerpt(*msg) : "";
    if (!c.empty() && !m.empty()) return c + ": " + m;
    if (!c.empty() || !m.empty()) return c + m;
    return {};  // a JSON body without {"code","msg"} (e.g. {"nodeGroups":[]}) adds nothing
  }
  return excerpt(body);
}

Result<std::pair<std::string, std::string>> manifest_location(const std::string& manifest_ref,
                                                              const std::string& node_org) {
  std::string org = node_org, id = manifest_ref;
  if (auto slash = manifest_ref.find('/'); slash != std::string::npos) {
    org = manifest_ref.substr(0, slash);
    id = manifest_ref.substr(slash + 1);
  }
  if (org.empty() || id.empty())
    return fail(Errc::parse, "malformed manifest reference '" + manifest_ref + "'");
  return std::make_pair(std::move(org), std::move(id));
}

}  // namespace agentd
