#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- the agbot's HA-upgrade lock (exchange-api.md §7) ----------------------------------------

namespace {

// anax's IsActiveStatus (exchange-api.md §4.3): a job in one of these holds the lock.
bool active_status(const std::string& status) {
  return status == "download started" || status == "downloaded" || status == "initiated" ||
         status == "rollback started" || status == "ha node waiting";
}

// The agbot's writeResponse of a plain message: a JSON string (AX agreementbot/api.go).
Reply json_string(int status, const std::string& text) {
  Reply r;
  r.status = status;
  r.body = json::print(json::Ptr(cJSON_CreateString(text.c_str())).get());
  return r;
}

// {"code":"<status>","msg":...}: the agbot's code is the status as a string (§7.1).
Reply agbot_reply(int status, const std::string& msg) {
  return api(status, std::to_string(status), msg);
}

}  // namespace

Reply Hub::post_agbot_lock(const std::string& org, const std::string& group, const std::string& node,
                           const std::string& nmp, const std::optional<Identity>& who) {
  // The agbot checks the caller's credentials by reading the node with them: only a node's pass.
  if (!who || !who->is_node())
    return json_string(401, "Failed to authenticate the node with the Exchange. Error: invalid credentials");
  if (who->full() != org + "/" + node)
    return agbot_reply(400, "Error node authentication credentials do not match requesting node.");
  std::string in = state_.orgs[org].group_of(node);
  if (in != group)
    return agbot_reply(400,
                       "Error node ha group " + in + " does not match group name in request " + group + ".");
  const std::string key = org + "/" + group;
  const std::string who_msg = "Node " + org + "/" + node;
  auto it = state_.agbot_locks.find(key);
  if (it == state_.agbot_locks.end()) {
    AgbotLock lock{node, nmp, now_};
    state_.agbot_locks[key] = lock;
    dirty_ = true;
    agbot_log("grant", key, lock, "");
    Reply r = agbot_reply(201, who_msg + " can start executing nmp " + nmp + ".");
    r.write = true;
    return r;
  }
  if (it->second.node == node && it->second.nmp == nmp)
    return agbot_reply(201, who_msg + " can start executing nmp " + nmp + ".");
  return agbot_reply(409, who_msg + " can not start executing nmp " + nmp + ".");
}

// GET /ha/upgradingnode[/{org}/{group}] lists the lock rows, DELETE
// /ha/upgradingnode/{org}/{group} frees one (anax #3547): root, or an org admin for its org.
Reply Hub::upgrading_node(const Call& call, const std::vector<std::string>& segs,
                          const std::optional<Identity>& who) {
  if (!who) return unauthorized();
  if (segs.size() != 2 && segs.size() != 4) return unrecognized();
  std::string only = segs.size() == 4 ? segs[2] + "/" + segs[3] : "";
  if (segs.size() == 4 && !is_admin_of(*who, segs[2]))
    return denied(*who, "WRITE_ALL_NODES", "hagroup=" + only);
  if (!who->is_root() && !who->admin) return denied(*who, "READ_ALL_NODES", "hagroup=*");
  if (call.method == "DELETE" && segs.size() == 4) {
    if (state_.agbot_locks.count(only)) release_agbot_lock(only, "admin " + who->full());
    Reply r;
    r.write = true;
    return r;
  }
  if (call.method != "GET") return unrecognized();
  auto list = json::array();
  for (const auto& [key, lock] : state_.agbot_locks) {
    std::string org = key.substr(0, key.find('/'));
    if ((!only.empty() && key != only) || !is_admin_of(*who, org)) continue;
    auto row = json::object();
    json::set(row.get(), "groupName", key.substr(key.find('/') + 1));
    json::set(row.get(), "orgId", org);
    json::set(row.get(), "nodeId", lock.node);
    json::set(row.get(), "nmpName", lock.nmp);
    json::append(list.get(), std::move(row));
  }
  return json_reply(200, list.get());
}

void Hub::agbot_log(const char* op, const std::string& key, const AgbotLock& lock,
                    const std::string& reason) {
  auto line = json::object();
  json::set(line.get(), "seq", ++state_.agbot_log_seq);
  json::set(line.get(), "tUs", now_us_);
  json::set(line.get(), "op", op);
  json::set(line.get(), "org", key.substr(0, key.find('/')));
  json::set(line.get(), "group", key.substr(key.find('/') + 1));
  json::set(line.get(), "node", lock.node);
  json::set(line.get(), "nmp", lock.nmp);
  json::set(line.get(), "reason", reason);
  pending_agbot_log_.push_back(json::print(line.get()));
  dirty_ = true;  // the log's sequence is part of the state
}

void Hub::release_agbot_lock(const std::string& key, const std::string& reason) {
  auto it = state_.agbot_locks.find(key);
  if (it == state_.agbot_locks.end()) return;
  agbot_log("release", key, it->second, reason);
  state_.agbot_locks.erase(it);
  dirty_ = true;
}

void Hub::monitor_agbot_locks() {
  std::lock_guard lock(mu_);
  begin_locked();
  std::vector<std::pair<std::string, std::string>> released;  // key, reason
  for (const auto& [key, row] : state_.agbot_locks) {
    auto o = state_.orgs.find(key.substr(0, key.find('/')));
    if (o == state_.orgs.end()) continue;
    auto n = o->second.nodes.find(row.node);
    if (n == o->second.nodes.end()) continue;  // GET node fails: the row is skipped (§7.3)
    if (o->second.group_of(row.node) != key.substr(key.find('/') + 1)) {
      released.emplace_back(key, "node left the group");
      continue;
    }
    auto st = n->second.mgmt_status.find(row.nmp);
    if (st == n->second.mgmt_status.end()) continue;  // no status: GET fails, skipped
    auto row_status = raw_json(st->second);
    std::string status = json::opt_string(row_status.get(), "status").value_or("");
    if (active_status(status)) continue;
    // The release comes half an interval to an interval after the status changed
    // (the real agbot: 0 to 60 s), so a test can see the lag, never an instant release.
    Wall written;
    std::string updated = json::opt_string(row_status.get(), "lastUpdated").value_or("");
    if (parse_time(updated, &written) &&
        now_us_ - std::chrono::duration_cast<std::chrono::microseconds>(written.time_since_epoch()).count() <
            std::chrono::duration_cast<std::chrono::microseconds>(options_.agbot_monitor_interval).count() /
                2)
      continue;
    released.emplace_back(key, "status " + status);
  }
  for (const auto& [key, reason] : released) release_agbot_lock(key, reason);
  commit_locked(nullptr);
}

void Hub::run_agbot_monitor() {
  std::unique_lock lock(monitor_mu_);
  // Every half interval: with the minimum age above, a lock goes 0.5 to 1 interval
  // after its holder's status stopped being active.
  const auto tick = std::max(options_.agbot_monitor_interval / 2, std::chrono::milliseconds(1));
  while (!monitor_cv_.wait_for(lock, tick, [this] { return stopping_; })) {
    lock.unlock();
    monitor_agbot_locks();
    lock.lock();
  }
}

}  // namespace agentd::standin
