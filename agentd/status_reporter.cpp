#include "status_reporter.h"

#include "anax.h"
#include "exchange.h"

namespace agentd {

Status ExchangeStatusReporter::report(const std::string& policy, const ManagementStatus& status) {
  auto slash = policy.find('/');
  std::string name = slash == std::string::npos ? policy : policy.substr(slash + 1);
  if (auto r = exchange_.put_management_status(name, status); !r) return r;
  if (status.status == "successful" && !status.software_version.empty())
    return exchange_.patch_software_version(status.software_version);
  return {};
}

Status AnaxStatusReporter::report(const std::string& policy, const ManagementStatus& status) {
  namespace st = anax_status;
  const std::string& s = status.status;
  if (s != st::initiated && s != st::successful && s != st::failed && s != st::rollback_started &&
      s != st::rollback_successful && s != st::rollback_failed && s != st::precheck_failed)
    return {};  // anax's own (waiting, download started, downloaded, ...)
  if (policy.find('/') == std::string::npos)
    return fail(Errc::config, "anax job '" + policy + "' has no organization");
  if (s == st::successful && !status.software_version.empty()) {
    auto v = anax_.version();
    if (!v) return std::unexpected(v.error());
    if (*v != status.software_version)
      return fail(Errc::http, "anax still runs " + *v + ", not " + status.software_version +
                                  ": successful waits for the new agent");
  }
  if (unsure_.contains(policy)) {
    auto back = accepted_.contains(policy) ? accepted_[policy] : std::string(st::initiated);
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
