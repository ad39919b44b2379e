#include "hub.h"

#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- public helpers -----------------------------------------------------------------------

std::optional<Mode> mode_from_string(const std::string& s) {
  if (s == "full") return Mode::full;
  if (s == "no-etag") return Mode::no_etag;
  if (s == "group-conditions") return Mode::group_conditions;
  if (s == "no-coordination") return Mode::no_coordination;
  return std::nullopt;
}

std::string Call::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string basic_user(const std::string& authorization) {
  auto c = basic_credentials(authorization);
  return c ? c->first : std::string();
}

// ---- lifecycle ----------------------------------------------------------------------------

Result<std::unique_ptr<Hub>> Hub::open(HubOptions options) {
  if (options.state_path.empty()) return fail(Errc::config, "--state is required");
  ChangeFile changes;
  auto state = load_state(options.state_path, &changes);
  if (!state) return std::unexpected(state.error());
  // A fresh sequence reads 1 before its first row (PostgreSQL last_value), and the first
  // row must then be 2, or a client that polled the empty hub would skip it.
  if (state->change_counter == 0) state->change_counter = 1;
  std::unique_ptr<Hub> hub(new Hub(std::move(options), std::move(*state), std::move(changes)));
  if (hub->options_.agbot_monitor_interval.count() > 0)
    hub->monitor_ = std::thread([h = hub.get()] { h->run_agbot_monitor(); });
  return hub;
}

Hub::Hub(HubOptions options, HubState state, ChangeFile changes)
    : options_(std::move(options)), state_(std::move(state)), changes_(std::move(changes)) {}

Hub::~Hub() {
  {
    std::lock_guard lock(monitor_mu_);
    stopping_ = true;
  }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  (void)flush();
}

Status Hub::flush() {
  std::lock_guard lock(mu_);
  if (!dirty_ && !heartbeat_dirty_) return {};
  dirty_ = heartbeat_dirty_ = false;
  return save_state(options_.state_path, state_, &changes_);
}

std::optional<Identity> Hub::authenticate(const std::string& authorization) {
  std::lock_guard lock(mu_);
  return authenticate_locked(authorization);
}

std::optional<Identity> Hub::authenticate_locked(const std::string& authorization) const {
  auto cred = basic_credentials(authorization);
  if (!cred) return std::nullopt;
  auto user = split_user(cred->first);
  if (!user) return std::nullopt;
  const auto& [org, id] = *user;
  if (org == "root" && id == "root") {
    if (cred->second != options_.root_password) return std::nullopt;
    return Identity{Identity::Kind::root, org, id, true};
  }
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return std::nullopt;
  std::string hash = sha256_hex(cred->second);
  if (auto u = o->second.users.find(id); u != o->second.users.end()) {
    if (u->second.password_hash == hash) return Identity{Identity::Kind::user, org, id, u->second.admin};
    return std::nullopt;
  }
  if (auto n = o->second.nodes.find(id); n != o->second.nodes.end() && n->second.token_hash == hash)
    return Identity{Identity::Kind::node, org, id, false};
  return std::nullopt;
}

bool Hub::is_admin_of(const Identity& who, const std::string& org) const {
  return who.is_root() || (who.is_user() && who.admin && who.org == org);
}

