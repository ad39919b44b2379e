#include "hub.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

#include "agentd/clock.h"
#include "agentd/files.h"
#include "agentd/group.h"

namespace agentd::standin {

namespace {

constexpr const char* kTokenMask = "***************";
constexpr std::int64_t kMaxRecordsCap = 10000;            // EX reference.conf:157
constexpr std::int64_t kContentionUs = 2'000'000;         // EX reference.conf:158
constexpr std::int64_t kLastUpdatedSlackUs = 10'000'000;  // exchange-api.md §6.2

// ---- replies -------------------------------------------------------------------------

Reply json_reply(int status, const cJSON* body) {
  Reply r;
  r.status = status;
  r.body = json::print(body);
  return r;
}

// {"code","msg"} (exchange-api.md §1.3); 204 carries no body.
Reply api(int status, const std::string& code, const std::string& msg) {
  Reply r;
  r.status = status;
  if (status != 204) {
    auto o = json::object();
    json::set(o.get(), "code", code);
    json::set(o.get(), "msg", msg);
    r.body = json::print(o.get());
  }
  return r;
}

// An accepted state-changing request (what the dropAfterCommit fault counts).
Reply written(int status, const std::string& msg) {
  Reply r = api(status, "ok", msg);
  r.write = true;
  return r;
}

Reply unauthorized() {
  return api(401, "invalid-credentials", "invalid.credentials");
}
Reply unrecognized() {
  return api(404, "not-found", "unrecognized route");
}
Reply not_found(const std::string& msg) {
  return api(404, "not-found", msg);
}
Reply bad_input(const std::string& msg) {
  return api(400, "invalid-input", msg);
}
Reply conflict(const std::string& msg) {
  return api(409, "already-exists", msg);
}
Reply forbidden(const std::string& msg) {
  return api(403, "access-denied", msg);
}
// EX auth/Identity.scala accessDeniedMsg: "Access denied: '{0}' does not have authorization: {1} {2}".
Reply denied(const Identity& who, const std::string& permission, const std::string& target) {
  return forbidden("Access denied: '" + who.full() + "' does not have authorization: " + permission + " " +
                   target);
}

// The Exchange's map answers: {"<key>": {...}, "lastIndex": 0}.
Reply map_reply(const char* key, json::Ptr map, int status = 200) {
  auto o = json::object();
  json::set(o.get(), key, std::move(map));
  json::set(o.get(), "lastIndex", 0);
  return json_reply(status, o.get());
}

// What a GET that finds nothing answers: the same shape, empty, with 404.
Reply empty_map(const char* key) {
  return map_reply(key, json::object(), 404);
}

Reply empty_groups() {
  auto o = json::object();
  json::set(o.get(), "nodeGroups", json::array());
  return json_reply(404, o.get());
}

std::string quoted(std::int64_t revision) {
  return "\"" + std::to_string(revision) + "\"";
}

// ---- request helpers ------------------------------------------------------------------

// A body that is not JSON is a 400 (exchange-api.md §1.3); `empty_ok` routes take no body.
Result<json::Ptr> parse_body(const Call& call, bool empty_ok) {
  bool blank =
      std::all_of(call.body.begin(), call.body.end(), [](char c) { return std::isspace((unsigned char)c); });
  if (blank && empty_ok) return json::object();
  auto p = json::parse(call.body, "request body");
  if (!p) return std::unexpected(p.error());
  if (!cJSON_IsObject(p->get())) return fail(Errc::parse, "request body must be a JSON object");
  return p;
}

bool present(const cJSON* o, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && !cJSON_IsNull(v);
}

std::vector<std::string> dedup(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& s : in)
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

std::optional<std::string> base64_decode(const std::string& in) {
  std::string out;
  int val = 0, bits = -8;
  for (char ch : in) {
    int c;
    if (ch >= 'A' && ch <= 'Z')
      c = ch - 'A';
    else if (ch >= 'a' && ch <= 'z')
      c = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9')
      c = ch - '0' + 52;
    else if (ch == '+')
      c = 62;
    else if (ch == '/')
      c = 63;
    else if (ch == '=')
      break;
    else
      return std::nullopt;
    val = (val << 6) + c;
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

// "Basic base64(org/id:secret)" -> (org/id, secret).
std::optional<std::pair<std::string, std::string>> basic_credentials(const std::string& authorization) {
  if (authorization.size() < 6) return std::nullopt;
  std::string scheme = authorization.substr(0, 6);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (scheme != "basic ") return std::nullopt;
  std::string b64 = authorization.substr(6);
  while (!b64.empty() && b64.front() == ' ') b64.erase(0, 1);
  auto decoded = base64_decode(b64);
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(decoded->substr(0, colon), decoded->substr(colon + 1));
}

// The Exchange's ^(\S*?)/(\S*)$ on the Basic user name (EX ExchangeApiApp.scala).
std::optional<std::pair<std::string, std::string>> split_user(const std::string& user) {
  if (std::any_of(user.begin(), user.end(), [](unsigned char c) { return std::isspace(c); }))
    return std::nullopt;
  auto slash = user.find('/');
  if (slash == std::string::npos) return std::nullopt;
  return std::make_pair(user.substr(0, slash), user.substr(slash + 1));
}

// If-None-Match: a list of entity tags or "*".
bool none_match_hits(const std::string& header, std::int64_t revision) {
  std::size_t i = 0;
  while (i <= header.size()) {
    std::size_t j = header.find(',', i);
    if (j == std::string::npos) j = header.size();
    std::string tag = header.substr(i, j - i);
    while (!tag.empty() && tag.front() == ' ') tag.erase(0, 1);
    while (!tag.empty() && tag.back() == ' ') tag.pop_back();
    if (tag == "*") return true;
    auto r = parse_etag(tag);
    if (r && *r == revision) return true;
    i = j + 1;
  }
  return false;
}

json::Ptr string_array(const std::vector<std::string>& v) {
  auto a = json::array();
  for (const auto& s : v) json::append(a.get(), s);
  return a;
}

}  // namespace

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
  auto state = load_state(options.state_path);
  if (!state) return std::unexpected(state.error());
  // A fresh sequence reads 1 before its first row (PostgreSQL last_value), and the first
  // row must then be 2, or a client that polled the empty hub would skip it.
  if (state->change_counter == 0) state->change_counter = 1;
  std::unique_ptr<Hub> hub(new Hub(std::move(options), std::move(*state)));
  if (hub->options_.agbot_monitor_interval.count() > 0)
    hub->monitor_ = std::thread([h = hub.get()] { h->run_agbot_monitor(); });
  return hub;
}

Hub::Hub(HubOptions options, HubState state) : options_(std::move(options)), state_(std::move(state)) {}

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
  return save_state(options_.state_path, state_);
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
    if (auto st = save_state(options_.state_path, state_); !st) {
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

// ---- nodes (exchange-api.md §3) -----------------------------------------------------------

namespace {

json::Ptr node_json(const Org& o, const std::string& id, const Node& n) {
  auto j = json::object();
  json::set(j.get(), "token", kTokenMask);
  json::set(j.get(), "name", n.name);
  json::set(j.get(), "owner", n.owner);
  json::set(j.get(), "nodeType", n.node_type.empty() ? std::string("device") : n.node_type);
  json::set(j.get(), "pattern", n.pattern);
  json::set(j.get(), "registeredServices", raw_json(n.registered_services));
  json::set(j.get(), "userInput", raw_json(n.user_input));
  json::set(j.get(), "msgEndPoint", n.msg_end_point);
  json::set(j.get(), "softwareVersions", raw_json(n.software_versions));
  if (n.last_heartbeat)
    json::set(j.get(), "lastHeartbeat", *n.last_heartbeat);
  else
    cJSON_AddNullToObject(j.get(), "lastHeartbeat");
  json::set(j.get(), "publicKey", n.public_key);
  json::set(j.get(), "arch", n.arch);
  json::set(j.get(), "heartbeatIntervals", raw_json(n.heartbeat_intervals));
  std::string group = o.group_of(id);
  if (group.empty())
    cJSON_AddNullToObject(j.get(), "ha_group");
  else
    json::set(j.get(), "ha_group", group);
  json::set(j.get(), "lastUpdated", n.last_updated);
  json::set(j.get(), "clusterNamespace", n.cluster_namespace);
  json::set(j.get(), "isNamespaceScoped", n.is_namespace_scoped);
  return j;
}

// One attribute of a node body; `patch` applies only what is present.
Status apply_node_field(const cJSON* body, const char* key, Node* n) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(body, key);
  std::string k = key;
  auto string_field = [&](std::string* field) -> Status {
    auto s = json::opt_string(body, key);
    if (!s) return std::unexpected(s.error());
    *field = *s;
    return {};
  };
  auto json_field = [&](std::string* field, bool array, const char* fallback) -> Status {
    if (!v || cJSON_IsNull(v)) {
      *field = fallback;
      return {};
    }
    if (array ? !cJSON_IsArray(v) : !cJSON_IsObject(v))
      return fail(Errc::parse, "field '" + k + "' must be " + (array ? "an array" : "an object"));
    *field = json::print(v);
    return {};
  };
  if (k == "name") return string_field(&n->name);
  if (k == "nodeType") return string_field(&n->node_type);
  if (k == "pattern") return string_field(&n->pattern);
  if (k == "arch") return string_field(&n->arch);
  if (k == "msgEndPoint") return string_field(&n->msg_end_point);
  if (k == "publicKey") return string_field(&n->public_key);
  if (k == "clusterNamespace") return string_field(&n->cluster_namespace);
  if (k == "registeredServices") return json_field(&n->registered_services, true, "[]");
  if (k == "userInput") return json_field(&n->user_input, true, "[]");
  if (k == "softwareVersions") return json_field(&n->software_versions, false, "{}");
  if (k == "heartbeatIntervals")
    return json_field(&n->heartbeat_intervals, false,
                      R"({"minInterval":0,"maxInterval":0,"intervalAdjustment":0})");
  if (k == "isNamespaceScoped") {
    auto b = json::opt_bool(body, key, false);
    if (!b) return std::unexpected(b.error());
    n->is_namespace_scoped = *b;
    return {};
  }
  if (k == "token") {
    auto s = json::opt_string(body, key);
    if (!s) return std::unexpected(s.error());
    if (!s->empty()) n->token_hash = sha256_hex(*s);
    return {};
  }
  return {};
}

// PATCH applies the first attribute present, in this order (exchange-api.md §3.2: one per PATCH).
constexpr const char* kNodeAttributes[] = {"token",
                                           "name",
                                           "nodeType",
                                           "pattern",
                                           "registeredServices",
                                           "userInput",
                                           "msgEndPoint",
                                           "softwareVersions",
                                           "publicKey",
                                           "arch",
                                           "heartbeatIntervals",
                                           "clusterNamespace",
                                           "isNamespaceScoped"};

}  // namespace

Reply Hub::get_nodes(const std::string& org, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "node=" + org + "/#");
  if (who.is_node()) return denied(who, "READ_MY_NODES", "node=" + org + "/#");
  auto nodes = json::object();
  int count = 0;
  if (auto it = state_.orgs.find(org); it != state_.orgs.end()) {
    for (const auto& [id, n] : it->second.nodes) {
      if (!is_admin_of(who, org) && n.owner != who.full()) continue;
      json::set(nodes.get(), (org + "/" + id).c_str(), node_json(it->second, id, n));
      ++count;
    }
  }
  if (count == 0) return empty_map("nodes");
  return map_reply("nodes", std::move(nodes));
}

Reply Hub::get_node(const Call& call, const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, false, &ref)) return *d;
  const Node* n = ref.node;
  if (!n) return not_found("not found");
  if (auto a = call.params.find("attribute"); a != call.params.end()) {
    auto full = node_json(*ref.org, node, *n);
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(full.get(), a->second.c_str());
    if (!v) return bad_input("invalid input: '" + a->second + "' is not a node attribute");
    auto body = json::object();
    json::set(body.get(), "attribute", a->second);
    if (cJSON_IsString(v))
      json::set(body.get(), "value", v->valuestring);
    else if (cJSON_IsNull(v))
      json::set(body.get(), "value", "");
    else
      json::set(body.get(), "value", json::print(v));
    return json_reply(200, body.get());
  }
  auto nodes = json::object();
  json::set(nodes.get(), (org + "/" + node).c_str(), node_json(*ref.org, node, *n));
  return map_reply("nodes", std::move(nodes));
}

