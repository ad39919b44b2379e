// Where the node management status of an upgrade goes (exchange-api.md §4.3):
// the Exchange's managementStatus route today; beside anax, anax's local API
// (anax-coexistence.md §3.2), which writes the Exchange itself.
#pragma once

#include <map>
#include <set>
#include <string>

#include "exchange_types.h"
#include "management_status.h"
#include "result.h"

namespace agentd {

class Exchange;
class AnaxApi;

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

// Beside anax (anax-coexistence.md §3.2): the job's own transitions go through
// anax's local API, which writes the Exchange status itself and on `successful`
// records its new version; the download statuses are anax's and are not sent.
// `successful` is sent only once the new anax runs (it records the version of the
// binary that answers). anax answers 500 when its Exchange write failed after it
// changed its own record, and takes the same status again as a no-op: the next
// attempt first puts back the status it last accepted.
class AnaxStatusReporter final : public StatusReporter {
 public:
  explicit AnaxStatusReporter(AnaxApi& anax) : anax_(anax) {}
  Status report(const std::string& policy, const ManagementStatus& status) override;

 private:
  AnaxApi& anax_;
  std::map<std::string, MgmtStatus> accepted_;  // policy -> last status anax took
  std::set<std::string> unsure_;                // policies whose last put was answered 500
};

}  // namespace agentd
