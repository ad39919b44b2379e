// The Exchange's wire types as agentd uses them (exchange-api.md), apart from
// the client that fetches them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace agentd {

// A node policy property, typed as anax types it (property_list.go): strings,
// versions and lists keep their text (a list as "a,b,c"), numbers are doubles.
struct PropertyValue {
  enum class Type { string, number, boolean, version, list };
  Type type = Type::string;
  std::string text;
  double number = 0;
  bool boolean = false;

  static PropertyValue of_string(std::string s);
  static PropertyValue of_version(std::string v);
  static PropertyValue of_list(const std::vector<std::string>& items);
  static PropertyValue of_number(double n);
  static PropertyValue of_bool(bool b);
};

using Properties = std::map<std::string, PropertyValue>;

struct NodeRecord {
  std::string id;  // bare node id
  std::string name;
  std::string owner;
  std::string node_type;
  std::string pattern;  // "org/pattern" or ""
  std::string arch;
  std::string ha_group;  // "" when the node is in no group (null on the wire)
  std::map<std::string, std::string> software_versions;
};

struct AgentUpgradePolicy {
  std::string manifest;  // "org/id" or "id"
  bool allow_downgrade = false;
};

struct ManagementPolicy {
  std::string id;  // "org/name", the map key
  std::string label;
  std::string description;
  std::vector<std::string> constraints;
  std::vector<std::string> patterns;
  bool enabled = false;
  std::string start = "now";
  std::int64_t start_window = 0;
  AgentUpgradePolicy agent_upgrade;
  std::string last_updated;
};

struct UpgradeSection {
  std::vector<std::string> files;
  std::string version;
  // agentd's additions to the manifest (anax ignores unknown fields): each
  // file's SHA-256 (64 hex digits) and size in bytes, covered by the manifest's
  // signature. {"softwareUpgrade":{"files":[..],"version":"..",
  //  "sha256":{"<file>":"<hex>"},"sizes":{"<file>":123}}}
  std::map<std::string, std::string> sha256;
  std::map<std::string, std::uint64_t> sizes;
};

struct Manifest {
  UpgradeSection software;
  UpgradeSection certificate;
  UpgradeSection configuration;
};

// CSS object metadata (edge-sync-service common.MetaData; exchange-api.md §5.2).
struct ObjectMetadata {
  std::string object_id;       // objectID
  std::string object_type;     // objectType
  std::int64_t size = 0;       // objectSize
  std::string description;     // description
  std::string hash_algorithm;  // hashAlgorithm ("SHA256" or "")
  std::string signature;       // signature, base64 ("" when the object is unsigned)
};

// A manifest as served, with what its signature covers: the data bytes exactly
// as received, and the detached signature from the object's metadata.
struct SignedManifest {
  std::string org;  // where it lives (exchange-api.md §5.1)
  std::string id;
  std::string bytes;      // the object's data
  std::string signature;  // base64 from the metadata's "signature"; "" = unsigned
  Manifest manifest;      // bytes, parsed
};

// PUT .../managementStatus/{nmp}: the real status strings (exchange-api.md §4.3).
struct ManagementStatus {
  std::string scheduled_time;  // required by the Exchange
  std::string start_time;
  std::string end_time;
  std::string software_version;
  std::string status;  // to_string(MgmtStatus), management_status.h
  std::string error_message;
};

struct Change {
  std::string org;
  std::string resource;  // "node", "mgmtpolicy", "agentupgrade", "nodemgmtpolstatus", ...
  std::string id;
  std::string operation;
};

struct Changes {
  std::vector<Change> changes;
  std::int64_t most_recent_change_id = 0;
  bool hit_max_records = false;
  std::string exchange_version;
};

}  // namespace agentd
