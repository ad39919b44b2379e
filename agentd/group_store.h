// The store contract of protocol.md §3: read(group) and write_entry(...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "group.h"
#include "result.h"

namespace agentd {

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
  // Returns the new revision. A stale `if_revision` is Errc::conflict (HTTP 412).
  // A lost response is Errc::transport: the caller must re-read and look for
  // its writeId before retrying (protocol.md §4.6).
  virtual Result<std::int64_t> write_entry(const std::string& group, const std::string& node,
                                           const Entry& entry, std::int64_t if_revision) = 0;
};

}  // namespace agentd
