// Typed Exchange calls (exchange-api.md) and the coordination extension (protocol.md §3).
#include "exchange.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <utility>

#include "json.h"
#include "metrics.h"

namespace agentd {

namespace {

// Path segments are percent-encoded: ids come from configuration and the hub.
std::string seg(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string quoted(std::int64_t revision) {
  return "\"" + std::to_string(revision) + "\"";
}

bool transient_status(long s) {
  return s >= 500 || s == 408 || s == 429;
}

// Adds where an error happened to a parse error from the json/group layers.
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

// The hub's {"code","msg"} (exchange-api.md §1.3), or a short excerpt of another body.
std::string hub_text(const HttpResponse& r) {
  if (r.body.empty()) return {};
  if (auto j = json::parse(r.body, "error body"); j && cJSON_IsObject(j->get())) {
    auto code = json::opt_string(j->get(), "code");
    auto msg = json::opt_string(j->get(), "msg");
    std::string c = code ? excerpt(*code) : "", m = msg ? excerpt(*msg) : "";
    if (!c.empty() && !m.empty()) return c + ": " + m;
    if (!c.empty() || !m.empty()) return c + m;
    return {};  // a JSON body without {"code","msg"} (e.g. {"nodeGroups":[]}) adds nothing
  }
  return excerpt(r.body);
}

// "myorg/nmp1" or "nmp1" -> "nmp1": the status route takes the bare name in the node's org.
std::string bare_name(const std::string& name) {
  auto slash = name.find('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

// agentd's manifest extension (exchange.h UpgradeSection): "sha256" {file: 64 hex
// digits} and "sizes" {file: bytes}, both optional.
Status parse_file_maps(const cJSON* section, const std::string& key, UpgradeSection* s) {
  const cJSON* sha = cJSON_GetObjectItemCaseSensitive(section, "sha256");
  if (sha && !cJSON_IsNull(sha)) {
    if (!cJSON_IsObject(sha)) return fail(Errc::parse, "field '" + key + ".sha256' must be an object");
    const cJSON* item = nullptr;
    cJSON_ArrayForEach(item, sha) {
      const std::string field = key + ".sha256." + item->string;
      if (!cJSON_IsString(item) || !item->valuestring)
        return fail(Errc::parse, "field '" + field + "' must be a string");
      std::string hex = item->valuestring;
      if (!is_hex64(hex)) return fail(Errc::parse, "field '" + field + "' must be 64 hex digits");
      std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return std::tolower(c); });
      s->sha256[item->string] = std::move(hex);
    }
  }
  const cJSON* sizes = cJSON_GetObjectItemCaseSensitive(section, "sizes");
  if (sizes && !cJSON_IsNull(sizes)) {
    if (!cJSON_IsObject(sizes)) return fail(Errc::parse, "field '" + key + ".sizes' must be an object");
    const cJSON* item = nullptr;
    cJSON_ArrayForEach(item, sizes) {
      const std::string field = key + ".sizes." + item->string;
      auto n = json::get_int(sizes, item->string);
      if (!n || *n < 0) return fail(Errc::parse, "field '" + field + "' must be a non-negative integer");
      s->sizes[item->string] = static_cast<std::uint64_t>(*n);
    }
  }
  return {};
}

Result<UpgradeSection> parse_section(const cJSON* root, const char* key) {
  UpgradeSection s;
  const cJSON* o = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!o || cJSON_IsNull(o)) return s;
  if (!cJSON_IsObject(o)) return fail(Errc::parse, std::string("field '") + key + "' must be an object");
  auto files = json::opt_string_array(o, "files");
  if (!files) return std::unexpected(files.error());
  auto version = json::opt_string(o, "version");
  if (!version) return std::unexpected(version.error());
  s.files = std::move(*files);
  s.version = std::move(*version);
  if (auto st = parse_file_maps(o, key, &s); !st) return std::unexpected(st.error());
  return s;
}

// The manifest document (exchange-api.md §5.1), shared by get_manifest and get_signed_manifest.
Result<Manifest> parse_manifest(std::string_view bytes, const std::string& what) {
  auto root = json::parse(bytes, "upgrade manifest");
  if (!root) return in(what, root.error());
  if (!cJSON_IsObject(root->get())) return fail(Errc::parse, what + ": manifest must be an object");
  Manifest m;
  auto sw = parse_section(root->get(), "softwareUpgrade");
  if (!sw) return in(what, sw.error());
  auto cert = parse_section(root->get(), "certificateUpgrade");
  if (!cert) return in(what, cert.error());
  auto conf = parse_section(root->get(), "configurationUpgrade");
  if (!conf) return in(what, conf.error());
  m.software = std::move(*sw);
  m.certificate = std::move(*cert);
  m.configuration = std::move(*conf);
  return m;
}

// exchange-api.md §5.1: "org/id", or a bare id in the node's org.
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

// One node policy property typed as anax types it (externalpolicy/property_list.go):
// JSON numbers and booleans keep their type; strings are versions or lists when
// "type" says so ("list of strings" is one comma-separated string), else strings.
Result<std::pair<std::string, PropertyValue>> parse_property(const cJSON* p, const std::string& where) {
  if (!cJSON_IsObject(p)) return fail(Errc::parse, where + " must be an object");
  auto name = json::get_string(p, "name");
  if (!name) return in(where, name.error());
  if (name->empty()) return fail(Errc::parse, where + ": field 'name' must not be empty");
  const std::string field = where + " '" + *name + "'";
  auto type = json::opt_string(p, "type");
  if (!type) return in(field, type.error());
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(p, "value");
  if (!v) return fail(Errc::parse, field + ": field 'value' is missing");
  if (cJSON_IsBool(v)) return std::make_pair(*name, PropertyValue::of_bool(cJSON_IsTrue(v)));
  if (cJSON_IsNumber(v)) return std::make_pair(*name, PropertyValue::of_number(v->valuedouble));
  if (!cJSON_IsString(v) || !v->valuestring)
    return fail(Errc::parse, field + ": field 'value' must be a string, number or boolean");
  std::string text = v->valuestring;
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
Status add_properties(const cJSON* obj, const std::string& where, Properties* out) {
  const cJSON* list = cJSON_GetObjectItemCaseSensitive(obj, "properties");
  if (!list || cJSON_IsNull(list)) return {};
  if (!cJSON_IsArray(list)) return fail(Errc::parse, "field '" + where + "' must be an array");
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, list) {
    auto p = parse_property(item, where + " item");
    if (!p) return std::unexpected(p.error());
    (*out)[p->first] = std::move(p->second);
  }
  return {};
}

Result<ManagementPolicy> parse_policy(const cJSON* p) {
  ManagementPolicy m;
  if (!cJSON_IsObject(p)) return fail(Errc::parse, "policy must be an object");
  m.id = p->string;
  auto label = json::opt_string(p, "label");
  if (!label) return std::unexpected(label.error());
  auto description = json::opt_string(p, "description");
  if (!description) return std::unexpected(description.error());
  auto constraints = json::opt_string_array(p, "constraints");
  if (!constraints) return std::unexpected(constraints.error());
  auto patterns = json::opt_string_array(p, "patterns");
  if (!patterns) return std::unexpected(patterns.error());
  auto enabled = json::opt_bool(p, "enabled", false);
  if (!enabled) return std::unexpected(enabled.error());
  auto start = json::opt_string(p, "start", "now");
  if (!start) return std::unexpected(start.error());
  auto window = json::opt_int(p, "startWindow", 0);
  if (!window) return std::unexpected(window.error());
  auto updated = json::opt_string(p, "lastUpdated");
  if (!updated) return std::unexpected(updated.error());
  m.label = std::move(*label);
  m.description = std::move(*description);
  m.constraints = std::move(*constraints);
  m.patterns = std::move(*patterns);
  m.enabled = *enabled;
  m.start = start->empty() ? "now" : *start;
  m.start_window = std::max<std::int64_t>(*window, 0);  // the Exchange clamps negatives too
  m.last_updated = std::move(*updated);
  const cJSON* up = cJSON_GetObjectItemCaseSensitive(p, "agentUpgradePolicy");
  if (up && !cJSON_IsNull(up)) {
    if (!cJSON_IsObject(up)) return fail(Errc::parse, "field 'agentUpgradePolicy' must be an object");
    auto manifest = json::opt_string(up, "manifest");
    if (!manifest) return std::unexpected(manifest.error());
    auto downgrade = json::opt_bool(up, "allowDowngrade", false);
    if (!downgrade) return std::unexpected(downgrade.error());
    m.agent_upgrade.manifest = *manifest;
    m.agent_upgrade.allow_downgrade = *downgrade;
  }
  return m;
}

}  // namespace

Status check_status(const HttpResponse& r, std::initializer_list<long> ok, const std::string& what) {
  if (std::find(ok.begin(), ok.end(), r.status) != ok.end()) return {};
  std::string message = what + ": hub answered " + std::to_string(r.status);
  if (std::string text = hub_text(r); !text.empty()) message += " (" + text + ")";
  return std::unexpected(http_status_error(r, std::move(message)));
}

Exchange::Exchange(HttpClient& http, ExchangeEndpoint endpoint, RetryPolicy retry, Sleeper& sleeper,
                   Metrics* metrics)
    : http_(http),
      ep_(std::move(endpoint)),
      retry_(retry),
      sleeper_(sleeper),
      metrics_(metrics),
      rng_(std::random_device{}()) {
  while (!ep_.exchange_url.empty() && ep_.exchange_url.back() == '/') ep_.exchange_url.pop_back();
  while (!ep_.css_url.empty() && ep_.css_url.back() == '/') ep_.css_url.pop_back();
}

std::string Exchange::url(const std::string& path) const {
  return ep_.exchange_url + "/" + path;
}

// Reads retry transient failures (transport, 5xx, 408, 429) with full jitter; writes
// never do (protocol.md §4.6: the caller re-reads before writing again).
Result<HttpResponse> Exchange::call(HttpRequest req, bool retry, HubRoute route) {
  using std::chrono::milliseconds;
  using Steady = std::chrono::steady_clock;
  const int attempts = retry ? std::max(1, retry_.attempts) : 1;
  const bool bounded = retry_.budget > milliseconds{0};
  const Steady::time_point deadline = bounded ? Steady::now() + retry_.budget : Steady::time_point::max();
  auto left = [&] { return std::chrono::duration_cast<milliseconds>(deadline - Steady::now()); };
  for (int attempt = 0;; ++attempt) {
    if (bounded) req.timeout = std::max(left(), milliseconds{1});
    auto r = http_.perform(req);
    if (metrics_) metrics_->hub_request(route, r ? r->status : 0);
    const bool transient = r ? transient_status(r->status) : r.error().transient();
    if (!transient || attempt + 1 >= attempts) return r;
    const milliseconds backoff = full_jitter(attempt, retry_.base, retry_.cap, rng_);
    if (bounded && left() <= backoff) return r;  // no time for another try: the last answer stands
    if (!sleeper_.sleep_for(backoff))
      return fail(Errc::cancelled, req.method + " " + req.url + ": stop requested while retrying");
  }
}

Result<NodeRecord> Exchange::get_node() {
  const std::string path = "orgs/" + seg(ep_.org) + "/nodes/" + seg(ep_.node_id);
  const std::string what = "GET " + path;
  auto r = call({"GET", url(path), {}, {}}, true, HubRoute::node);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "node response");
  if (!root) return in(what, root.error());
  auto nodes = json::get_object(root->get(), "nodes");
  if (!nodes) return in(what, nodes.error());
  const std::string key = ep_.org + "/" + ep_.node_id;  // exchange-api.md §3.1: keyed "org/node"
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(*nodes, key.c_str());
  if (!cJSON_IsObject(n)) return fail(Errc::parse, what + ": response holds no node '" + key + "'");