Reply Hub::put_node(const Call& call, const std::string& org, const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (!who.is_root() && who.org != org) return denied(who, "WRITE_OTHER_ORGS", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto existing = o->second.nodes.find(node);
  bool create = existing == o->second.nodes.end();
  if (create) {
    if (who.is_node()) return denied(who, "WRITE_ALL_NODES", target);
    if (o->second.users.count(node)) return conflict("node id '" + node + "' is already a user");
  } else {
    bool allowed = is_admin_of(who, org) || (who.is_node() && who.id == node) ||
                   (who.is_user() && existing->second.owner == who.full());
    if (!allowed) return denied(who, "WRITE_ALL_NODES", target);
  }
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  Node n = create ? Node{} : existing->second;
  if (create) {
    n.owner = who.full();
    auto token = json::opt_string(body->get(), "token");
    if (!token || token->empty()) return bad_input("invalid input: token must be specified");
  }
  for (const char* key : kNodeAttributes) {
    if (auto st = apply_node_field(body->get(), key, &n); !st) return bad_input(st.error().message);
  }
  n.last_updated = now_;
  if (!(call.params.count("noheartbeat") && call.params.at("noheartbeat") == "true")) n.last_heartbeat = now_;
  o->second.nodes[node] = n;
  add_change(org, "node", node, create ? "created" : "modified", "node");
  return written(201, "node '" + org + "/" + node + "' added or updated");
}

Reply Hub::patch_node(const Call& call, const std::string& org, const std::string& node,
                      const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  Node* n = ref.node;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  if (!n) return not_found("node '" + org + "/" + node + "' not found");
  for (const char* key : kNodeAttributes) {
    if (!present(body->get(), key)) continue;
    Node patched = *n;
    if (auto st = apply_node_field(body->get(), key, &patched); !st) return bad_input(st.error().message);
    patched.last_updated = now_;
    *n = patched;
    add_change(org, "node", node, "modified", "node");
    Reply r =
        api(201, "ok", "attribute '" + std::string(key) + "' of node '" + org + "/" + node + "' updated");
    r.write = true;
    return r;
  }
  return bad_input("invalid input: no valid node attribute specified");
}

Reply Hub::delete_node(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Org& o = *ref.org;
  std::string group = o.group_of(node);
  o.nodes.erase(node);
  add_change(org, "node", node, "deleted", "node");
  if (!group.empty()) {
    Group& g = o.groups[group];
    g.remove_member(node);
    g.last_updated = now_;
    add_change(org, "ha_group", group, "modified", "ha_group");
    group_changed(org, group, &g, who, "members", node);
  }
  return written(204, "node deleted");
}

Reply Hub::post_heartbeat(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Node& n = *ref.node;
  n.last_heartbeat = now_;
  heartbeat_dirty_ = true;
  return written(201, "node updated");
}

// ---- HA groups (exchange-api.md §2, protocol.md §2-3) ---------------------------------------

namespace {

struct GroupView {
  bool all_members;  // org admin, root, or a member node (protocol.md §3: same result from any member)
  bool show_admin_description;
};

}  // namespace

Reply Hub::get_groups(const std::string& org, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "node=" + org + "/#");
  if (who.is_node()) return denied(who, "READ_MY_NODES", "node=" + org + "/#");
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || o->second.groups.empty()) return empty_groups();
  auto list = json::array();
  bool admin = is_admin_of(who, org);
  for (const auto& [name, g] : o->second.groups) {
    auto one = json::object();
    json::set(one.get(), "name", name);
    json::set(one.get(), "description", g.admin && !admin ? std::string() : g.description);
    std::vector<std::string> visible;
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (admin || (n != o->second.nodes.end() && n->second.owner == who.full())) visible.push_back(id);
    }
    json::set(one.get(), "members", string_array(visible));
    json::set(one.get(), "admin", g.admin);
    json::set(one.get(), "lastUpdated", g.last_updated);
    if (coordination()) {
      if (!g.settings.empty()) json::set(one.get(), "agentUpgradeSettings", raw_json(g.settings));
      auto entries = json::object();
      for (const auto& id : visible)
        if (auto e = g.entries.find(id); e != g.entries.end())
          json::set(entries.get(), id.c_str(), raw_json(e->second));
      json::set(one.get(), "agentUpgrade", std::move(entries));
    }
    json::append(list.get(), std::move(one));
  }
  auto body = json::object();
  json::set(body.get(), "nodeGroups", std::move(list));
  return json_reply(200, body.get());
}

