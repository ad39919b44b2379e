// The group administration calls (protocol.md §6) that only agentctl makes,
// with user credentials, through the same request path as the Exchange client.
#pragma once

#include <cstdint>
#include <string>

#include "exchange.h"
#include "result.h"

namespace agentd {

class ExchangeAdmin {
 public:
  // Uses `exchange`'s request path and endpoint; `exchange` must outlive this.
  explicit ExchangeAdmin(Exchange& exchange) : exchange_(exchange) {}

  // DELETE /orgs/{org}/hagroups/{g}/agentupgrade/{node} (If-Match): the new revision.
  Result<std::int64_t> delete_entry(const std::string& group, const std::string& node,
                                    std::int64_t if_revision);
  // PUT /orgs/{org}/hagroups/{g}/agentupgrade (If-Match): the new revision.
  Result<std::int64_t> put_settings(const std::string& group, const Settings& settings,
                                    std::int64_t if_revision);
  // DELETE /orgs/{org}/hagroups/{g}/nodes/{node}: removes a member (the hub drops its entry).
  Status remove_member(const std::string& group, const std::string& node);
  // GET /orgs/{org}/hagroups/{g}, the body as the hub sent it (for display; no ETag needed).
  Result<std::string> read_raw(const std::string& group);

 private:
  std::string group_path(const std::string& group) const;

  Exchange& exchange_;
};

}  // namespace agentd