  NodeRecord rec;
  rec.id = ep_.node_id;
  struct Field {
    const char* key;
    std::string* out;
  };
  for (auto [k, out] :
       {Field{"name", &rec.name}, Field{"owner", &rec.owner}, Field{"nodeType", &rec.node_type},
        Field{"pattern", &rec.pattern}, Field{"arch", &rec.arch},
        Field{"ha_group", &rec.ha_group}}) {  // ha_group: null when in no group
    auto v = json::opt_string(n, k);
    if (!v) return in(what, v.error());
    *out = std::move(*v);
  }
  const cJSON* sv = cJSON_GetObjectItemCaseSensitive(n, "softwareVersions");
  if (sv && !cJSON_IsNull(sv)) {
    if (!cJSON_IsObject(sv)) return fail(Errc::parse, what + ": field 'softwareVersions' must be an object");
    const cJSON* item = nullptr;
    cJSON_ArrayForEach(item, sv) {
      if (!cJSON_IsString(item) || !item->valuestring)
        return fail(Errc::parse, what + ": softwareVersions." + item->string + " must be a string");
      rec.software_versions[item->string] = item->valuestring;
    }
  }
  return rec;
}

Result<std::vector<ManagementPolicy>> Exchange::list_management_policies() {
  const std::string path = "orgs/" + seg(ep_.org) + "/managementpolicies";
  const std::string what = "GET " + path;
  auto r = call({"GET", url(path), {}, {}}, true, HubRoute::management_policies);
  if (!r) return std::unexpected(r.error());
  std::vector<ManagementPolicy> out;
  if (r->status == 404) return out;  // exchange-api.md §4.1: no policies in the org
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "management policy list");
  if (!root) return in(what, root.error());
  auto map = json::get_object(root->get(), "managementPolicy");
  if (!map) return in(what, map.error());
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, *map) {
    auto p = parse_policy(item);
    if (!p) return in(what + ": managementPolicy." + item->string, p.error());
    out.push_back(std::move(*p));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

Result<Manifest> Exchange::get_manifest(const std::string& manifest_ref) {
  if (ep_.css_url.empty())
    return fail(Errc::config, "HZN_FSS_CSSURL is not set: cannot fetch manifest '" + manifest_ref + "'");
  auto where = manifest_location(manifest_ref, ep_.org);
  if (!where) return std::unexpected(where.error());
  const auto& [org, id] = *where;
  const std::string full = object_data_url(org, "agent_upgrade_manifests", id);
  const std::string what = "GET " + full;
  auto r = call({"GET", full, {}, {}}, true, HubRoute::css_object);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  return parse_manifest(r->body, what);
}

Result<SignedManifest> Exchange::get_signed_manifest(const std::string& manifest_ref) {
  if (ep_.css_url.empty())
    return fail(Errc::config, "HZN_FSS_CSSURL is not set: cannot fetch manifest '" + manifest_ref + "'");
  auto where = manifest_location(manifest_ref, ep_.org);
  if (!where) return std::unexpected(where.error());
  SignedManifest out;
  out.org = where->first;
  out.id = where->second;
  auto meta = get_object_metadata(out.org, "agent_upgrade_manifests", out.id);
  if (!meta) return std::unexpected(meta.error());
  const std::string full = object_data_url(out.org, "agent_upgrade_manifests", out.id);
  const std::string what = "GET " + full;
  auto r = call({"GET", full, {}, {}}, true, HubRoute::css_object);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  // The signature covers the data as the metadata describes it: data of another
  // size is another object (replaced between the two reads, or damaged).
  if (r->body.size() != static_cast<std::uint64_t>(meta->size))
    return fail(Errc::verification, what + ": " + std::to_string(r->body.size()) +
                                        " bytes, but the object's metadata says objectSize " +
                                        std::to_string(meta->size));
  auto m = parse_manifest(r->body, what);
  if (!m) return std::unexpected(m.error());
  out.bytes = std::move(r->body);
  out.signature = std::move(meta->signature);
  out.manifest = std::move(*m);
  return out;
}

Result<ObjectMetadata> Exchange::get_object_metadata(const std::string& org, const std::string& type,
                                                     const std::string& id) {
  if (ep_.css_url.empty())
    return fail(Errc::config,
                "HZN_FSS_CSSURL is not set: cannot read object '" + org + "/" + type + "/" + id + "'");
  const std::string full = ep_.css_url + "/api/v1/objects/" + seg(org) + "/" + seg(type) + "/" + seg(id);
  const std::string what = "GET " + full;
  auto r = call({"GET", full, {}, {}}, true, HubRoute::css_object);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "object metadata");
  if (!root) return in(what, root.error());
  const cJSON* o = root->get();
  if (!cJSON_IsObject(o)) return fail(Errc::parse, what + ": metadata must be an object");
  ObjectMetadata m;
  struct Field {
    const char* key;
    std::string* out;
  };
  for (auto [k, out] : {Field{"objectID", &m.object_id}, Field{"objectType", &m.object_type},
                        Field{"description", &m.description}, Field{"hashAlgorithm", &m.hash_algorithm},
                        Field{"signature", &m.signature}}) {
    auto v = json::opt_string(o, k);
    if (!v) return in(what, v.error());
    *out = std::move(*v);
  }
  auto size = json::opt_int(o, "objectSize", 0);
  if (!size) return in(what, size.error());
  m.size = *size;
  // anax (exchange/css.go GetObject) accepts only metadata with an id and data.
  if (m.object_id.empty()) return fail(Errc::parse, what + ": field 'objectID' is missing or empty");
  if (m.object_id != id)
    return fail(Errc::parse, what + ": metadata is for object '" + m.object_id + "', not '" + id + "'");
  if (!m.object_type.empty() && m.object_type != type)
    return fail(Errc::parse, what + ": metadata is for type '" + m.object_type + "', not '" + type + "'");
  if (m.size <= 0)
    return fail(Errc::parse, what + ": field 'objectSize' must be greater than 0 (the object has no data)");
  return m;
}