Reply Hub::get_group(const Call& call, const std::string& org, const std::string& name, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "node=" + org + "/#");
  auto o = state_.orgs.find(org);
  const Group* g = nullptr;
  if (o != state_.orgs.end())
    if (auto it = o->second.groups.find(name); it != o->second.groups.end()) g = &it->second;
  // Today's Exchange: nodes lack READ_MY_NODES (exchange-api.md §2.3); the extension lets
  // members read their own group (protocol.md §3).
  if (who.is_node() && (!coordination() || !g || !g->has_member(who.id)))
    return denied(who, "READ_MY_NODES", "node=" + org + "/#");
  if (!g) return empty_groups();

  bool admin = is_admin_of(who, org);
  std::vector<std::string> visible;
  for (const auto& id : g->members) {
    auto n = o->second.nodes.find(id);
    if (admin || who.is_node() || (n != o->second.nodes.end() && n->second.owner == who.full()))
      visible.push_back(id);
  }
  bool etag = options_.mode == Mode::full || options_.mode == Mode::group_conditions;
  Reply r;
  if (etag) {
    r.headers.emplace_back("ETag", quoted(g->revision));
    std::string inm = call.header("if-none-match");
    if (!inm.empty() && none_match_hits(inm, g->revision)) {
      r.status = 304;
      return r;
    }
  }
  auto one = json::object();
  json::set(one.get(), "name", name);
  json::set(one.get(), "description", g->admin && !admin ? std::string() : g->description);
  json::set(one.get(), "members", string_array(visible));
  json::set(one.get(), "admin", g->admin);
  json::set(one.get(), "lastUpdated", g->last_updated);
  if (coordination()) {
    if (!g->settings.empty()) json::set(one.get(), "agentUpgradeSettings", raw_json(g->settings));
    auto entries = json::object();
    for (const auto& id : visible)
      if (auto e = g->entries.find(id); e != g->entries.end())
        json::set(entries.get(), id.c_str(), raw_json(e->second));
    json::set(one.get(), "agentUpgrade", std::move(entries));
  }
  auto list = json::array();
  json::append(list.get(), std::move(one));
  auto body = json::object();
  json::set(body.get(), "nodeGroups", std::move(list));
  r.status = 200;
  r.body = json::print(body.get());
  return r;
}

