#include "status_reporter.h"

#include "anax.h"
#include "exchange.h"

namespace agentd {

Status ExchangeStatusReporter::report(const std::string& policy, const ManagementStatus& status) {
  auto slash = policy.find('/');
  std::string name = slash == std::string::npos ? policy : policy.substr(slash + 1);
  if (auto r = exchange_.put_management_status(name, status); !r) return r;
  if (mgmt_status_from_string(status.status) == MgmtStatus::successful && !status.software_version.empty())
    return exchange_.patch_software_version(status.software_version);
  return {};
}

Status AnaxStatusReporter::report(const std::string& policy, const ManagementStatus& status) {
  using enum MgmtStatus;
  const auto known = mgmt_status_from_string(status.status);
  if (!known) return {};  // not one of the job's transitions
  const MgmtStatus s = *known;
  if (s != initiated && s != successful && s != failed && s != rollback_started && s != rollback_successful &&
      s != rollback_failed && s != precheck_failed)
    return {};  // anax's own (waiting, download started, downloaded, ...)
  if (policy.find('/') == std::string::npos)
    return fail(Errc::config, "anax job '" + policy + "' has no organization");
  if (s == successful && !status.software_version.empty()) {
    auto v = anax_.version();
    if (!v) return std::unexpected(v.error());
    if (*v != status.software_version)
      return fail(Errc::http, "anax still runs " + *v + ", not " + status.software_version +
                                  ": successful waits for the new agent");
  }
  if (unsure_.contains(policy)) {
    const MgmtStatus back = accepted_.contains(policy) ? accepted_[policy] : initiated;
    if (back != s) {
      if (auto r = anax_.put_status(policy, back, ""); !r) return r;
    }
  }
  if (auto r = anax_.put_status(policy, s, status.error_message); !r) {
    if (r.error().http_status >= 500) unsure_.insert(policy);
    return r;
  }
  unsure_.erase(policy);
  accepted_[policy] = s;
  return {};
}

}  // namespace agentd
