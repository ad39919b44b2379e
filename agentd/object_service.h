// The object service (CSS, HZN_FSS_CSSURL; exchange-api.md §5): upgrade
// manifests and the agent's files, read with the node's credentials through the
// hub's shared request path.
#pragma once

#include <string>

#include "exchange_types.h"
#include "hub_client.h"
#include "result.h"

namespace agentd {

class ObjectService {
 public:
  // `css_url` empty: no object service configured, every read is Errc::config.
  // `org` is the node's, for manifest references without one.
  ObjectService(HubClient& hub, std::string css_url, std::string org);

  // GET {css}/api/v1/objects/{org}/agent_upgrade_manifests/{id}/data
  Result<Manifest> get_manifest(const std::string& manifest_ref);
  // GET {css}/api/v1/objects/{org}/agent_upgrade_manifests/{id} (metadata) and
  // .../data (exchange-api.md §5.1), for verification before use.
  Result<SignedManifest> get_signed_manifest(const std::string& manifest_ref);
  // GET {css}/api/v1/objects/{org}/{type}/{id} (metadata; exchange-api.md §5.2)
  Result<ObjectMetadata> get_object_metadata(const std::string& org, const std::string& type,
                                             const std::string& id);
  // {css}/api/v1/objects/{org}/{type}/{id}/data, for HttpClient::download.
  std::string object_data_url(const std::string& org, const std::string& type, const std::string& id) const;

 private:
  HubClient& hub_;
  std::string css_url_;  // without trailing slashes
  std::string org_;
};

}  // namespace agentd
