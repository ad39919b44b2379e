// Typed Exchange calls (exchange-api.md) and the coordination extension
// (protocol.md §3), on the shared request path of hub_client.h (typed errors,
// reads retried with full-jitter backoff). Writes of the group entry are never
// retried here: the caller re-reads and checks its writeId (protocol.md §4.6).
// Answers are parsed by exchange_parse.h; the object service is
// object_service.h, the admin calls of agentctl exchange_admin.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backoff.h"
#include "exchange_types.h"
#include "group_store.h"
#include "http.h"
#include "hub_client.h"
#include "node_source.h"
#include "object_service.h"
#include "result.h"

namespace agentd {

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
  // NodeSource's manifest read: objects().get_manifest.
  Result<Manifest> get_manifest(const std::string& manifest_ref) override;
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

  // The object service (manifests, the agent's files), on this client's
  // endpoint and request path.
  ObjectService& objects() { return objects_; }
  // For the clients that share this one's request path (exchange_admin.h).
  HubClient& hub() { return hub_; }
  const ExchangeEndpoint& endpoint() const { return ep_; }
  std::string url(const std::string& path) const;  // {exchange_url}/{path}

 private:
  HubClient hub_;
  ExchangeEndpoint ep_;  // URLs without trailing slashes
  ObjectService objects_;
};

}  // namespace agentd