std::string Exchange::object_data_url(const std::string& org, const std::string& type,
                                      const std::string& id) const {
  return ep_.css_url + "/api/v1/objects/" + seg(org) + "/" + seg(type) + "/" + seg(id) + "/data";
}

Result<std::optional<Properties>> Exchange::get_node_policy() {
  const std::string path = "orgs/" + seg(ep_.org) + "/nodes/" + seg(ep_.node_id) + "/policy";
  const std::string what = "GET " + path;
  auto r = call({"GET", url(path), {}, {}}, true, HubRoute::node_policy);
  if (!r) return std::unexpected(r.error());
  if (r->status == 404) return std::optional<Properties>{};  // the node has no policy
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "node policy");
  if (!root) return in(what, root.error());
  if (!cJSON_IsObject(root->get())) return fail(Errc::parse, what + ": node policy must be an object");
  // anax NodePolicy.GetManagementPolicy: the top-level properties, then the
  // management ones, which win on the same name.
  Properties props;
  if (auto st = add_properties(root->get(), "properties", &props); !st) return in(what, st.error());
  const cJSON* mgmt = cJSON_GetObjectItemCaseSensitive(root->get(), "management");
  if (mgmt && !cJSON_IsNull(mgmt)) {
    if (!cJSON_IsObject(mgmt)) return fail(Errc::parse, what + ": field 'management' must be an object");
    if (auto st = add_properties(mgmt, "management.properties", &props); !st) return in(what, st.error());
  }
  return std::optional<Properties>(std::move(props));
}