Reply Hub::post_group(const Call& call, const std::string& org, const std::string& name,
                      const Identity& who) {
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_ALL_NODES", "node=" + org + "/" + name);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto body = parse_body(call, true);
  if (!body) return bad_input(body.error().message);
  auto description = json::opt_string(body->get(), "description");
  auto members = json::opt_string_array(body->get(), "members");
  if (!description) return bad_input(description.error().message);
  if (!members) return bad_input(members.error().message);
  if (o->second.groups.count(name))
    return conflict("high availability node group '" + org + "/" + name + "' already exists");
  std::vector<std::string> ids = dedup(*members);
  bool admin = is_admin_of(who, org);
  for (const auto& id : ids) {
    auto n = o->second.nodes.find(id);
    if (n == o->second.nodes.end() || (!admin && n->second.owner != who.full()))
      return denied(who, "WRITE_ALL_NODES", "");  // EX postNodeGroup: trailing space, no target
  }
  bool force = call.params.count("force") && call.params.at("force") == "true";
  for (const auto& id : ids) {
    if (!o->second.group_of(id).empty() && !force)
      return conflict("some provided nodes already exist in other high availability node groups");
  }
  if (force) move_out(org, ids, name, who);  // seed: ?force=true moves nodes instead of 409
  Group& g = o->second.groups[name];
  g.description = *description;
  g.admin = admin;
  g.last_updated = now_;
  g.members = ids;
  for (const auto& id : ids) add_change(org, "node", id, "modified", "node");
  add_change(org, "ha_group", name, "created", "ha_group");
  group_changed(org, name, &g, who, "group_create", "");
  return written(201, "high availability node group '" + org + "/" + name + "' created");
}

Reply Hub::put_group(const Call& call, const std::string& org, const std::string& name, const Identity& who) {
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_MY_NODES", "node=" + org + "/#");
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto description = json::opt_string(body->get(), "description");
  auto members = json::opt_string_array(body->get(), "members");
  if (!description) return bad_input(description.error().message);
  if (!members) return bad_input(members.error().message);
  bool has_members = present(body->get(), "members");
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name)) return not_found("not found");
  Group& g = o->second.groups[name];
  bool admin = is_admin_of(who, org);
  if (g.admin && !admin) return denied(who, "WRITE_ALL_NODES", "");
  std::vector<std::string> ids = has_members ? dedup(*members) : g.members;
  std::vector<std::string> touched = g.members;
  for (const auto& id : ids)
    if (std::find(touched.begin(), touched.end(), id) == touched.end()) touched.push_back(id);
  for (const auto& id : touched) {
    auto n = o->second.nodes.find(id);
    bool listed = std::find(ids.begin(), ids.end(), id) != ids.end();
    if ((listed && n == o->second.nodes.end()) ||
        (!admin && n != o->second.nodes.end() && n->second.owner != who.full()))
      return denied(who, "WRITE_ALL_NODES", "");
  }
  bool force = call.params.count("force") && call.params.at("force") == "true";
  for (const auto& id : ids) {
    std::string in = o->second.group_of(id);
    if (!in.empty() && in != name && !force)
      return conflict("some provided nodes already exist in other high availability node groups");
  }
  if (force) move_out(org, ids, name, who);
  if (present(body->get(), "description")) g.description = *description;
  g.members = ids;
  g.last_updated = now_;
  for (const auto& id : touched) add_change(org, "node", id, "modified", "node");
  add_change(org, "ha_group", name, "modified", "ha_group");
  group_changed(org, name, &g, who, "members", "");
  Reply r =
      api(201, "ok", "high availability node group '" + name + "' in org '" + org + "' updated successfully");
  r.write = true;
  return r;
}

Reply Hub::delete_group(const std::string& org, const std::string& name, const Identity& who) {
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_ALL_NODES", "node=" + org + "/" + name);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  Group& g = o->second.groups[name];
  bool admin = is_admin_of(who, org);
  if (g.admin && !admin) return denied(who, "WRITE_ALL_NODES", "");
  if (!admin)
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (n != o->second.nodes.end() && n->second.owner != who.full())
        return denied(who, "WRITE_ALL_NODES", "");
    }
  std::vector<std::string> members = g.members;
  o->second.groups.erase(name);
  for (const auto& id : members) add_change(org, "node", id, "modified", "node");
  add_change(org, "ha_group", name, "deleted", "ha_group");
  group_changed(org, name, nullptr, who, "group_delete", "");
  return written(204, "deleted");
}

