// The stand-in hub's state: what the Exchange keeps in PostgreSQL, kept in
// memory and in one JSON file (architecture.md "The Exchange stand-in").
// Opaque Exchange fields (registeredServices, entries, ...) are kept as compact
// JSON text so that whatever a client sent comes back unchanged.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agentd/json.h"
#include "agentd/result.h"

namespace agentd::standin {

struct User {
  std::string password_hash;  // SHA-256 hex
  bool admin = false;
  std::string email;
  std::string last_updated;
};

struct Node {
  std::string token_hash;  // SHA-256 hex; GET shows "***************" (exchange-api.md §1.2)
  std::string name;
  std::string owner;  // "org/user"
  std::string node_type = "device";
  std::string pattern;
  std::string arch;
  std::string msg_end_point;
  std::string public_key;
  std::string cluster_namespace;
  bool is_namespace_scoped = false;
  std::string registered_services = "[]";  // JSON text
  std::string user_input = "[]";           // JSON text
  std::string software_versions = "{}";    // JSON text
  std::string heartbeat_intervals = R"({"minInterval":0,"maxInterval":0,"intervalAdjustment":0})";
  std::optional<std::string> last_heartbeat;
  std::string last_updated;
  // managementStatus: NMP name (bare) -> agentUpgradePolicyStatus JSON text (exchange-api.md §4.2)
  std::map<std::string, std::string> mgmt_status;
  // GET /orgs/{org}/nodes/{node}/policy as stored (JSON text); "" when the node has none.
  std::string policy;
};

struct Group {
  std::string description;
  bool admin = false;
  std::string last_updated;
  std::vector<std::string> members;            // bare node ids, insertion order, no duplicates
  std::int64_t revision = 0;                   // protocol.md §3, from the hub-wide counter
  std::string settings;                        // agentUpgradeSettings JSON text; "" when never set
  std::map<std::string, std::string> entries;  // agentUpgrade: node id -> entry JSON text as sent
  // The revision at which each member's entry last changed (written, cleared, or
  // the member added or removed): what If-Match-Scope: entry compares.
  std::map<std::string, std::int64_t> entry_revisions;

  bool has_member(const std::string& node) const;
  void remove_member(const std::string& node);  // also drops its entry (protocol.md §3)
};

struct Org {
  std::string label;
  std::string description;
  std::string last_updated;
  std::map<std::string, User> users;
  std::map<std::string, Node> nodes;
  std::map<std::string, Group> groups;
  std::map<std::string, std::string> policies;  // NMP name -> element JSON text (exchange-api.md §4.1)

  // Name of the group `node` is in, or "" (a node is in at most one, exchange-api.md §2).
  std::string group_of(const std::string& node) const;
};

// One row of the changes table (exchange-api.md §6.3).
struct ChangeRow {
  std::int64_t change_id = 0;
  std::string org;
  std::string resource;
  std::string id;
  std::string operation;
  std::string category;
  bool is_public = false;
  std::string last_updated;
  std::int64_t t_us = 0;  // same instant as last_updated, for time-window filters
};

// A CSS object (edge-sync-service): its data (a file in the CSS data directory)
// and its metadata, each written by its own PUT, either possibly absent.
struct CssObject {
  std::int64_t size = 0;  // bytes of data; 0 when there is none
  std::string file;       // name inside the CSS data directory; "" when there is no data
  bool has_meta = false;  // metadata was PUT
  std::string description;
  std::string hash_algorithm;  // hashAlgorithm
  std::string public_key;      // publicKey
  std::string signature;       // base64
};

// The agbot's HA-upgrade lock (exchange-api.md §7.1): at most one row per org+group,
// naming the node allowed to run its NMP job.
struct AgbotLock {
  std::string node;  // bare node id
  std::string nmp;   // bare NMP name
  std::string updated;
};

struct HubState {
  std::map<std::string, Org> orgs;
  std::int64_t revision_counter = 0;     // hub-wide, so a group revision never repeats
  std::int64_t change_counter = 0;       // the changes sequence (maxchangeid)
  std::int64_t log_seq = 0;              // last write-log line number
  std::string agent_file_version;        // JSON text of GET /orgs/IBM/AgentFileVersion; "" when never PUT
  std::deque<ChangeRow> changes;         // oldest first
  std::map<std::string, CssObject> css;  // "org/type/id"
  std::map<std::string, AgbotLock> agbot_locks;  // "org/group"
  std::int64_t agbot_log_seq = 0;                // last line number of the agbot lock log
};

// Rows kept in the changes table; older ones are pruned like the Exchange's TTL does.
inline constexpr std::size_t kMaxChangeRows = 10000;

// The state file without the changes table; state_from_json still reads a table kept
// inside an older file.
json::Ptr state_to_json(const HubState& s);
Result<HubState> state_from_json(const cJSON* root);

// The changes table is kept beside the state file, in PATH.changes, one row a line, and
// a write only appends its own rows. Rewriting all 10,000 rows inside the state file took
// ~25 ms under the hub's one lock on every write, and a 100-member group adds 100 rows a
// write (protocol.md §3 change notices), so a busy group's reads timed out behind it.
struct ChangeFile {
  std::string path;
  std::int64_t last_id = 0;  // the newest row in the file
  std::size_t lines = 0;     // rows in the file, pruned ones included until the next rewrite
  bool rewrite = false;      // an append failed (perhaps part-way, on a full disk): rewrite it whole
};
std::string changes_path(const std::string& state_path);

// Missing files: an empty state. Unreadable or malformed: an error (never silently reset),
// except a last changes row cut short by a crash, which is dropped. Fills `changes`.
Result<HubState> load_state(const std::string& path, ChangeFile* changes);
// The new change rows first (appended; the file is rewritten with only the
// kept rows when it has grown to twice kMaxChangeRows), then the state: tmp + fsync +
// rename (agentd/files.h). A crash between the two leaves rows newer than the state's
// changeCounter, which load_state takes.
Status save_state(const std::string& path, const HubState& s, ChangeFile* changes);

// Parses JSON text kept in the state; malformed text (never written by the hub) gives null.
json::Ptr raw_json(const std::string& text);

std::string sha256_hex(const std::string& data);

}  // namespace agentd::standin
