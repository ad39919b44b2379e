// The Exchange stand-in's request handling: authentication, authorization and
// every route agentd and an admin use (exchange-api.md), plus the coordination
// extension of protocol.md §3. Transport-free: the HTTP server (server.h) turns
// requests into Calls and Replies into responses, so all state changes happen
// here under one mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agentd/result.h"
#include "store.h"

namespace agentd::standin {

enum class Mode {
  full,              // protocol.md §3 as written
  group_conditions,  // §3 before If-Match-Scope: every write is checked against the whole group
  no_etag,           // members may read their group, but no ETag / If-None-Match
  no_coordination,   // today's Exchange: nodes get 403 on hagroup reads, no agentupgrade routes
};

std::optional<Mode> mode_from_string(const std::string& s);

struct HubOptions {
  std::string state_path;  // required
  std::string log_path;    // write log (JSON lines); empty: none
  std::string root_password = "rootpw";
  std::string exchange_version = "2.154.0";
  Mode mode = Mode::full;
  // The agbot's HA-upgrade lock (exchange-api.md §7), served by this process too:
  // every grant and release as a JSON line {"seq","tUs","op":"grant"|"release",
  // "org","group","node","nmp","reason"}; empty: none.
  std::string agbot_log_path;
  // The period of the agbot's monitor, which frees locks whose holder's status is
  // no longer active (§7.3; the real agbot: 60 s). The stand-in frees a lock half
  // an interval to an interval after that status was written, never at once.
  // 0: no monitor of its own; a test calls Hub::monitor_agbot_locks().
  std::chrono::milliseconds agbot_monitor_interval{60'000};
};

struct Call {
  std::string method;                          // GET, PUT, POST, PATCH, DELETE (HEAD is answered as GET)
  std::string path;                            // decoded, e.g. /v1/orgs/o/nodes/n
  std::map<std::string, std::string> params;   // query parameters
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& lower_name) const;
};

// Bytes of an open file sent as a reply's body (CSS object data), streamed
// rather than read into memory. The hub opens the file while it holds its lock,
// so a PUT replacing the object meanwhile does not change what a reply sends.
class FileBody {
 public:
  FileBody(int fd, std::uint64_t offset, std::uint64_t length) : fd_(fd), offset_(offset), length_(length) {}
  ~FileBody();
  FileBody(const FileBody&) = delete;
  FileBody& operator=(const FileBody&) = delete;

  std::uint64_t length() const { return length_; }
  // Up to `n` bytes from position `at` of the body (not of the file); Errc::io
  // on a read error or a file shorter than it was.
  Result<std::size_t> read(std::uint64_t at, char* out, std::size_t n) const;

 private:
  int fd_;
  std::uint64_t offset_;  // where the body starts in the file (a Range request's start)
  std::uint64_t length_;
};

struct Reply {
  int status = 200;
  std::string body;
  // When set, the body is these bytes instead of `body` (CSS object data); only
  // such replies are damaged by the faults' "body" setting (server.h).
  std::shared_ptr<const FileBody> file;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // An accepted state-changing request: what the dropAfterCommit fault counts.
  bool write = false;
};

struct Identity {
  enum class Kind { root, user, node };
  Kind kind = Kind::user;
  std::string org;
  std::string id;
  bool admin = false;  // org admin (users only); root is above admins

  std::string full() const { return org + "/" + id; }
  bool is_root() const { return kind == Kind::root; }
  bool is_node() const { return kind == Kind::node; }
  bool is_user() const { return kind == Kind::user; }
};

// The non-empty segments of a URL path: "/v1/orgs/o" -> {"v1", "orgs", "o"}.
std::vector<std::string> split_path(const std::string& path);

// "org/id" from a Basic Authorization header, without checking the secret; "" if none.
std::string basic_user(const std::string& authorization);

class Hub {
 public:
  // Loads the state file (a missing file starts empty).
  static Result<std::unique_ptr<Hub>> open(HubOptions options);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  Reply handle(const Call& call);

  // Checks the credentials of an Authorization header; nullopt when they are not valid.
  std::optional<Identity> authenticate(const std::string& authorization);

  // Writes state that is saved lazily (node heartbeats) to the state file.
  Status flush();

  const HubOptions& options() const { return options_; }

  // One pass of the agbot's monitor (exchange-api.md §7.3): frees each lock whose
  // holder left the group or whose holder's status for the NMP is not active
  // (and was written at least half an interval ago); a node or status it cannot
  // read keeps the lock. A thread of the hub's own runs it every half interval.
  void monitor_agbot_locks();

 private:
  Hub(HubOptions options, HubState state, ChangeFile changes);

  std::optional<Identity> authenticate_locked(const std::string& authorization) const;
  Reply route(const Call& call, const std::vector<std::string>& segs, const std::optional<Identity>& who);
  Reply route_org(const Call& call, const std::vector<std::string>& segs, const Identity& who);
  Reply route_css(const Call& call, const std::vector<std::string>& segs, const Identity& who);

  // The agbot's lock (exchange-api.md §7): its secure API route and the admin routes.
  Reply post_agbot_lock(const std::string& org, const std::string& group, const std::string& node,
                        const std::string& nmp, const std::optional<Identity>& who);
  Reply upgrading_node(const Call& call, const std::vector<std::string>& segs,
                       const std::optional<Identity>& who);
  void agbot_log(const char* op, const std::string& key, const AgbotLock& lock, const std::string& reason);
  void release_agbot_lock(const std::string& key, const std::string& reason);
  void run_agbot_monitor();