Reply Hub::post_member(const Call& call, const std::string& org, const std::string& name,
                       const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  // A node adding itself fails in the real Exchange (exchange-api.md §2.3); here: 403.
  if (who.is_node() || (!who.is_root() && who.org != org)) return denied(who, "WRITE_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  auto n = o->second.nodes.find(node);
  if (n == o->second.nodes.end()) return not_found("node '" + org + "/" + node + "' not found");
  Group& g = o->second.groups[name];
  bool admin = is_admin_of(who, org);
  if (!admin && n->second.owner != who.full()) return denied(who, "WRITE_ALL_NODES", target);
  if (!admin) {
    bool owns_all = !g.admin;
    for (const auto& id : g.members) {
      auto m = o->second.nodes.find(id);
      if (m != o->second.nodes.end() && m->second.owner != who.full()) owns_all = false;
    }
    if (!owns_all)
      return forbidden(
          "you do not have permission to edit this high availability node group (you do not own all "
          "nodes assigned to this group)");
  }
  bool force = call.params.count("force") && call.params.at("force") == "true";
  std::string in = o->second.group_of(node);
  if (!in.empty() && (!force || in == name)) {
    if (force) {  // already where the caller wants it
      return written(201, "");
    }
    return conflict("node '" + org + "/" + node + "' exists in an another high availability node group");
  }
  if (!in.empty()) move_out(org, {node}, name, who);
  g.members.push_back(node);
  g.last_updated = now_;
  add_change(org, "node", node, "modified", "node");
  add_change(org, "ha_group", name, "modified", "ha_group");
  group_changed(org, name, &g, who, "members", node);
  return written(201, "");
}

Reply Hub::delete_member(const std::string& org, const std::string& name, const std::string& node,
                         const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (!who.is_root() && who.org != org) return denied(who, "WRITE_OTHER_ORGS", target);
  if (who.is_node() && who.id != node) return denied(who, "WRITE_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o != state_.orgs.end() && who.is_user() && !is_admin_of(who, org)) {
    auto n = o->second.nodes.find(node);
    if (n != o->second.nodes.end() && n->second.owner != who.full())
      return denied(who, "WRITE_ALL_NODES", target);
  }
  if (o == state_.orgs.end() || !o->second.groups.count(name) || !o->second.groups[name].has_member(node))
    return not_found("high availability node group member '" + org + "/" + name + "/" + node + "' not found");
  Group& g = o->second.groups[name];
  g.remove_member(node);
  g.last_updated = now_;
  add_change(org, "node", node, "modified", "node");
  add_change(org, "ha_group", name, "modified", "ha_group");
  group_changed(org, name, &g, who, "members", node);
  return written(204, "");
}

// ---- coordination writes (protocol.md §3) ---------------------------------------------------

namespace {

// If-Match: 428 when missing, 412 with the current ETag when stale. With
// If-Match-Scope: entry (and `entry_scope`, a hub that knows it) a write to
// `node`'s entry is stale only when that entry changed after the revision given
// (protocol.md §3, amended).
std::optional<Reply> check_if_match(const Call& call, const std::string& org, const std::string& name,
                                    const Group& g, const std::string& node = "", bool entry_scope = false) {
  std::string h = call.header("if-match");
  if (h.empty()) return api(428, "precondition-required", "If-Match with the group's revision is required");
  auto want = parse_etag(h);
  bool stale = !want || *want > g.revision;
  if (!stale && entry_scope && !node.empty() && call.header("if-match-scope") == "entry") {
    auto it = g.entry_revisions.find(node);
    stale = (it == g.entry_revisions.end() ? g.revision : it->second) > *want;
  } else if (!stale) {
    stale = *want != g.revision;
  }
  if (stale) {
    Reply r = api(412, "precondition-failed",
                  "high availability node group '" + org + "/" + name + "' is at revision " +
                      std::to_string(g.revision) + ", not " + h);
    r.headers.emplace_back("ETag", quoted(g.revision));
    return r;
  }
  return std::nullopt;
}

Reply with_etag(Reply r, std::int64_t revision) {
  r.headers.emplace_back("ETag", quoted(revision));
  r.write = true;
  return r;
}

}  // namespace

Reply Hub::put_entry(const Call& call, const std::string& org, const std::string& name,
                     const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (!who.is_root() && who.org != org) return denied(who, "WRITE_OTHER_ORGS", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name)) {
    if (who.is_node()) return denied(who, "WRITE_ALL_NODES", target);
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  }
  Group& g = o->second.groups[name];
  // A node writes only its own entry, and only while a member; an org admin, or a user
  // owning every member, may write any entry.
  if (who.is_node() && (who.id != node || !g.has_member(node))) return denied(who, "WRITE_ALL_NODES", target);
  if (who.is_user() && !is_admin_of(who, org)) {
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (n == o->second.nodes.end() || n->second.owner != who.full())
        return denied(who, "WRITE_ALL_NODES", target);
    }
  }
  if (!g.has_member(node))
    return not_found("high availability node group member '" + org + "/" + name + "/" + node + "' not found");
  if (auto r = check_if_match(call, org, name, g, node, options_.mode == Mode::full)) return *r;
  auto body = json::parse(call.body, "agentUpgrade entry");
  if (!body) return bad_input(body.error().message);
  if (auto e = parse_entry(body->get()); !e) return bad_input(e.error().message);
  g.entries[node] = json::print(body->get());  // as sent: unknown fields are preserved
  group_changed(org, name, &g, who, "write_entry", node);
  return with_etag(api(201, "ok",
                       "agentUpgrade entry of node '" + org + "/" + node +
                           "' in high availability node group '" + org + "/" + name + "' updated"),
                   g.revision);
}

Reply Hub::delete_entry(const Call& call, const std::string& org, const std::string& name,
                        const std::string& node, const Identity& who) {
  std::string target = "node=" + org + "/" + node;
  if (who.is_node() || (!who.is_root() && who.org != org)) return denied(who, "WRITE_ALL_NODES", target);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  Group& g = o->second.groups[name];
  if (!is_admin_of(who, org)) {
    for (const auto& id : g.members) {
      auto n = o->second.nodes.find(id);
      if (n == o->second.nodes.end() || n->second.owner != who.full())
        return denied(who, "WRITE_ALL_NODES", target);
    }
  }
  if (auto r = check_if_match(call, org, name, g)) return *r;
  if (!g.entries.count(node))
    return not_found("agentUpgrade entry of node '" + org + "/" + node +
                     "' in high availability node group '" + org + "/" + name + "' not found");
  g.entries.erase(node);
  group_changed(org, name, &g, who, "delete_entry", node);
  return with_etag(api(204, "ok", ""), g.revision);
}

Reply Hub::put_settings(const Call& call, const std::string& org, const std::string& name,
                        const Identity& who) {
  if (!is_admin_of(who, org)) return denied(who, "WRITE_ALL_NODES", "node=" + org + "/#");
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.groups.count(name))
    return not_found("high availability node group '" + org + "/" + name + "' not found");
  Group& g = o->second.groups[name];
  if (auto r = check_if_match(call, org, name, g)) return *r;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  if (auto s = parse_settings(body->get()); !s) return bad_input(s.error().message);
  g.settings = json::print(body->get());
  group_changed(org, name, &g, who, "settings", "");
  return with_etag(
      api(201, "ok",
          "agentUpgradeSettings of high availability node group '" + org + "/" + name + "' updated"),
      g.revision);
}

// ---- management policies and status (exchange-api.md §4) ----------------------------------

Reply Hub::get_policies(const std::string& org, const std::string& name, const Identity& who) {
  if (!who.is_root() && who.org != org) return denied(who, "READ_OTHER_ORGS", "mgmtpolicy=" + org + "/*");
  auto map = json::object();
  int count = 0;
  if (auto o = state_.orgs.find(org); o != state_.orgs.end()) {
    for (const auto& [id, text] : o->second.policies) {
      if (!name.empty() && id != name) continue;
      json::set(map.get(), (org + "/" + id).c_str(), raw_json(text));
      ++count;
    }
  }
  if (count == 0) return empty_map("managementPolicy");
  return map_reply("managementPolicy", std::move(map));
}

