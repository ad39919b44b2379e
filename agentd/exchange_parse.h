// Pure parsers of the Exchange's and the CSS's JSON answers (exchange-api.md):
// bytes in, wire types (exchange_types.h) or an Errc::parse error out, no I/O.
// The client (exchange.h, object_service.h) puts the request in front of an
// error; the fuzzers call these directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "exchange_types.h"
#include "result.h"

namespace agentd {

// GET /orgs/{org}/nodes/{node}: the one node, keyed "org/node" (exchange-api.md §3.1).
Result<NodeRecord> parse_node(std::string_view body, const std::string& org, const std::string& node_id);

// GET /orgs/{org}/managementpolicies: the map form, keyed "org/name"; sorted by id.
Result<std::vector<ManagementPolicy>> parse_management_policies(std::string_view body);

// An upgrade manifest (exchange-api.md §5.1), with agentd's sha256/sizes extension.
Result<Manifest> parse_manifest(std::string_view body);

// CSS object metadata (exchange-api.md §5.2) of object `id` of type `type`:
// another object's metadata, or an object without data, is an error.
Result<ObjectMetadata> parse_object_metadata(std::string_view body, const std::string& type,
                                             const std::string& id);

// GET /orgs/{org}/nodes/{node}/policy: the top-level "properties" merged with
// "management.properties", which win on the same name (anax
// NodePolicy.GetManagementPolicy).
Result<Properties> parse_node_policy(std::string_view body);

// GET /orgs/IBM/AgentFileVersion -> agentSoftwareVersions.
Result<std::vector<std::string>> parse_agent_software_versions(std::string_view body);

// GET /changes/maxchangeid -> maxChangeId.
Result<std::int64_t> parse_max_change_id(std::string_view body);

// POST /orgs/{org}/changes.
Result<Changes> parse_changes(std::string_view body);

// What of an error answer goes into an Error: the hub's {"code","msg"}
// (exchange-api.md §1.3), or a short excerpt of another body; "" for none.
std::string hub_error_text(std::string_view body);

// exchange-api.md §5.1: "org/id", or a bare id in the node's org -> {org, id}.
Result<std::pair<std::string, std::string>> manifest_location(const std::string& manifest_ref,
                                                              const std::string& node_org);

}  // namespace agentd
