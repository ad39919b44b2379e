// The group administration calls of agentctl (exchange_admin.h).
#include "exchange_admin.h"

#include <utility>

#include "json.h"
#include "metrics.h"

namespace agentd {

std::string ExchangeAdmin::group_path(const std::string& group) const {
  return "orgs/" + url_segment(exchange_.endpoint().org) + "/hagroups/" + url_segment(group);
}

Result<std::int64_t> ExchangeAdmin::delete_entry(const std::string& group, const std::string& node,
                                                 std::int64_t if_revision) {
  const std::string path = group_path(group) + "/agentupgrade/" + url_segment(node);
  const std::string what = "DELETE " + path;
  auto r =
      exchange_.hub().call({"DELETE", exchange_.url(path), {{"If-Match", quoted_revision(if_revision)}}, {}},
                           false, HubRoute::group_write);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {204}, what); !st) return std::unexpected(st.error());
  return written_revision(*r, what);
}

Result<std::int64_t> ExchangeAdmin::put_settings(const std::string& group, const Settings& settings,
                                                 std::int64_t if_revision) {
  const std::string path = group_path(group) + "/agentupgrade";
  const std::string what = "PUT " + path;
  auto r = exchange_.hub().call({"PUT",
                                 exchange_.url(path),
                                 {{"If-Match", quoted_revision(if_revision)}},
                                 json::print(settings_to_json(settings).get())},
                                false, HubRoute::group_write);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {201}, what); !st) return std::unexpected(st.error());
  return written_revision(*r, what);
}

Status ExchangeAdmin::remove_member(const std::string& group, const std::string& node) {
  const std::string path = group_path(group) + "/nodes/" + url_segment(node);
  auto r = exchange_.hub().call({"DELETE", exchange_.url(path), {}, {}}, false, HubRoute::group_member);
  if (!r) return std::unexpected(r.error());
  return check_status(*r, {204}, "DELETE " + path);
}

Result<std::string> ExchangeAdmin::read_raw(const std::string& group) {
  const std::string path = group_path(group);
  const std::string what = "GET " + path;
  auto r = exchange_.hub().call({"GET", exchange_.url(path), {}, {}}, true, HubRoute::group_read);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  if (auto doc = json::parse(r->body, "group document"); !doc) return error_in(what, doc.error());
  return std::move(r->body);
}

}  // namespace agentd