std::optional<Reply> Hub::node_access(const std::string& org, const std::string& node, const Identity& who,
                                      bool write, NodeRef* found) {
  const std::string access = write ? "WRITE" : "READ";
  const std::string target = "node=" + org + "/" + node;
  *found = NodeRef{};
  if (!who.is_root() && who.org != org) return denied(who, access + "_OTHER_ORGS", target);
  if (who.is_node() && who.id != node) return denied(who, access + "_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return std::nullopt;
  found->org = &o->second;
  auto n = o->second.nodes.find(node);
  if (n == o->second.nodes.end()) return std::nullopt;
  if (who.is_user() && !is_admin_of(who, org) && n->second.owner != who.full())
    return denied(who, access + "_ALL_NODES", target);
  found->node = &n->second;
  return std::nullopt;
}

Reply Hub::handle(const Call& call) {
  std::lock_guard lock(mu_);
  begin_locked();
  auto segs = split_path(call.path);
  std::optional<Identity> who;
  bool version_route = segs.size() == 3 && segs[0] == "v1" && segs[1] == "admin" && segs[2] == "version";
  if (!version_route) who = authenticate_locked(call.header("authorization"));
  Reply r = route(call, segs, who);
  commit_locked(&r);
  return r;
}

void Hub::begin_locked() {
  auto wall = std::chrono::system_clock::now();
  now_ = format_time(wall);
  now_us_ = std::chrono::duration_cast<std::chrono::microseconds>(wall.time_since_epoch()).count();
  pending_log_.clear();
  pending_agbot_log_.clear();
}

void Hub::commit_locked(Reply* r) {
  if (dirty_) {
    dirty_ = heartbeat_dirty_ = false;
    if (auto st = save_state(options_.state_path, state_, &changes_); !st) {
      std::fprintf(stderr, "exchange-standin: %s\n", st.error().describe().c_str());
      if (r) *r = api(500, "internal_error", "cannot save state: " + st.error().message);
    }
  }
  auto append = [](const std::string& path, std::vector<std::string>& lines) {
    if (!path.empty())
      for (const auto& line : lines)
        if (auto st = append_line(path, line); !st)
          std::fprintf(stderr, "exchange-standin: %s: %s\n", path.c_str(), st.error().describe().c_str());
    lines.clear();
  };
  append(options_.log_path, pending_log_);
  append(options_.agbot_log_path, pending_agbot_log_);
}

// ---- routing ------------------------------------------------------------------------------

Reply Hub::route(const Call& call, const std::vector<std::string>& segs, const std::optional<Identity>& who) {
  const std::string& m = call.method;
  if (!segs.empty() && segs[0] == "v1") {
    if (segs.size() == 3 && segs[1] == "admin" && segs[2] == "version" && m == "GET") {
      Reply r;
      r.body = options_.exchange_version + "\n";
      r.content_type = "text/plain";
      return r;
    }
    if (!who) return unauthorized();
    if (segs.size() == 3 && segs[1] == "changes" && segs[2] == "maxchangeid" && m == "GET")
      return max_change_id();
    if (segs.size() >= 3 && segs[1] == "orgs")
      return route_org(call, std::vector<std::string>(segs.begin() + 2, segs.end()), *who);
    return unrecognized();
  }
  // The agbot's secure API and its admin routes (exchange-api.md §7), not under /v1.
  if (segs.size() == 7 && segs[0] == "org" && segs[2] == "hagroup" && segs[4] == "nodemanagement") {
    if (m == "POST") return post_agbot_lock(segs[1], segs[3], segs[5], segs[6], who);
    return unrecognized();
  }
  if (segs.size() >= 2 && segs[0] == "ha" && segs[1] == "upgradingnode")
    return upgrading_node(call, segs, who);
  if (segs.size() >= 4 && segs[0] == "css" && segs[1] == "api" && segs[2] == "v1" && segs[3] == "objects") {
    if (!who) return unauthorized();
    return route_css(call, std::vector<std::string>(segs.begin() + 4, segs.end()), *who);
  }
  if (!who) return unauthorized();
  return unrecognized();
}

// `s` = path after /v1/orgs: {org, ...}
Reply Hub::route_org(const Call& call, const std::vector<std::string>& s, const Identity& who) {
  const std::string& m = call.method;
  const std::string& org = s[0];
  const std::size_t n = s.size();
  auto at = [&](std::size_t i, const char* word) { return n > i && s[i] == word; };

  if (n == 1) {
    if (m == "GET") return get_org(org, who);
    if (m == "POST") return post_org(call, org, who);
    return unrecognized();
  }
  if (n == 3 && at(1, "users") && m == "POST") return post_user(call, org, s[2], who);
  if (at(1, "nodes")) {
    if (n == 2 && m == "GET") return get_nodes(org, who);
    if (n == 3) {
      if (m == "GET") return get_node(call, org, s[2], who);
      if (m == "PUT") return put_node(call, org, s[2], who);
      if (m == "PATCH") return patch_node(call, org, s[2], who);
      if (m == "DELETE") return delete_node(org, s[2], who);
    }
    if (n == 4 && at(3, "heartbeat") && m == "POST") return post_heartbeat(org, s[2], who);
    if (n == 4 && at(3, "policy")) {
      if (m == "GET") return get_node_policy(org, s[2], who);
      if (m == "PUT") return put_node_policy(call, org, s[2], who);
      if (m == "DELETE") return delete_node_policy(org, s[2], who);
    }
    if (n == 4 && at(3, "managementStatus") && m == "GET") return get_status(org, s[2], "", who);
    if (n == 5 && at(3, "managementStatus")) {
      if (m == "GET") return get_status(org, s[2], s[4], who);
      if (m == "PUT") return put_status(call, org, s[2], s[4], who);
      if (m == "DELETE") return delete_status(org, s[2], s[4], who);
    }
    return unrecognized();
  }
  if (at(1, "hagroups")) {
    if (n == 2 && m == "GET") return get_groups(org, who);
    if (n == 3) {
      if (m == "GET") return get_group(call, org, s[2], who);
      if (m == "POST") return post_group(call, org, s[2], who);
      if (m == "PUT") return put_group(call, org, s[2], who);
      if (m == "DELETE") return delete_group(org, s[2], who);
    }
    if (n == 5 && at(3, "nodes")) {
      if (m == "POST") return post_member(call, org, s[2], s[4], who);
      if (m == "DELETE") return delete_member(org, s[2], s[4], who);
    }
    // protocol.md §3; absent from today's Exchange.
    if (coordination() && at(3, "agentupgrade")) {
      if (n == 4 && m == "PUT") return put_settings(call, org, s[2], who);
      if (n == 5 && m == "PUT") return put_entry(call, org, s[2], s[4], who);
      if (n == 5 && m == "DELETE") return delete_entry(call, org, s[2], s[4], who);
    }
    return unrecognized();
  }
  if (at(1, "managementpolicies")) {
    if (n == 2 && m == "GET") return get_policies(org, "", who);
    if (n == 3) {
      if (m == "GET") return get_policies(org, s[2], who);
      if (m == "POST" || m == "PUT") return write_policy(call, org, s[2], who);
      if (m == "DELETE") return delete_policy(org, s[2], who);
    }
    return unrecognized();
  }
  if (n == 2 && at(1, "AgentFileVersion") && (m == "GET" || m == "PUT" || m == "DELETE"))
    return agent_file_version(call, org, who);
  if (n == 2 && at(1, "changes") && m == "POST") return post_changes(call, org, who);
  return unrecognized();
}

// ---- shared steps -------------------------------------------------------------------------

void Hub::add_change(const std::string& org, const std::string& resource, const std::string& id,
                     const std::string& operation, const std::string& category, bool is_public) {
  ChangeRow row;
  row.change_id = ++state_.change_counter;
  row.org = org;
  row.resource = resource;
  row.id = id;
  row.operation = operation;
  row.category = category;
  row.is_public = is_public;
  row.last_updated = now_;
  row.t_us = now_us_;
  state_.changes.push_back(std::move(row));
  while (state_.changes.size() > kMaxChangeRows) state_.changes.pop_front();
  dirty_ = true;
}

void Hub::group_changed(const std::string& org, const std::string& name, Group* g, const Identity& actor,
                        const char* op, const std::string& node) {
  std::int64_t revision = ++state_.revision_counter;
  dirty_ = true;
  if (g) {
    g->revision = revision;
    // protocol.md §3: membership changes drop entries of removed members.
    for (auto it = g->entries.begin(); it != g->entries.end();)
      it = g->has_member(it->first) ? std::next(it) : g->entries.erase(it);
    // The entries this change touched (If-Match-Scope: entry); settings touch none.
    const std::string what = op;
    if (what == "write_entry" || what == "delete_entry" || (what == "members" && !node.empty())) {
      g->entry_revisions[node] = revision;
    } else if (what == "members" || what == "group_create") {
      for (const auto& m : g->members) g->entry_revisions[m] = revision;
    }
    for (auto it = g->entry_revisions.begin(); it != g->entry_revisions.end();)
      it = g->has_member(it->first) ? std::next(it) : g->entry_revisions.erase(it);
    // protocol.md §3 change notices: one row per member, category node.
    if (coordination())
      for (const auto& member : g->members) add_change(org, "agentupgrade", member, "modified", "node");
  }
  // Write log (tests/check): the whole post-write coordination state of the group.
  auto line = json::object();
  json::set(line.get(), "seq", ++state_.log_seq);
  json::set(line.get(), "tUs", now_us_);
  json::set(line.get(), "org", org);
  json::set(line.get(), "group", name);
  json::set(line.get(), "revision", revision);
  json::set(line.get(), "op", op);
  json::set(line.get(), "actor", actor.full());
  json::set(line.get(), "node", node);
  json::set(line.get(), "members", string_array(g ? g->members : std::vector<std::string>{}));
  if (g && !g->settings.empty())
    json::set(line.get(), "agentUpgradeSettings", raw_json(g->settings));
  else
    cJSON_AddNullToObject(line.get(), "agentUpgradeSettings");
  auto entries = json::object();
  if (g)
    for (const auto& [id, text] : g->entries) json::set(entries.get(), id.c_str(), raw_json(text));
  json::set(line.get(), "agentUpgrade", std::move(entries));
  pending_log_.push_back(json::print(line.get()));
}

void Hub::move_out(const std::string& org, const std::vector<std::string>& nodes, const std::string& keep,
                   const Identity& actor) {
  Org& o = state_.orgs[org];
  for (auto& [name, g] : o.groups) {
    if (name == keep) continue;
    std::vector<std::string> moved;
    for (const auto& id : nodes)
      if (g.has_member(id)) moved.push_back(id);
    if (moved.empty()) continue;
    for (const auto& id : moved) {
      g.remove_member(id);
      add_change(org, "node", id, "modified", "node");
    }
    g.last_updated = now_;
    add_change(org, "ha_group", name, "modified", "ha_group");
    group_changed(org, name, &g, actor, "members", moved.size() == 1 ? moved[0] : std::string());
  }
}

// ---- orgs and users -----------------------------------------------------------------------

Reply Hub::get_org(const std::string& org, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "org=" + org);
  auto it = state_.orgs.find(org);
  if (it == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto o = json::object();
  json::set(o.get(), "orgType", "");
  json::set(o.get(), "label", it->second.label);
  json::set(o.get(), "description", it->second.description);
  json::set(o.get(), "lastUpdated", it->second.last_updated);
  cJSON_AddNullToObject(o.get(), "tags");
  auto limits = json::object();
  json::set(limits.get(), "maxNodes", 0);
  json::set(o.get(), "limits", std::move(limits));
  json::set(o.get(), "heartbeatIntervals",
            raw_json(R"({"minInterval":0,"maxInterval":0,"intervalAdjustment":0})"));
  auto orgs = json::object();
  json::set(orgs.get(), org.c_str(), std::move(o));
  return map_reply("orgs", std::move(orgs));
}

Reply Hub::post_org(const Call& call, const std::string& org, const Identity& who) {
  if (!who.is_root()) return denied(who, "WRITE_OTHER_ORGS", "org=" + org);
  auto body = parse_body(call, true);
  if (!body) return bad_input(body.error().message);
  auto label = json::opt_string(body->get(), "label");
  auto description = json::opt_string(body->get(), "description");
  if (!label) return bad_input(label.error().message);
  if (!description) return bad_input(description.error().message);
  if (state_.orgs.count(org)) return conflict("org '" + org + "' already exists");
  Org& o = state_.orgs[org];
  o.label = *label;
  o.description = *description;
  o.last_updated = now_;
  add_change(org, "org", org, "created", "org");
  return written(201, "org '" + org + "' created");
}

Reply Hub::post_user(const Call& call, const std::string& org, const std::string& user, const Identity& who) {
  if (!is_admin_of(who, org)) return denied(who, "WRITE_MY_USERS", "user=" + org + "/" + user);
  auto it = state_.orgs.find(org);
  if (it == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto password = json::opt_string(body->get(), "password");
  auto admin = json::opt_bool(body->get(), "admin", false);
  auto email = json::opt_string(body->get(), "email");
  if (!password) return bad_input(password.error().message);
  if (!admin) return bad_input(admin.error().message);
  if (!email) return bad_input(email.error().message);
  if (password->empty()) return bad_input("password must be specified");
  if (it->second.users.count(user) || it->second.nodes.count(user))
    return conflict("user '" + org + "/" + user + "' already exists");
  User u;
  u.password_hash = sha256_hex(*password);
  u.admin = *admin;
  u.email = *email;
  u.last_updated = now_;
  it->second.users[user] = u;
  dirty_ = true;
  return written(201, "user '" + org + "/" + user + "' created");
}

}  // namespace agentd::standin
