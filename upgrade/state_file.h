// The member's own persisted state (protocol.md §4.2): written with an atomic
// rename before every transition and before every write, so a crash or restart
// resumes where it stopped. The hub's entry is the truth about the lease; this
// file is the truth about what was done to this node.
#pragma once

#include <optional>
#include <string>

#include "agentd/coordinator.h"
#include "agentd/result.h"

namespace agentd {

struct PersistedState {
  std::string group;             // group the coordination state belongs to ("" = none)
  std::string policy;            // node management policy that named the target
  std::string pending_write_id;  // writeId of a write sent but not yet confirmed (§4.6)
  // A management status report not yet accepted (the hub or anax was away): sent
  // again until it is, so every job ends in a final status (anax-coexistence.md §3.2).
  std::string report_status;  // "" = nothing pending
  std::string report_policy;
  std::string report_error;
  std::string report_version;
  Local local;  // the persisted fields of Local (not the process-local ones)
};

class StateFile {
 public:
  explicit StateFile(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  // No file yet: std::nullopt. A corrupt file is an error naming the path: agentd
  // refuses to guess what was done to the node.
  Result<std::optional<PersistedState>> load() const;
  Status save(const PersistedState& s) const;

 private:
  std::string path_;
};

std::string state_to_json(const PersistedState& s);
Result<PersistedState> state_from_json(const std::string& text);

}  // namespace agentd