Result<std::vector<std::string>> Exchange::agent_software_versions() {
  const std::string path = "orgs/IBM/AgentFileVersion";  // exchange-api.md §5.3: only org IBM
  const std::string what = "GET " + path;
  auto r = call({"GET", url(path), {}, {}}, true, HubRoute::agent_versions);
  if (!r) return std::unexpected(r.error());
  if (r->status == 404) return std::vector<std::string>{};  // never published
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "AgentFileVersion");
  if (!root) return in(what, root.error());
  if (!cJSON_IsObject(root->get())) return fail(Errc::parse, what + ": response must be an object");
  auto v = json::opt_string_array(root->get(), "agentSoftwareVersions");
  if (!v) return in(what, v.error());
  return *v;
}

Status Exchange::put_management_status(const std::string& nmp_name, const ManagementStatus& status) {
  const std::string path =
      "orgs/" + seg(ep_.org) + "/nodes/" + seg(ep_.node_id) + "/managementStatus/" + seg(bare_name(nmp_name));
  // exchange-api.md §4.2: the shape anax sends, with its omitempty fields left out when empty.
  auto s = json::object();
  json::set(s.get(), "scheduledTime", status.scheduled_time);
  if (!status.start_time.empty()) json::set(s.get(), "startTime", status.start_time);
  if (!status.end_time.empty()) json::set(s.get(), "endTime", status.end_time);
  auto versions = json::object();
  json::set(versions.get(), "softwareVersion", status.software_version);
  json::set(versions.get(), "certVersion", "");
  json::set(versions.get(), "configVersion", "");
  json::set(s.get(), "upgradedVersions", std::move(versions));
  json::set(s.get(), "status", status.status);
  if (!status.error_message.empty()) json::set(s.get(), "errorMessage", status.error_message);
  auto body = json::object();
  json::set(body.get(), "agentUpgradePolicyStatus", std::move(s));

  auto r = call({"PUT", url(path), {}, json::print(body.get())}, false, HubRoute::management_status);
  if (!r) return std::unexpected(r.error());
  return check_status(*r, {201, 204}, "PUT " + path);
}

