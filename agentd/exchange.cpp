// Typed Exchange calls (exchange-api.md) and the coordination extension (protocol.md §3).
#include "exchange.h"

#include <utility>

#include "exchange_parse.h"
#include "json.h"
#include "metrics.h"

namespace agentd {

namespace {

// "myorg/nmp1" or "nmp1" -> "nmp1": the status route takes the bare name in the node's org.
std::string bare_name(const std::string& name) {
  auto slash = name.find('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

ExchangeEndpoint without_trailing_slashes(ExchangeEndpoint ep) {
  while (!ep.exchange_url.empty() && ep.exchange_url.back() == '/') ep.exchange_url.pop_back();
  while (!ep.css_url.empty() && ep.css_url.back() == '/') ep.css_url.pop_back();
  return ep;
}

}  // namespace

Exchange::Exchange(HttpClient& http, ExchangeEndpoint endpoint, RetryPolicy retry, Sleeper& sleeper,
                   Metrics* metrics)
    : hub_(http, retry, sleeper, metrics),
      ep_(without_trailing_slashes(std::move(endpoint))),
      objects_(hub_, ep_.css_url, ep_.org) {}

std::string Exchange::url(const std::string& path) const {
  return ep_.exchange_url + "/" + path;
}

Result<NodeRecord> Exchange::get_node() {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/nodes/" + url_segment(ep_.node_id);
  const std::string what = "GET " + path;
  auto r = hub_.call({"GET", url(path), {}, {}}, true, HubRoute::node);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto rec = parse_node(r->body, ep_.org, ep_.node_id);
  if (!rec) return error_in(what, rec.error());
  return rec;
}

Result<std::vector<ManagementPolicy>> Exchange::list_management_policies() {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/managementpolicies";
  const std::string what = "GET " + path;
  auto r = hub_.call({"GET", url(path), {}, {}}, true, HubRoute::management_policies);
  if (!r) return std::unexpected(r.error());
  if (r->status == 404) return std::vector<ManagementPolicy>{};  // exchange-api.md §4.1: none in the org
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto policies = parse_management_policies(r->body);
  if (!policies) return error_in(what, policies.error());
  return policies;
}

Result<Manifest> Exchange::get_manifest(const std::string& manifest_ref) {
  return objects_.get_manifest(manifest_ref);
}

Result<std::optional<Properties>> Exchange::get_node_policy() {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/nodes/" + url_segment(ep_.node_id) + "/policy";
  const std::string what = "GET " + path;
  auto r = hub_.call({"GET", url(path), {}, {}}, true, HubRoute::node_policy);
  if (!r) return std::unexpected(r.error());
  if (r->status == 404) return std::optional<Properties>{};  // the node has no policy
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto props = parse_node_policy(r->body);
  if (!props) return error_in(what, props.error());
  return std::optional<Properties>(std::move(*props));
}

Result<std::vector<std::string>> Exchange::agent_software_versions() {
  const std::string path = "orgs/IBM/AgentFileVersion";  // exchange-api.md §5.3: only org IBM
  const std::string what = "GET " + path;
  auto r = hub_.call({"GET", url(path), {}, {}}, true, HubRoute::agent_versions);
  if (!r) return std::unexpected(r.error());
  if (r->status == 404) return std::vector<std::string>{};  // never published
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto versions = parse_agent_software_versions(r->body);
  if (!versions) return error_in(what, versions.error());
  return versions;
}

Status Exchange::put_management_status(const std::string& nmp_name, const ManagementStatus& status) {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/nodes/" + url_segment(ep_.node_id) +
                           "/managementStatus/" + url_segment(bare_name(nmp_name));
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

  auto r = hub_.call({"PUT", url(path), {}, json::print(body.get())}, false, HubRoute::management_status);
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
  const std::string path = "orgs/" + url_segment(ep_.org) + "/nodes/" + url_segment(ep_.node_id);
  auto r = hub_.call({"PATCH", url(path), {}, json::print(body.get())}, false, HubRoute::software_version);
  if (!r) return std::unexpected(r.error());
  return check_status(*r, {201, 204}, "PATCH " + path);
}

Result<std::int64_t> Exchange::max_change_id() {
  const std::string path = "changes/maxchangeid";
  const std::string what = "GET " + path;
  auto r = hub_.call({"GET", url(path), {}, {}}, true, HubRoute::changes);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto id = parse_max_change_id(r->body);
  if (!id) return error_in(what, id.error());
  return id;
}

// Idempotent (a read that also heartbeats), so it is retried like a GET.
Result<Changes> Exchange::changes(std::int64_t since, int max_records) {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/changes";
  const std::string what = "POST " + path;
  auto req = json::object();
  json::set(req.get(), "changeId", since);
  json::set(req.get(), "maxRecords", max_records);
  auto r = hub_.call({"POST", url(path), {}, json::print(req.get())}, true, HubRoute::changes);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {201}, what); !st) return std::unexpected(st.error());
  auto out = parse_changes(r->body);
  if (!out) return error_in(what, out.error());
  return out;
}

Result<GroupRead> Exchange::read(const std::string& group, std::optional<std::int64_t> if_none_match) {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/hagroups/" + url_segment(group);
  const std::string what = "GET " + path;
  HttpRequest req{"GET", url(path), {}, {}};
  if (if_none_match) req.headers.emplace_back("If-None-Match", quoted_revision(*if_none_match));
  auto r = hub_.call(std::move(req), true, HubRoute::group_read);
  if (!r) return std::unexpected(r.error());
  if (r->status == 304 && if_none_match) return GroupRead{true, {}};
  if (r->status == 403) {
    // protocol.md §3: today's Exchange refuses nodes any hagroup read.
    std::string text = hub_error_text(r->body);
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
  if (!revision) return error_in(what, revision.error());
  auto doc = parse_group_document(r->body, *revision);
  if (!doc) return error_in(what, doc.error());
  return GroupRead{false, std::move(*doc)};
}

Result<std::int64_t> Exchange::write_entry(const std::string& group, const std::string& node,
                                           const Entry& entry, std::int64_t if_revision,
                                           WriteCondition condition) {
  const std::string path = "orgs/" + url_segment(ep_.org) + "/hagroups/" + url_segment(group) +
                           "/agentupgrade/" + url_segment(node);
  const std::string what = "PUT " + path;
  std::vector<std::pair<std::string, std::string>> headers{{"If-Match", quoted_revision(if_revision)}};
  if (condition == WriteCondition::entry) headers.emplace_back("If-Match-Scope", "entry");
  auto r = hub_.call({"PUT", url(path), std::move(headers), json::print(entry_to_json(entry).get())}, false,
                     HubRoute::group_write);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {201}, what); !st) return std::unexpected(st.error());
  return written_revision(*r, what);
}

}  // namespace agentd
