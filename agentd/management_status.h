// The node management status of an upgrade job (exchange-api.md §4.3), in the
// order a job goes through them, with its wire strings in this one place: the
// daemon, the status reporters, the anax client and plan_from_anax all use it.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace agentd {

enum class MgmtStatus {
  waiting,
  download_started,
  ha_node_waiting,
  downloaded,
  initiated,
  successful,
  failed,
  rollback_started,
  rollback_successful,
  rollback_failed,
  precheck_failed,
  download_failed,
  no_action_required,
};

namespace detail {
inline constexpr std::array<const char*, 13> kMgmtStatusNames = {
    "waiting",         "download started", "ha node waiting",   "downloaded",          "initiated",
    "successful",      "failed",           "rollback started",  "rollback successful", "rollback failed",
    "precheck failed", "download failed",  "no action required"};
}  // namespace detail

inline const char* to_string(MgmtStatus s) {
  return detail::kMgmtStatusNames[static_cast<std::size_t>(s)];
}

inline std::optional<MgmtStatus> mgmt_status_from_string(std::string_view s) {
  for (std::size_t i = 0; i < detail::kMgmtStatusNames.size(); ++i)
    if (s == detail::kMgmtStatusNames[i]) return static_cast<MgmtStatus>(i);
  return std::nullopt;
}

// The statuses that end a job: they carry its endTime.
inline bool ends_job(MgmtStatus s) {
  return s == MgmtStatus::successful || s == MgmtStatus::failed || s == MgmtStatus::rollback_successful ||
         s == MgmtStatus::rollback_failed;
}

}  // namespace agentd
