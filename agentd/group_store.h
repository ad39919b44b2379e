// The store contract of protocol.md §3: read(group) and write_entry(...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "group.h"
#include "result.h"

namespace agentd {

// Which change of the group makes a write_entry conflict (protocol.md §3, amended).
// An acquisition, a renewal and every other write into a lease state decide on the
// peers' entries, so they need the group unchanged since `if_revision`; every other
// write decides on the member's own entry alone and needs only that entry unchanged
// (If-Match-Scope: entry). Heartbeats of many members then no longer cancel each
// other's writes. A hub that does not know the scope checks the whole group: safe,
// only with more 412s.
enum class WriteCondition { group, entry };

inline WriteCondition write_condition(const Entry& e) {
  return holds_lease(e.state) ? WriteCondition::group : WriteCondition::entry;
}

struct GroupRead {
  bool not_modified = false;  // 304 to If-None-Match: `document` is empty
  GroupDocument document;
};

class GroupStore {
 public:
  virtual ~GroupStore() = default;
  // With `if_none_match`, a hub that has nothing new answers not_modified.
  // A hub without the coordination extension (no ETag, or 403 to a member):
  // Errc::unsupported, never a document (protocol.md §3: no unsafe fallback).
  virtual Result<GroupRead> read(const std::string& group, std::optional<std::int64_t> if_none_match) = 0;
  // Returns the new revision. A stale `if_revision` is Errc::conflict (HTTP 412):
  // with WriteCondition::entry, stale only when `node`'s entry changed since.
  // After an entry-conditioned write the caller's copy is not the document at the
  // returned revision (peers may have written in between).
  // A lost response is Errc::transport: the caller must re-read and look for
  // its writeId before retrying (protocol.md §4.6).
  virtual Result<std::int64_t> write_entry(const std::string& group, const std::string& node,
                                           const Entry& entry, std::int64_t if_revision,
                                           WriteCondition condition) = 0;
};

}  // namespace agentd
