// Typed Exchange calls (exchange-api.md) and the coordination extension
// (protocol.md §3). Maps every HTTP status to a typed Error; retries reads on
// transient errors with full-jitter backoff. Writes of the group entry are never
// retried here: the caller re-reads and checks its writeId (protocol.md §4.6).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backoff.h"
#include "exchange_types.h"
#include "group_store.h"
#include "http.h"
#include "node_source.h"
#include "result.h"

namespace agentd {

class Metrics;  // metrics.h
enum class HubRoute;

struct ExchangeEndpoint {
  std::string exchange_url;  // HZN_EXCHANGE_URL, ends in /v1 (trailing slash optional)
  std::string css_url;       // HZN_FSS_CSSURL; empty: manifests are not available
  std::string org;           // HZN_ORG_ID
  std::string node_id;       // HZN_DEVICE_ID (the caller for node routes)
};

class Exchange final : public GroupStore, public NodeSource {
 public:
  // `metrics`, when given, counts every request (each retry too) by route and outcome.
  Exchange(HttpClient& http, ExchangeEndpoint endpoint, RetryPolicy retry, Sleeper& sleeper,
           Metrics* metrics = nullptr);

  // GET /orgs/{org}/nodes/{node}
  Result<NodeRecord> get_node() override;
  // GET /orgs/{org}/managementpolicies (map form, keyed "org/name"; 404 = none)
  Result<std::vector<ManagementPolicy>> list_management_policies() override;
  // GET {css}/api/v1/objects/{org}/agent_upgrade_manifests/{id}/data
  Result<Manifest> get_manifest(const std::string& manifest_ref) override;
  // GET {css}/api/v1/objects/{org}/agent_upgrade_manifests/{id} (metadata) and
  // .../data (exchange-api.md §5.1), for verification before use.
  Result<SignedManifest> get_signed_manifest(const std::string& manifest_ref);
  // GET {css}/api/v1/objects/{org}/{type}/{id} (metadata; exchange-api.md §5.2)
  Result<ObjectMetadata> get_object_metadata(const std::string& org, const std::string& type,
                                             const std::string& id);
  // {css}/api/v1/objects/{org}/{type}/{id}/data, for HttpClient::download.
  std::string object_data_url(const std::string& org, const std::string& type, const std::string& id) const;
  // GET /orgs/{org}/nodes/{node}/policy: the node's management properties (the
  // top-level "properties" merged with "management.properties", as anax
  // NodePolicy.GetManagementPolicy); std::nullopt when the node has no policy (404).
  Result<std::optional<Properties>> get_node_policy() override;
  // GET /orgs/IBM/AgentFileVersion -> agentSoftwareVersions (404 = none published)
  Result<std::vector<std::string>> agent_software_versions() override;
  // PUT /orgs/{org}/nodes/{node}/managementStatus/{nmp}
  Status put_management_status(const std::string& nmp_name, const ManagementStatus& status);
  // PATCH /orgs/{org}/nodes/{node} {"softwareVersions":{"horizon":v,...}}
  Status patch_software_version(const std::string& version);
  // GET /changes/maxchangeid
  Result<std::int64_t> max_change_id() override;
  // POST /orgs/{org}/changes {"changeId":since,"maxRecords":max}: also the node heartbeat
  Result<Changes> changes(std::int64_t since, int max_records) override;

  // GroupStore (protocol.md §3)
  Result<GroupRead> read(const std::string& group, std::optional<std::int64_t> if_none_match) override;
  Result<std::int64_t> write_entry(const std::string& group, const std::string& node, const Entry& entry,
                                   std::int64_t if_revision,
                                   WriteCondition condition = WriteCondition::group) override;

  // Admin calls (protocol.md §6), made with user credentials.
  Result<std::int64_t> delete_entry(const std::string& group, const std::string& node,
                                    std::int64_t if_revision);
  Result<std::int64_t> put_settings(const std::string& group, const Settings& settings,
                                    std::int64_t if_revision);
  // DELETE /orgs/{org}/hagroups/{g}/nodes/{node}: removes a member (the hub drops its entry).
  Status remove_member(const std::string& group, const std::string& node);
  // GET /orgs/{org}/hagroups/{g}, the body as the hub sent it (for display; no ETag needed).
  Result<std::string> read_raw(const std::string& group);

 private:
  Result<HttpResponse> call(HttpRequest req, bool retry, HubRoute route);
  std::string url(const std::string& path) const;

  HttpClient& http_;
  ExchangeEndpoint ep_;
  RetryPolicy retry_;
  Sleeper& sleeper_;
  Metrics* metrics_;
  std::mt19937_64 rng_;  // backoff jitter
};

// Maps a hub response to Ok or a typed Error (401, 403, 404, 409/412, 428, 5xx...),
// quoting the hub's {"code","msg"} when it sent one.
Status check_status(const HttpResponse& r, std::initializer_list<long> ok, const std::string& what);

}  // namespace agentd
