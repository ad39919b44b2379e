// What the daemon reads from the hub about its own node: the changes feed (also
// the node's heartbeat), the node record, the node management policies and what
// they name (exchange-api.md §3, §4). The Exchange is the implementation; tests
// use fakes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "exchange_types.h"
#include "result.h"

namespace agentd {

class NodeSource {
 public:
  virtual ~NodeSource() = default;
  virtual Result<std::int64_t> max_change_id() = 0;
  // Also the node heartbeat, as for the real agent (exchange-api.md §3.2).
  virtual Result<Changes> changes(std::int64_t since, int max_records) = 0;
  virtual Result<NodeRecord> get_node() = 0;
  virtual Result<std::vector<ManagementPolicy>> list_management_policies() = 0;
  // The node's management properties; std::nullopt when it has no policy.
  virtual Result<std::optional<Properties>> get_node_policy() = 0;
  virtual Result<std::vector<std::string>> agent_software_versions() = 0;
  virtual Result<Manifest> get_manifest(const std::string& manifest_ref) = 0;
};

}  // namespace agentd
