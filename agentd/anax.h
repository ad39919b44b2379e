// anax's local API (anax-coexistence.md §2): the node's agent, its record of the
// node management policy (NMP) jobs it took, and their status. Loopback only, no
// hub traffic: beside anax, agentd learns of a job here for free.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "http.h"
#include "management_status.h"
#include "result.h"

namespace agentd {

// One job as anax records it (NodeManagementPolicyStatus, agentUpgrade type).
struct AnaxJob {
  std::string policy;  // "org/nmp", the record's key
  std::string status;  // as anax answered: a MgmtStatus wire string, or one it added since
  std::string error_message;
  std::string scheduled_time;
  std::string version;            // upgradedVersions.softwareVersion: what the job installs
  std::string manifest;           // agentUpgradeInternal.manifest: "org/id"
  bool allow_downgrade = false;   // agentUpgradeInternal.allowDowngrade
  std::string working_directory;  // the base; this job's files are in job_dir()
  // <workingDirectory>/<org>/<nmp>, where anax downloaded the release's files.
  std::string job_dir() const;
};

struct AnaxNode {
  std::string id;
  std::string org;
  std::string ha_group;      // "" when in no group
  std::string config_state;  // "configured" once registered
};

class AnaxApi {
 public:
  virtual ~AnaxApi() = default;
  // GET /status: configuration.horizon_version, the version of the running anax.
  virtual Result<std::string> version() = 0;
  // GET /node
  virtual Result<AnaxNode> node() = 0;
  // GET /nodemanagement/status: every job anax has a record of.
  virtual Result<std::vector<AnaxJob>> jobs() = 0;
  // PUT /nodemanagement/status/{org}/{nmp}; anax writes the Exchange status itself,
  // and on `successful` records its own version and removes the job's files.
  virtual Status put_status(const std::string& policy, MgmtStatus status,
                            const std::string& error_message) = 0;
};

// Over HTTP to anax's listener (HZN_AGENT_PORT, default 8510 on localhost).
std::unique_ptr<AnaxApi> make_anax_client(HttpClient& http, std::string base_url);

// Parses GET /nodemanagement/status (or nextjob): {"org/nmp": {...}, ...}.
Result<std::vector<AnaxJob>> parse_anax_jobs(const std::string& body);

}  // namespace agentd
