#include "status_reporter.h"

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

}  // namespace agentd