// The Exchange replaces softwareVersions as a whole, so the other keys (certificate,
// config) are read first and sent back unchanged.
Status Exchange::patch_software_version(const std::string& version) {
  auto node = get_node();
  if (!node) return std::unexpected(node.error());
  auto versions = json::object();
  node->software_versions["horizon"] = version;
  for (const auto& [k, v] : node->software_versions) json::set(versions.get(), k.c_str(), v);
  auto body = json::object();
  json::set(body.get(), "softwareVersions", std::move(versions));
  const std::string path = "orgs/" + seg(ep_.org) + "/nodes/" + seg(ep_.node_id);
  auto r = call({"PATCH", url(path), {}, json::print(body.get())}, false, HubRoute::software_version);
  if (!r) return std::unexpected(r.error());
  return check_status(*r, {201, 204}, "PATCH " + path);
}

Result<std::int64_t> Exchange::max_change_id() {
  const std::string path = "changes/maxchangeid";
  const std::string what = "GET " + path;
  auto r = call({"GET", url(path), {}, {}}, true, HubRoute::changes);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "maxchangeid response");
  if (!root) return in(what, root.error());
  auto id = json::get_int(root->get(), "maxChangeId");
  if (!id) return in(what, id.error());
  return *id;
}

// Idempotent (a read that also heartbeats), so it is retried like a GET.
Result<Changes> Exchange::changes(std::int64_t since, int max_records) {
  const std::string path = "orgs/" + seg(ep_.org) + "/changes";
  const std::string what = "POST " + path;
  auto req = json::object();
  json::set(req.get(), "changeId", since);
  json::set(req.get(), "maxRecords", max_records);
  auto r = call({"POST", url(path), {}, json::print(req.get())}, true, HubRoute::changes);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {201}, what); !st) return std::unexpected(st.error());
  auto root = json::parse(r->body, "changes response");
  if (!root) return in(what, root.error());
  Changes out;
  auto list = json::get_array(root->get(), "changes");
  if (!list) return in(what, list.error());
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, *list) {
    if (!cJSON_IsObject(item)) return fail(Errc::parse, what + ": each change must be an object");
    Change c;
    for (auto [k, field] : {std::pair{"orgId", &c.org}, std::pair{"resource", &c.resource},
                            std::pair{"id", &c.id}, std::pair{"operation", &c.operation}}) {
      auto v = json::get_string(item, k);
      if (!v) return in(what, v.error());
      *field = std::move(*v);
    }
    out.changes.push_back(std::move(c));
  }
  auto most = json::get_int(root->get(), "mostRecentChangeId");
  if (!most) return in(what, most.error());
  auto hit = json::opt_bool(root->get(), "hitMaxRecords", false);
  if (!hit) return in(what, hit.error());
  auto version = json::opt_string(root->get(), "exchangeVersion");
  if (!version) return in(what, version.error());
  out.most_recent_change_id = *most;
  out.hit_max_records = *hit;
  out.exchange_version = *version;
  return out;
}