Reply Hub::write_policy(const Call& call, const std::string& org, const std::string& name,
                        const Identity& who) {
  std::string full = org + "/" + name;
  bool create = call.method == "POST";
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end()) return not_found("org '" + org + "' not found");
  auto existing = o->second.policies.find(name);
  json::Ptr old;
  if (existing != o->second.policies.end()) old = raw_json(existing->second);
  if (create && old) return api(403, "already-exists", "management policy '" + full + "' already exists");
  if (!create && !old) return not_found("management policy '" + full + "' not found");
  if (!create && !is_admin_of(who, org)) {
    auto owner = json::opt_string(old.get(), "owner");
    if (!owner || *owner != who.full()) return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  }
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  const cJSON* b = body->get();
  auto label = json::opt_string(b, "label");
  auto description = json::opt_string(b, "description");
  auto constraints = json::opt_string_array(b, "constraints");
  auto patterns = json::opt_string_array(b, "patterns");
  auto enabled = json::opt_bool(b, "enabled", false);
  auto start = json::opt_string(b, "start", "now");
  auto window = json::opt_int(b, "startWindow", 0);
  if (!label) return bad_input(label.error().message);
  if (!description) return bad_input(description.error().message);
  if (!constraints) return bad_input(constraints.error().message);
  if (!patterns) return bad_input(patterns.error().message);
  if (!enabled) return bad_input(enabled.error().message);
  if (!start) return bad_input(start.error().message);
  if (!window) return bad_input(window.error().message);
  if (!constraints->empty() && !patterns->empty())
    return bad_input("you can not specify both constraints and patterns");
  const cJSON* props = cJSON_GetObjectItemCaseSensitive(b, "properties");
  if (props && !cJSON_IsNull(props) && !cJSON_IsArray(props))
    return bad_input("field 'properties' must be an array");
  const cJSON* aup = cJSON_GetObjectItemCaseSensitive(b, "agentUpgradePolicy");
  if (aup && !cJSON_IsNull(aup) && !cJSON_IsObject(aup))
    return bad_input("field 'agentUpgradePolicy' must be an object");
  auto manifest = json::opt_string(aup, "manifest");
  auto downgrade = json::opt_bool(aup, "allowDowngrade", false);
  if (!manifest) return bad_input(manifest.error().message);
  if (!downgrade) return bad_input(downgrade.error().message);

  auto p = json::object();
  auto upgrade = json::object();
  json::set(upgrade.get(), "allowDowngrade", *downgrade);
  json::set(upgrade.get(), "manifest", *manifest);
  json::set(p.get(), "agentUpgradePolicy", std::move(upgrade));
  json::set(p.get(), "constraints", string_array(*constraints));
  json::set(p.get(), "created", old ? json::opt_string(old.get(), "created").value_or(now_) : now_);
  json::set(p.get(), "description", *description);
  json::set(p.get(), "enabled", *enabled);
  json::set(p.get(), "label", *label);
  json::set(p.get(), "lastUpdated", now_);
  json::set(p.get(), "owner", old ? json::opt_string(old.get(), "owner").value_or(who.full()) : who.full());
  json::set(p.get(), "patterns", string_array(*patterns));
  json::set(p.get(), "properties", props && cJSON_IsArray(props) ? json::clone(props) : json::array());
  json::set(p.get(), "start", *start);
  json::set(p.get(), "startWindow", std::max<std::int64_t>(*window, 0));
  o->second.policies[name] = json::print(p.get());
  add_change(org, "mgmtpolicy", name, create ? "created" : "modified", "mgmtpolicy");
  return written(201, "management policy '" + full + "' " + (create ? "created" : "updated"));
}

Reply Hub::delete_policy(const std::string& org, const std::string& name, const Identity& who) {
  std::string full = org + "/" + name;
  if (who.is_node() || (!who.is_root() && who.org != org))
    return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  auto o = state_.orgs.find(org);
  if (o == state_.orgs.end() || !o->second.policies.count(name))
    return not_found("management policy '" + full + "' not found");
  if (!is_admin_of(who, org)) {
    auto owner = json::opt_string(raw_json(o->second.policies[name]).get(), "owner");
    if (!owner || *owner != who.full()) return denied(who, "WRITE_MANAGEMENT_POLICY", "mgmtpolicy=" + full);
  }
  o->second.policies.erase(name);
  for (auto& [id, n] : o->second.nodes) n.mgmt_status.erase(name);  // FK cascade
  add_change(org, "mgmtpolicy", name, "deleted", "mgmtpolicy");
  return written(204, "");
}

Reply Hub::get_status(const std::string& org, const std::string& node, const std::string& nmp,
                      const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, false, &ref)) return *d;
  const Node* n = ref.node;
  auto map = json::object();
  int count = 0;
  if (n) {
    for (const auto& [id, text] : n->mgmt_status) {
      if (!nmp.empty() && id != nmp) continue;
      auto s = json::object();
      json::set(s.get(), "agentUpgradePolicyStatus", raw_json(text));
      json::set(map.get(), (org + "/" + id).c_str(), std::move(s));
      ++count;
    }
  }
  if (count == 0) return empty_map("managementStatus");
  return map_reply("managementStatus", std::move(map));
}

Reply Hub::put_status(const Call& call, const std::string& org, const std::string& node,
                      const std::string& nmp, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Node& n = *ref.node;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto st = json::get_object(body->get(), "agentUpgradePolicyStatus");
  if (!st) return bad_input(st.error().message);
  auto scheduled = json::get_string(*st, "scheduledTime");
  if (!scheduled) return bad_input(scheduled.error().message);
  const char* fields[] = {"startTime", "endTime", "status", "errorMessage"};
  auto s = json::object();
  json::set(s.get(), "scheduledTime", *scheduled);
  for (const char* f : fields) {
    auto v = json::opt_string(*st, f);
    if (!v) return bad_input(v.error().message);
    json::set(s.get(), f, *v);
  }
  const cJSON* uv = cJSON_GetObjectItemCaseSensitive(*st, "upgradedVersions");
  if (uv && !cJSON_IsNull(uv) && !cJSON_IsObject(uv))
    return bad_input("field 'upgradedVersions' must be an object");
  auto versions = json::object();
  for (const char* f : {"softwareVersion", "certVersion", "configVersion"}) {
    auto v = json::opt_string(uv, f);
    if (!v) return bad_input(v.error().message);
    json::set(versions.get(), f, *v);
  }
  json::set(s.get(), "upgradedVersions", std::move(versions));
  json::set(s.get(), "lastUpdated", now_);
  // The status row's FK to the policy: a missing NMP is a database error (exchange-api.md §4.2).
  if (!ref.org->policies.count(nmp))
    return api(500, "internal_error", "management policy '" + org + "/" + nmp + "' not found");
  bool existed = n.mgmt_status.count(nmp) > 0;
  n.mgmt_status[nmp] = json::print(s.get());
  add_change(org, "nodemgmtpolstatus", node, existed ? "modified" : "created", "node");
  Reply r = api(201, "ok",
                "status added or updated for management policy '" + org + "/" + nmp + "' for node '" + org +
                    "/" + node + "'.");
  r.write = true;
  return r;
}

