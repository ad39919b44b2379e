#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- changes feed (exchange-api.md §6) -------------------------------------------------------

Reply Hub::max_change_id() {
  auto body = json::object();
  json::set(body.get(), "maxChangeId", state_.change_counter);
  return json_reply(200, body.get());
}

Reply Hub::post_changes(const Call& call, const std::string& org, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "org=" + org);
  auto body = parse_body(call, true);
  if (!body) return bad_input(body.error().message);
  auto since = json::opt_int(body->get(), "changeId", 0);
  auto max = json::opt_int(body->get(), "maxRecords", 0);
  auto last_updated = json::opt_string(body->get(), "lastUpdated");
  auto org_list = json::opt_string_array(body->get(), "orgList");
  if (!since) return bad_input(since.error().message);
  if (!max) return bad_input(max.error().message);
  if (!last_updated) return bad_input(last_updated.error().message);
  if (!org_list) return bad_input(org_list.error().message);
  std::optional<std::int64_t> after_us;
  if (!last_updated->empty()) {
    Wall t;
    if (!parse_time(*last_updated, &t))
      return bad_input(
          "error parsing timestamp '" + *last_updated +
          "'. The proper format is uuuu-MM-dd'T'HH:mm:ss.SSS  (Ex: '2020-02-05T20:28:14.469Z[UTC]')");
    after_us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() -
               kLastUpdatedSlackUs;
  }

  // The call is also the node's heartbeat (exchange-api.md §3.2); saved lazily.
  if (who.is_node()) {
    state_.orgs[org].nodes[who.id].last_heartbeat = now_;
    heartbeat_dirty_ = true;
  }

  std::int64_t limit = std::min<std::int64_t>(*max, kMaxRecordsCap);
  std::vector<const ChangeRow*> rows;
  if (limit > 0) {
    // Contention mitigation: rows up to 2 s older than the requested one come again.
    std::optional<std::int64_t> anchor_us;
    if (*since > 0)
      for (const auto& c : state_.changes)
        if (c.change_id == *since) anchor_us = c.t_us;
    for (const auto& c : state_.changes) {
      if (*since > 0) {
        if (c.change_id < *since && !(anchor_us && c.t_us >= *anchor_us - kContentionUs)) continue;
      } else if (after_us && c.t_us < *after_us) {
        continue;
      }
      bool org_ok = c.org == org || c.is_public ||
                    std::find(org_list->begin(), org_list->end(), c.org) != org_list->end();
      if (!org_ok) continue;
      // Node filter (exchange-api.md §6.2): nodes never see ha_group rows.
      if (who.is_node() && !(c.category == "mgmtpolicy" || (c.category == "node" && c.id == who.id) ||
                             c.category == "service" || c.category == "org"))
        continue;
      rows.push_back(&c);
      if (static_cast<std::int64_t>(rows.size()) == limit) break;
    }
  }
  bool hit = limit > 0 && static_cast<std::int64_t>(rows.size()) == limit;

  // Collapse per orgId+id+resource; the operation is the last one seen.
  std::vector<std::string> order;
  std::map<std::string, json::Ptr> collapsed;
  for (const ChangeRow* c : rows) {
    std::string key = c->org + "\n" + c->id + "\n" + c->resource;
    auto& entry = collapsed[key];
    if (!entry) {
      order.push_back(key);
      entry = json::object();
      json::set(entry.get(), "orgId", c->org);
      json::set(entry.get(), "resource", c->resource);
      json::set(entry.get(), "id", c->id);
      json::set(entry.get(), "resourceChanges", json::array());
    }
    json::set(entry.get(), "operation", c->operation);
    auto rc = json::object();
    json::set(rc.get(), "changeId", c->change_id);
    json::set(rc.get(), "lastUpdated", c->last_updated);
    json::append(cJSON_GetObjectItemCaseSensitive(entry.get(), "resourceChanges"), std::move(rc));
  }
  auto changes = json::array();
  for (const auto& key : order) json::append(changes.get(), std::move(collapsed[key]));
  auto out = json::object();
  json::set(out.get(), "changes", std::move(changes));
  json::set(out.get(), "mostRecentChangeId", hit ? rows.back()->change_id : state_.change_counter);
  json::set(out.get(), "hitMaxRecords", hit);
  json::set(out.get(), "exchangeVersion", options_.exchange_version);
  return json_reply(201, out.get());
}

}  // namespace agentd::standin
