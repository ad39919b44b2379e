// The hagroup document with its coordination extension (protocol.md §2).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "json.h"
#include "result.h"

namespace agentd {

enum class State { idle, preparing, waiting, upgrading, verifying, succeeded, failed, rolledback };

const char* to_string(State s);
std::optional<State> state_from_string(const std::string& s);

// True in the states that carry a lease (protocol.md §2: upgrading, verifying).
inline bool holds_lease(State s) {
  return s == State::upgrading || s == State::verifying;
}
// A rollout is active while anyone is in one of these (protocol.md §4.1).
inline bool is_active(State s) {
  return s == State::preparing || s == State::waiting || s == State::upgrading || s == State::verifying;
}
// An entry in one of these halts the group for its targetVersion (protocol.md §1 goal 4).
inline bool is_halting(State s) {
  return s == State::failed || s == State::rolledback;
}

// One member's entry in `agentUpgrade`, written by that member alone (protocol.md §2).
struct Entry {
  State state = State::idle;
  std::string version;
  std::string target_version;
  std::int64_t epoch = 0;
  std::int64_t lease_duration_seconds = 0;  // lease fields: only in upgrading/verifying
  std::string acquire_time;
  std::string renew_time;
  std::string waiting_since;
  std::string last_seen;
  std::string message;
  std::string write_id;

  bool operator==(const Entry&) const = default;
};

// protocol.md §4.4: a holder fenced while a step it started still runs keeps its
// entry in upgrading without a lease (leaseDurationSeconds 0, no renewTime). An
// entry in a lease state that names a duration or a renewal carries a lease.
inline bool carries_lease(const Entry& e) {
  return holds_lease(e.state) && (e.lease_duration_seconds > 0 || !e.renew_time.empty());
}

// The group's policy (protocol.md §2 `agentUpgradeSettings`, defaults §5).
struct Settings {
  std::int64_t max_concurrent = 1;
  std::optional<std::int64_t> min_available;  // absent: members - maxConcurrent, at least 1 when 2+
  bool paused = false;

  bool operator==(const Settings&) const = default;
};

struct GroupDocument {
  std::string name;
  std::vector<std::string> members;
  Settings settings;
  std::map<std::string, Entry> entries;  // keyed by member node id
  std::int64_t revision = 0;             // from the ETag (protocol.md §3)

  bool is_member(const std::string& node) const;
  const Entry* entry(const std::string& node) const;
  // minAvailable in force: the setting, else members - maxConcurrent, never below 1 in a group of 2+.
  std::int64_t min_available() const;
};

Result<Entry> parse_entry(json::View obj);
json::Ptr entry_to_json(const Entry& e);
json::Ptr settings_to_json(const Settings& s);
Result<Settings> parse_settings(json::View obj);

// Parses the body of GET /orgs/{org}/hagroups/{g} (`{"nodeGroups":[{...}]}`).
// Fails on malformed JSON, wrong types, an unknown state, or not exactly one group.
Result<GroupDocument> parse_group_document(const std::string& body, std::int64_t revision);

// ETag `"42"` (or W/"42") to 42. Missing or non-numeric: Errc::unsupported, since
// only a hub with the coordination extension sends one (protocol.md §3).
Result<std::int64_t> parse_etag(const std::string& etag);

}  // namespace agentd