Reply Hub::delete_status(const std::string& org, const std::string& node, const std::string& nmp,
                         const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  Node* n = ref.node;
  if (!n || !n->mgmt_status.count(nmp))
    return not_found("status of management policy '" + org + "/" + nmp + "' for node '" + org + "/" + node +
                     "' not found");
  n->mgmt_status.erase(nmp);
  add_change(org, "nodemgmtpolstatus", node, "deleted", "node");
  return written(204, "");
}

Reply Hub::agent_file_version(const Call& call, const std::string& org, const Identity& who) {
  if (org != "IBM") return bad_input("invalid input: " + org);
  const std::string target = "org=IBM";
  if (call.method == "GET") {
    // READ_AGENT_CONFIG_MGMT: nodes (of any org), admins, root (exchange-api.md §5.3).
    if (!(who.is_root() || who.is_node() || who.admin)) return denied(who, "READ_AGENT_CONFIG_MGMT", target);
    if (state_.agent_file_version.empty()) return not_found("org 'IBM' not found");
    Reply r;
    r.body = state_.agent_file_version;
    return r;
  }
  if (!is_admin_of(who, "IBM")) return denied(who, "WRITE_AGENT_CONFIG_MGMT", target);
  if (call.method == "DELETE") {
    if (state_.agent_file_version.empty()) return not_found("org 'IBM' not found");
    state_.agent_file_version.clear();
    add_change("IBM", "agentfileversion", "IBM", "modified", "org", true);
    return written(204, "");
  }
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto v = json::object();
  for (const char* key : {"agentCertVersions", "agentConfigVersions", "agentSoftwareVersions"}) {
    if (!present(body->get(), key)) return bad_input("field '" + std::string(key) + "' is required");
    auto list = json::opt_string_array(body->get(), key);
    if (!list) return bad_input(list.error().message);
    json::set(v.get(), key, string_array(*list));
  }
  json::set(v.get(), "lastUpdated", now_);
  state_.agent_file_version = json::print(v.get());
  add_change("IBM", "agentfileversion", "IBM", "modified", "org", true);
  return written(201, "attribute 'AgentFileVersion' of org 'IBM' updated");
}

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

// ---- CSS (exchange-api.md §5) ----------------------------------------------------------------

// `s` = path after /css/api/v1/objects: {org, type, id[, "data"]}
Reply Hub::route_css(const Call& call, const std::vector<std::string>& s, const Identity& who) {
  bool data = s.size() == 4 && s[3] == "data";
  if (s.size() != 3 && !data) return unrecognized();
  const std::string& org = s[0];
  const std::string& type = s[1];
  const std::string& id = s[2];
  std::string key = org + "/" + type + "/" + id;
  if (call.method == "PUT") {
    if (!(who.is_root() || (who.is_user() && who.org == org)))
      return denied(who, "WRITE_CSS_OBJECTS", "object=" + key);
    return data ? put_css_data(call, key) : put_css_meta(call, key, type, id);
  }
  if (call.method != "GET") return unrecognized();
  bool shared_agent_files = org == "IBM" && type.rfind("agent_", 0) == 0;  // AX CSSSHAREDORG
  if (!(who.is_root() || who.org == org || shared_agent_files))
    return denied(who, "READ_CSS_OBJECTS", "object=" + key);
  return data ? get_css_data(call, key) : get_css_meta(key, org, type, id);
}

// The data goes to its own file, replaced atomically: replies streaming the old
// file keep their open descriptor. The metadata stays.
Reply Hub::put_css_data(const Call& call, const std::string& key) {
  std::string dir = options_.state_path + ".css";
  ::mkdir(dir.c_str(), 0700);
  std::string file = sha256_hex(key);
  if (auto st = write_file_atomic(dir + "/" + file, call.body, 0600); !st)
    return api(500, "internal_error", st.error().message);
  CssObject& obj = state_.css[key];
  obj.size = static_cast<std::int64_t>(call.body.size());
  obj.file = file;
  dirty_ = true;
  return written(204, "");
}

// edge-sync-service PUT /api/v1/objects/{org}/{type}/{id} {"meta":{...}}: writes
// or updates the metadata; the data (if any) stays.
Reply Hub::put_css_meta(const Call& call, const std::string& key, const std::string& type,
                        const std::string& id) {
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto meta = json::get_object(body->get(), "meta");
  if (!meta) return bad_input(meta.error().message);
  auto object_id = json::opt_string(*meta, "objectID");
  auto object_type = json::opt_string(*meta, "objectType");
  if (!object_id) return bad_input(object_id.error().message);
  if (!object_type) return bad_input(object_type.error().message);
  if (!object_id->empty() && *object_id != id)
    return bad_input("objectID '" + *object_id + "' does not match the URL's '" + id + "'");
  if (!object_type->empty() && *object_type != type)
    return bad_input("objectType '" + *object_type + "' does not match the URL's '" + type + "'");
  CssObject updated = state_.css.count(key) ? state_.css[key] : CssObject{};
  struct Field {
    const char* name;
    std::string* out;
  };
  for (auto [name, out] :
       {Field{"description", &updated.description}, Field{"hashAlgorithm", &updated.hash_algorithm},
        Field{"publicKey", &updated.public_key}, Field{"signature", &updated.signature}}) {
    auto v = json::opt_string(*meta, name);
    if (!v) return bad_input(v.error().message);
    *out = *v;
  }
  updated.has_meta = true;
  state_.css[key] = std::move(updated);
  dirty_ = true;
  return written(204, "");
}

Reply Hub::get_css_meta(const std::string& key, const std::string& org, const std::string& type,
                        const std::string& id) {
  auto it = state_.css.find(key);
  if (it == state_.css.end()) return not_found("object '" + key + "' not found");
  const CssObject& obj = it->second;
  auto meta = json::object();
  json::set(meta.get(), "objectID", id);
  json::set(meta.get(), "objectType", type);
  json::set(meta.get(), "destinationOrgID", org);
  json::set(meta.get(), "objectSize", obj.file.empty() ? std::int64_t{0} : obj.size);  // 0: no data yet
  json::set(meta.get(), "description", obj.description);
  json::set(meta.get(), "hashAlgorithm", obj.hash_algorithm);
  json::set(meta.get(), "publicKey", obj.public_key);
  json::set(meta.get(), "signature", obj.signature);
  return json_reply(200, meta.get());
}

