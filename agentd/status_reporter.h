// Where the node management status of an upgrade goes (exchange-api.md §4.3):
// the Exchange's managementStatus route today; beside anax, anax's local API
// (anax-coexistence.md §3.2), which writes the Exchange itself.
#pragma once

#include <string>

#include "exchange_types.h"
#include "result.h"

namespace agentd {

class Exchange;

class StatusReporter {
 public:
  virtual ~StatusReporter() = default;
  // `policy` is "org/name" or "name". A `successful` status also records
  // `status.software_version` as the agent version the hub knows for this node.
  virtual Status report(const std::string& policy, const ManagementStatus& status) = 0;
};

// PUT /orgs/{org}/nodes/{node}/managementStatus/{nmp}, and on `successful` the
// node's softwareVersions, as the real agent does.
class ExchangeStatusReporter final : public StatusReporter {
 public:
  explicit ExchangeStatusReporter(Exchange& exchange) : exchange_(exchange) {}
  Status report(const std::string& policy, const ManagementStatus& status) override;

 private:
  Exchange& exchange_;
};

}  // namespace agentd