Result<GroupRead> Exchange::read(const std::string& group, std::optional<std::int64_t> if_none_match) {
  const std::string path = "orgs/" + seg(ep_.org) + "/hagroups/" + seg(group);
  const std::string what = "GET " + path;
  HttpRequest req{"GET", url(path), {}, {}};
  if (if_none_match) req.headers.emplace_back("If-None-Match", quoted(*if_none_match));
  auto r = call(std::move(req), true, HubRoute::group_read);
  if (!r) return std::unexpected(r.error());
  if (r->status == 304 && if_none_match) return GroupRead{true, {}};
  if (r->status == 403) {
    // protocol.md §3: today's Exchange refuses nodes any hagroup read.
    std::string text = hub_text(*r);
    return fail(Errc::unsupported,
                what + ": the hub does not let this identity read its group (" +
                    (text.empty() ? "403" : text) +
                    "); a hub without the coordination extension refuses nodes here (protocol.md §3)",
                403);
  }
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  const std::string etag = r->header("etag");
  if (etag.empty()) return fail(Errc::unsupported, what + ": hub has no coordination extension (no ETag)");
  auto revision = parse_etag(etag);
  if (!revision) return in(what, revision.error());
  auto doc = parse_group_document(r->body, *revision);
  if (!doc) return in(what, doc.error());
  return GroupRead{false, std::move(*doc)};
}