namespace {
// N of "bytes=N-"; nullopt for anything else.
std::optional<std::uint64_t> resume_offset(const std::string& range) {
  const std::string prefix = "bytes=";
  if (range.rfind(prefix, 0) != 0 || range.size() < prefix.size() + 2 || range.back() != '-')
    return std::nullopt;
  std::uint64_t n = 0;
  const char* first = range.data() + prefix.size();
  const char* last = range.data() + range.size() - 1;
  auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || end != last) return std::nullopt;
  return n;
}
}  // namespace

FileBody::~FileBody() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::size_t> FileBody::read(std::uint64_t at, char* out, std::size_t n) const {
  if (at >= length_) return std::size_t{0};
  n = static_cast<std::size_t>(std::min<std::uint64_t>(n, length_ - at));
  for (;;) {
    ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset_ + at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail(Errc::io, std::string("cannot read object data: ") + std::strerror(errno));
    if (got == 0) return fail(Errc::io, "object data file is shorter than it was");
    return static_cast<std::size_t>(got);
  }
}

// Streamed from the object's file (objects may be hundreds of MiB).
Reply Hub::get_css_data(const Call& call, const std::string& key) {
  auto it = state_.css.find(key);
  if (it == state_.css.end() || it->second.file.empty()) return not_found("object '" + key + "' not found");
  const std::string path = options_.state_path + ".css/" + it->second.file;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return api(500, "internal_error", "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return api(500, "internal_error", "cannot stat " + path + ": " + std::strerror(errno));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  Reply r;
  r.content_type = "application/octet-stream";
  r.headers.emplace_back("Accept-Ranges", "bytes");
  // `Range: bytes=N-` (what a resuming download sends) is honoured; any other
  // form is ignored, as RFC 9110 §14.2 allows, and the whole object is sent.
  std::uint64_t from = 0;
  if (auto asked = resume_offset(call.header("range"))) {
    if (*asked >= size) {
      ::close(fd);
      r.status = 416;
      r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
      return r;
    }
    from = *asked;
    r.status = 206;
    r.headers.emplace_back("Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(size - 1) +
                                                "/" + std::to_string(size));
  }
  r.file = std::make_shared<const FileBody>(fd, from, size - from);
  return r;
}

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

// ---- node policy (exchange-api.md §8; EX route/node/Policy.scala) ----------------------------

namespace {

// [{"name":..,"value":..,"type"?:..}] as the Exchange keeps it; `where` names the field in errors.
Result<json::Ptr> policy_properties(const cJSON* obj, const std::string& where) {
  auto out = json::array();
  const cJSON* list = cJSON_GetObjectItemCaseSensitive(obj, "properties");
  if (!list || cJSON_IsNull(list)) return out;
  if (!cJSON_IsArray(list)) return fail(Errc::parse, "field '" + where + "' must be an array");
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, list) {
    if (!cJSON_IsObject(item)) return fail(Errc::parse, "each of '" + where + "' must be an object");
    auto name = json::get_string(item, "name");
    if (!name) return std::unexpected(name.error());
    if (name->empty()) return fail(Errc::parse, "a property of '" + where + "' has an empty name");
    auto type = json::opt_string(item, "type");
    if (!type) return std::unexpected(type.error());
    const cJSON* value = cJSON_GetObjectItemCaseSensitive(item, "value");
    if (!value || cJSON_IsNull(value))
      return fail(Errc::parse, "property '" + *name + "' of '" + where + "' has no value");
    auto p = json::object();
    json::set(p.get(), "name", *name);
    json::set(p.get(), "value", json::clone(value));
    if (!type->empty()) json::set(p.get(), "type", *type);
    json::append(out.get(), std::move(p));
  }
  return out;
}

// {"properties":[...],"constraints":[...]} of the top level, "deployment" or "management".
Status policy_part(const cJSON* obj, const std::string& prefix, cJSON* into) {
  auto props = policy_properties(obj, prefix + "properties");
  if (!props) return std::unexpected(props.error());
  auto constraints = json::opt_string_array(obj, "constraints");
  if (!constraints) return std::unexpected(constraints.error());
  json::set(into, "properties", std::move(*props));
  json::set(into, "constraints", string_array(*constraints));
  return {};
}

}  // namespace

Reply Hub::get_node_policy(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, false, &ref)) return *d;
  const Node* n = ref.node;
  if (!n || n->policy.empty()) return not_found("not found");
  Reply r;
  r.body = n->policy;
  return r;
}

Reply Hub::put_node_policy(const Call& call, const std::string& org, const std::string& node,
                           const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  if (!ref.node) return not_found("node '" + org + "/" + node + "' not found");
  Node& n = *ref.node;
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto policy = json::object();
  for (const char* key : {"label", "description", "nodePolicyVersion"}) {
    auto v = json::opt_string(body->get(), key);
    if (!v) return bad_input(v.error().message);
    json::set(policy.get(), key, *v);
  }
  if (auto st = policy_part(body->get(), "", policy.get()); !st) return bad_input(st.error().message);
  for (const char* part : {"deployment", "management"}) {
    const cJSON* p = cJSON_GetObjectItemCaseSensitive(body->get(), part);
    if (p && !cJSON_IsNull(p) && !cJSON_IsObject(p))
      return bad_input("field '" + std::string(part) + "' must be an object");
    auto out = json::object();
    if (auto st = policy_part(p, std::string(part) + ".", out.get()); !st)
      return bad_input(st.error().message);
    json::set(policy.get(), part, std::move(out));
  }
  json::set(policy.get(), "lastUpdated", now_);
  n.policy = json::print(policy.get());
  n.last_updated = now_;
  if (!(call.params.count("noheartbeat") && call.params.at("noheartbeat") == "true")) n.last_heartbeat = now_;
  // EX writes ResChangeOperation.CREATEDMODIFIED, whose text is "created/modified".
  add_change(org, "nodepolicies", node, "created/modified", "node");
  return written(201, "policy added or updated");
}

Reply Hub::delete_node_policy(const std::string& org, const std::string& node, const Identity& who) {
  NodeRef ref;
  if (auto d = node_access(org, node, who, true, &ref)) return *d;
  Node* n = ref.node;
  if (!n || n->policy.empty()) return not_found("node policy '" + org + "/" + node + "' not found");
  n->policy.clear();
  n->last_updated = now_;
  add_change(org, "nodepolicies", node, "deleted", "node");
  return written(204, "");
}

}  // namespace agentd::standin