  // Orgs, users, nodes.
  Reply get_org(const std::string& org, const Identity& who);
  Reply post_org(const Call& call, const std::string& org, const Identity& who);
  Reply post_user(const Call& call, const std::string& org, const std::string& user, const Identity& who);
  Reply get_nodes(const std::string& org, const Identity& who);
  Reply get_node(const Call& call, const std::string& org, const std::string& node, const Identity& who);
  Reply put_node(const Call& call, const std::string& org, const std::string& node, const Identity& who);
  Reply patch_node(const Call& call, const std::string& org, const std::string& node, const Identity& who);
  Reply delete_node(const std::string& org, const std::string& node, const Identity& who);
  Reply post_heartbeat(const std::string& org, const std::string& node, const Identity& who);

  // HA groups (exchange-api.md §2) and the coordination extension (protocol.md §3).
  Reply get_groups(const std::string& org, const Identity& who);
  Reply get_group(const Call& call, const std::string& org, const std::string& name, const Identity& who);
  Reply post_group(const Call& call, const std::string& org, const std::string& name, const Identity& who);
  Reply put_group(const Call& call, const std::string& org, const std::string& name, const Identity& who);
  Reply delete_group(const std::string& org, const std::string& name, const Identity& who);
  Reply post_member(const Call& call, const std::string& org, const std::string& name,
                    const std::string& node, const Identity& who);
  Reply delete_member(const std::string& org, const std::string& name, const std::string& node,
                      const Identity& who);
  Reply put_entry(const Call& call, const std::string& org, const std::string& name, const std::string& node,
                  const Identity& who);
  Reply delete_entry(const Call& call, const std::string& org, const std::string& name,
                     const std::string& node, const Identity& who);
  Reply put_settings(const Call& call, const std::string& org, const std::string& name, const Identity& who);

  // Management policies and status (exchange-api.md §4), AgentFileVersion (§5.3).
  Reply get_policies(const std::string& org, const std::string& name, const Identity& who);
  Reply write_policy(const Call& call, const std::string& org, const std::string& name, const Identity& who);
  Reply delete_policy(const std::string& org, const std::string& name, const Identity& who);
  Reply get_status(const std::string& org, const std::string& node, const std::string& nmp,
                   const Identity& who);
  Reply put_status(const Call& call, const std::string& org, const std::string& node, const std::string& nmp,
                   const Identity& who);
  Reply delete_status(const std::string& org, const std::string& node, const std::string& nmp,
                      const Identity& who);
  Reply agent_file_version(const Call& call, const std::string& org, const Identity& who);

  // Node policy (exchange-api.md §8: GET|PUT|DELETE orgs/{org}/nodes/{node}/policy).
  Reply get_node_policy(const std::string& org, const std::string& node, const Identity& who);
  Reply put_node_policy(const Call& call, const std::string& org, const std::string& node,
                        const Identity& who);
  Reply delete_node_policy(const std::string& org, const std::string& node, const Identity& who);

  // CSS objects (exchange-api.md §5): metadata and data of {org}/{type}/{id}.
  Reply put_css_meta(const Call& call, const std::string& key, const std::string& type,
                     const std::string& id);
  Reply put_css_data(const Call& call, const std::string& key);
  Reply get_css_meta(const std::string& key, const std::string& org, const std::string& type,
                     const std::string& id);
  Reply get_css_data(const Call& call, const std::string& key);

  // Changes feed (exchange-api.md §6).
  Reply max_change_id();
  Reply post_changes(const Call& call, const std::string& org, const Identity& who);

  // Shared steps.
  void add_change(const std::string& org, const std::string& resource, const std::string& id,
                  const std::string& operation, const std::string& category, bool is_public = false);
  // A group's document changed: new revision, agentupgrade change rows for its
  // members, a write-log line. `g` is null when the group was deleted.
  void group_changed(const std::string& org, const std::string& name, Group* g, const Identity& actor,
                     const char* op, const std::string& node);
  // Takes `nodes` out of every group of `org` but `keep` (the ?force=true move).
  void move_out(const std::string& org, const std::vector<std::string>& nodes, const std::string& keep,
                const Identity& actor);
  bool is_admin_of(const Identity& who, const std::string& org) const;
  // The access check of a node's own routes (exchange-api.md: TNode READ/WRITE):
  // root, an org admin, the node itself or the user who owns it. The denial to
  // answer, or nullopt with `found` holding the org and the node, each null when
  // missing (every route words its own 404).
  struct NodeRef {
    Org* org = nullptr;
    Node* node = nullptr;
  };
  std::optional<Reply> node_access(const std::string& org, const std::string& node, const Identity& who,
                                   bool write, NodeRef* found);
  bool coordination() const { return options_.mode != Mode::no_coordination; }
  // Every change of state starts with the time and ends by saving the state and
  // appending the log lines (replacing `r` when the save fails).
  void begin_locked();
  void commit_locked(Reply* r);

  HubOptions options_;
  std::mutex mu_;
  HubState state_;
  ChangeFile changes_;  // PATH.changes: how far the changes table is saved
  std::string now_;     // wall time of the request being handled
  std::int64_t now_us_ = 0;
  bool dirty_ = false;                    // save before answering
  bool heartbeat_dirty_ = false;          // only lastHeartbeat changed: saved with the next write or flush()
  std::vector<std::string> pending_log_;  // write-log lines of this request, appended after the save
  std::vector<std::string> pending_agbot_log_;  // agbot lock log lines, the same way

  std::mutex monitor_mu_;  // guards stopping_
  std::condition_variable monitor_cv_;
  bool stopping_ = false;
  std::thread monitor_;
};

}  // namespace agentd::standin