namespace {
// The new revision of a conditional write (protocol.md §3: the ETag of the response).
Result<std::int64_t> written_revision(const HttpResponse& r, const std::string& what) {
  const std::string etag = r.header("etag");
  if (etag.empty())
    return fail(Errc::unsupported,
                what + ": hub accepted the write but sent no ETag (no coordination extension)");
  auto revision = parse_etag(etag);
  if (!revision) return in(what, revision.error());
  return *revision;
}
}  // namespace

Result<std::int64_t> Exchange::write_entry(const std::string& group, const std::string& node,
                                           const Entry& entry, std::int64_t if_revision,
                                           WriteCondition condition) {
  const std::string path = "orgs/" + seg(ep_.org) + "/hagroups/" + seg(group) + "/agentupgrade/" + seg(node);
  const std::string what = "PUT " + path;
  std::vector<std::pair<std::string, std::string>> headers{{"If-Match", quoted(if_revision)}};
  if (condition == WriteCondition::entry) headers.emplace_back("If-Match-Scope", "entry");
  auto r = call({"PUT", url(path), std::move(headers), json::print(entry_to_json(entry).get())}, false,
                HubRoute::group_write);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {201}, what); !st) return std::unexpected(st.error());
  return written_revision(*r, what);
}

Result<std::int64_t> Exchange::delete_entry(const std::string& group, const std::string& node,
                                            std::int64_t if_revision) {
  const std::string path = "orgs/" + seg(ep_.org) + "/hagroups/" + seg(group) + "/agentupgrade/" + seg(node);
  const std::string what = "DELETE " + path;
  auto r = call({"DELETE", url(path), {{"If-Match", quoted(if_revision)}}, {}}, false, HubRoute::group_write);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {204}, what); !st) return std::unexpected(st.error());
  return written_revision(*r, what);
}

Result<std::int64_t> Exchange::put_settings(const std::string& group, const Settings& settings,
                                            std::int64_t if_revision) {
  const std::string path = "orgs/" + seg(ep_.org) + "/hagroups/" + seg(group) + "/agentupgrade";
  const std::string what = "PUT " + path;
  auto r = call(
      {"PUT", url(path), {{"If-Match", quoted(if_revision)}}, json::print(settings_to_json(settings).get())},
      false, HubRoute::group_write);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {201}, what); !st) return std::unexpected(st.error());
  return written_revision(*r, what);
}

Status Exchange::remove_member(const std::string& group, const std::string& node) {
  const std::string path = "orgs/" + seg(ep_.org) + "/hagroups/" + seg(group) + "/nodes/" + seg(node);
  auto r = call({"DELETE", url(path), {}, {}}, false, HubRoute::group_member);
  if (!r) return std::unexpected(r.error());
  return check_status(*r, {204}, "DELETE " + path);
}

Result<std::string> Exchange::read_raw(const std::string& group) {
  const std::string path = "orgs/" + seg(ep_.org) + "/hagroups/" + seg(group);
  const std::string what = "GET " + path;
  auto r = call({"GET", url(path), {}, {}}, true, HubRoute::group_read);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  if (auto doc = json::parse(r->body, "group document"); !doc) return in(what, doc.error());
  return std::move(r->body);
}

}  // namespace agentd
