// agentctl: the admin CLI of protocol.md §6, made with user credentials over the
// same Exchange client the daemon uses. Every write is conditional (If-Match), so
// two admins cannot undo each other blindly; a 412 means re-read and try again.
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agentd/version.h"
#include "clock.h"
#include "config.h"
#include "exchange.h"
#include "exchange_admin.h"
#include "group.h"
#include "group_status.h"
#include "http.h"
#include "service.h"
#include "token_file.h"

namespace agentd {
namespace {

enum Exit : int { exit_ok = 0, exit_hub = 1, exit_usage = 2 };

const char* kHelp = R"(agentctl - administer rolling agent upgrades of Open Horizon HA node groups

Usage: agentctl [OPTIONS] COMMAND [ARGS]

Commands:
  status GROUP [--json | --raw] [--watch [--interval SECONDS]]
                            members with state, version, target, epoch, lease age
                            and message, plus the group's settings, halt state and
                            the lease holder's progress;
                            --json: one JSON object of the shape below;
                            --raw: the group document as the hub sent it;
                            --watch: redraw as the document changes (conditional
                            reads with If-None-Match every --interval seconds,
                            default $AGENTD_POLL_SECONDS or 10; keep it no lower
                            than the members' AGENTD_POLL_SECONDS); on a terminal
                            the table is redrawn, otherwise one line per change
                            ("TIME NODE STATE VERSION [-> TARGET] epoch N [lease
                            AGE]: MESSAGE"), --json one object per change; until
                            Ctrl-C (SIGINT) or SIGTERM
  pause GROUP               no new acquisitions; a lease already held runs to its end
  unpause GROUP             allow acquisitions again
  resume GROUP NODE         clear a halt: write NODE's failed/rolledback entry back
                            to idle (keeps its version, clears targetVersion)
  force-release GROUP NODE  end the lease of holder NODE: its entry stays upgrading
                            without a lease, so peers still count it as disrupted;
                            the holder counts itself fenced, lets a step it began
                            finish, and queues again (never two members at once)
  settings GROUP [--max-concurrent N] [--min-available N]
                            change the group's settings (without options: show them)
  remove GROUP NODE         remove NODE from the group (its entry is dropped)

Options:
  --exchange-url URL    Exchange API URL including /v1
                        (default: $HZN_EXCHANGE_URL)
  --org ORG             organization (default: $HZN_ORG_ID)
  --user-auth-file FILE user credentials USER:PW, one line in FILE (mode 0600,
                        owned by root or you); default: $HZN_EXCHANGE_USER_AUTH;
                        a USER without "org/" is taken in ORG
  --user-auth USER:PW   the same on the command line, where every user of the
                        machine sees it (ps): warned about; prefer the above
  --ca-file FILE        CA certificate of the hub (default: $HZN_MGMT_HUB_CERT_PATH)
  --force               resume / force-release: write the entry even when it is
                        not failed / does not hold a lease
  -h, --help            this text
  --version             print the version

status --json (stable: fields are only ever added):
  {"group":"line1","revision":42,
   "settings":{"maxConcurrent":1,"minAvailable":2,"minAvailableIsDefault":true,
               "paused":false},
   "halted":false,
   "halts":[{"node","state","targetVersion","message"}...],
   "leaseHolders":["n2"],
   "members":[{"node":"n1","member":true,"hasEntry":true,"state":"succeeded",
               "version":"2.0.0","targetVersion":"2.0.0","epoch":41,
               "lastSeen":"...","waitingSince":"","message":"...",
               "lease":{"durationSeconds":120,"acquireTime":"...",
                        "renewTime":"...","ageSeconds":12}}...]}
  Members in the group's order, then entries of nodes that are not members
  ("member":false); without an entry "hasEntry" is false and the entry's
  fields are "" or 0; "lease" only while the entry carries one; "ageSeconds"
  (by this machine's clock) only when renewTime is readable and not ahead.

Every write carries If-Match with the revision just read; when another writer
got there first (HTTP 412) agentctl re-reads and tries again, up to 5 times.

Exit status: 0 success; 1 the hub refused or failed, or the action does not
apply to the entry; 2 usage error.
)";

struct Options {
  std::string exchange_url;
  std::string org;
  std::string user_auth;
  std::string ca_file;
  bool json = false;
  bool raw = false;
  bool watch = false;
  std::chrono::milliseconds interval{Config{}.poll};
  bool force = false;
  bool help = false;
  bool version = false;
  std::optional<std::int64_t> max_concurrent;
  std::optional<std::int64_t> min_available;
  std::vector<std::string> args;  // COMMAND and its operands
};

std::string env_or(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

Result<std::int64_t> parse_count(const std::string& flag, const std::string& text) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0 || v > 10000)
    return fail(Errc::config, flag + " needs a whole number 0..10000, got '" + text + "'");
  return v;
}

// Decimal seconds, at least 0.1 (a watch must not hammer the hub).
Result<std::chrono::milliseconds> parse_seconds(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double s = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(s >= 0.1 && s <= 86400))
    return fail(Errc::config, flag + " needs seconds between 0.1 and 86400, got '" + text + "'");
  return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
}

// Errc::config is a usage error (exit 2).
Result<Options> parse_args(int argc, char** argv) {
  Options o;
  // The members' poll interval, when the environment has it (agentd.conf's key).
  if (const char* poll = std::getenv("AGENTD_POLL_SECONDS"); poll && *poll) {
    auto d = parse_seconds("AGENTD_POLL_SECONDS", poll);
    if (!d) return std::unexpected(d.error());
    o.interval = *d;
  }
  o.exchange_url = env_or("HZN_EXCHANGE_URL");
  o.org = env_or("HZN_ORG_ID");
  o.user_auth = env_or("HZN_EXCHANGE_USER_AUTH");
  o.ca_file = env_or("HZN_MGMT_HUB_CERT_PATH");
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (options_done || a.empty() || a[0] != '-' || a == "-") {
      o.args.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    std::string name = a, value;
    bool has_value = false;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    auto take = [&]() -> Result<std::string> {
      if (has_value) return value;
      if (i + 1 >= argc) return fail(Errc::config, name + " needs a value");
      return std::string(argv[++i]);
    };
    if (name == "--exchange-url" || name == "--org" || name == "--user-auth" || name == "--user-auth-file" ||
        name == "--ca-file") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      if (name == "--exchange-url") {
        o.exchange_url = *v;
      } else if (name == "--org") {
        o.org = *v;
      } else if (name == "--user-auth") {
        o.user_auth = *v;
        // The password is in /proc/PID/cmdline for everyone: say so, and blank
        // our copy at once (ps shows the blanks from now on).
        std::cerr << "agentctl: warning: --user-auth shows the password to every user of this machine "
                     "(ps); use --user-auth-file FILE or HZN_EXCHANGE_USER_AUTH\n";
        char* arg = argv[i];
        if (has_value) arg += name.size() + 1;
        for (; *arg != '\0'; ++arg) *arg = 'x';
      } else if (name == "--user-auth-file") {
        auto text = read_token_file(*v);  // the token file's rules: 0600, one line, ours
        if (!text) return fail(Errc::config, "--user-auth-file: " + text.error().message);
        o.user_auth = *text;
      } else {
        o.ca_file = *v;
      }
      continue;
    }
    if (name == "--interval") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      auto d = parse_seconds(name, *v);
      if (!d) return std::unexpected(d.error());
      o.interval = *d;
      continue;
    }
    if (name == "--max-concurrent" || name == "--min-available") {
      auto v = take();
      if (!v) return std::unexpected(v.error());
      auto n = parse_count(name, *v);
      if (!n) return std::unexpected(n.error());
      if (name == "--max-concurrent" && *n < 1)
        return fail(Errc::config, "--max-concurrent must be at least 1");
      (name == "--max-concurrent" ? o.max_concurrent : o.min_available) = *n;
      continue;
    }
    bool* flag = name == "--json"                   ? &o.json
                 : name == "--raw"                  ? &o.raw
                 : name == "--watch"                ? &o.watch
                 : name == "--force"                ? &o.force
                 : name == "-h" || name == "--help" ? &o.help
                 : name == "--version"              ? &o.version
                                                    : nullptr;
    if (!flag) return fail(Errc::config, "unknown option " + name + " (see agentctl --help)");
    if (has_value) return fail(Errc::config, name + " takes no value");
    *flag = true;
  }
  return o;
}

// Waits between read retries; agentctl has no stop request (Ctrl-C ends it).
class BlockingSleeper final : public Sleeper {
 public:
  bool sleep_for(std::chrono::milliseconds d) override {
    std::this_thread::sleep_for(d);
    return true;
  }
  bool stop_requested() override { return false; }
};

// Errc::config marks a usage error (exit 2); anything else came from the hub or the entry.
int report(const Error& e) {
  const bool usage = e.code == Errc::config;
  std::cerr << "agentctl: " << one_line(usage ? e.message : e.describe()) << "\n";
  return usage ? exit_usage : exit_hub;
}

class Admin {
 public:
  Admin(Exchange& ex, std::string user) : ex_(ex), admin_(ex), user_(std::move(user)) {}

  Status status(const std::string& group, bool raw, bool json) {
    if (raw) {
      auto body = admin_.read_raw(group);
      if (!body) return std::unexpected(body.error());
      std::cout << *body << "\n";
      return {};
    }
    auto r = ex_.read(group, std::nullopt);
    if (!r) return std::unexpected(r.error());
    const Wall now = SystemClock().wall();
    std::cout << (json ? status_json(r->document, now) + "\n" : status_table(r->document, now));
    return {};
  }

  // Reads the group with If-None-Match every `interval` (a 304 costs the hub
  // next to nothing, protocol.md §3) and shows each new revision: the table
  // redrawn on a terminal, else a line per change (or a JSON object per
  // revision). A failed read is reported and tried again; SIGINT/SIGTERM end it.
  Status watch(const std::string& group, bool json, std::chrono::milliseconds interval,
               SignalWaiter& waiter) {
    const bool tty = !json && ::isatty(STDOUT_FILENO) == 1;
    std::optional<GroupDocument> shown;
    std::string last_error;
    while (!waiter.stop_requested()) {
      std::optional<std::int64_t> known;
      if (shown) known = shown->revision;
      auto r = ex_.read(group, known);
      const Wall now = SystemClock().wall();
      if (!r) {
        if (r.error().code == Errc::cancelled) break;
        if (r.error().describe() != last_error)
          std::cerr << "agentctl: " << format_time(now) << " " << one_line(r.error().describe()) << "\n";
        last_error = r.error().describe();
      } else {
        last_error.clear();
        if (!r->not_modified) {
          if (json) {
            std::cout << status_json(r->document, now) << "\n";
          } else if (tty) {
            // Home, clear the screen: a plain ANSI terminal redraw.
            std::cout << "\x1b[H\x1b[2J" << status_table(r->document, now) << "\nwatching every "
                      << interval.count() / 1000.0 << " s; Ctrl-C ends\n";
          } else {
            for (const auto& line : status_changes(shown ? &*shown : nullptr, r->document, now))
              std::cout << line << "\n";
          }
          std::cout.flush();
          shown = std::move(r->document);
        }
      }
      if (!waiter.sleep_for(interval)) break;
    }
    return {};
  }

  Status pause(const std::string& group, bool paused) {
    return with_fresh_document(group, [&](const GroupDocument& doc) -> Status {
      if (doc.settings.paused == paused) {
        std::cout << "group " << group << (paused ? " is already paused" : " is not paused") << "\n";
        return {};
      }
      Settings s = doc.settings;
      s.paused = paused;
      auto rev = admin_.put_settings(group, s, doc.revision);
      if (!rev) return std::unexpected(rev.error());
      std::cout << "group " << group << (paused ? " paused" : " unpaused") << " (revision " << *rev << ")\n";
      return {};
    });
  }

  Status settings(const std::string& group, std::optional<std::int64_t> max_concurrent,
                  std::optional<std::int64_t> min_available) {
    return with_fresh_document(group, [&](const GroupDocument& doc) -> Status {
      if (!max_concurrent && !min_available) {
        std::cout << settings_line(doc) << "\n";
        return {};
      }
      Settings s = doc.settings;
      if (max_concurrent) s.max_concurrent = *max_concurrent;
      if (min_available) s.min_available = *min_available;
      auto rev = admin_.put_settings(group, s, doc.revision);
      if (!rev) return std::unexpected(rev.error());
      GroupDocument after = doc;
      after.settings = s;
      std::cout << "group " << group << " " << settings_line(after) << " (revision " << *rev << ")\n";
      return {};
    });
  }

  // protocol.md §6 resume: the halting entry goes back to idle at its running version.
  Status resume(const std::string& group, const std::string& node, bool force) {
    return with_fresh_document(group, [&](const GroupDocument& doc) -> Status {
      const Entry* e = doc.entry(node);
      if (!e) return fail(Errc::not_found, "group " + group + " has no entry for " + node);
      if (!is_halting(e->state) && !force)
        return fail(Errc::conflict,
                    node + " is " + to_string(e->state) +
                        ", not failed or rolledback: nothing to resume (--force resets it anyway)");
      return write_idle(group, node, doc, *e, "resumed by " + user_);
    });
  }

  // protocol.md §6 force-release: the holder finds its entry changed and counts itself fenced (§4.4).
  Status force_release(const std::string& group, const std::string& node, bool force) {
    return with_fresh_document(group, [&](const GroupDocument& doc) -> Status {
      const Entry* e = doc.entry(node);
      if (!e) return fail(Errc::not_found, "group " + group + " has no entry for " + node);
      if (!holds_lease(e->state) && !force)
        return fail(Errc::conflict,
                    node + " is " + to_string(e->state) +
                        " and holds no lease: nothing to release (--force writes it to idle anyway)");
      if (!holds_lease(e->state)) return write_idle(group, node, doc, *e, "force-released by " + user_);
      return write_released(group, node, doc, *e, "force-released by " + user_);
    });
  }

  Status remove(const std::string& group, const std::string& node) {
    auto st = admin_.remove_member(group, node);
    if (!st) return st;
    std::cout << "removed " << node << " from group " << group << "\n";
    return {};
  }

 private:
  // Reads the group and applies `write`; a 412 means another writer got in between,
  // so re-read and decide again (protocol.md §6: admin writes use If-Match).
  template <class Write>
  Status with_fresh_document(const std::string& group, Write write) {
    constexpr int kAttempts = 5;
    for (int attempt = 1;; ++attempt) {
      auto r = ex_.read(group, std::nullopt);
      if (!r) return std::unexpected(r.error());
      auto st = write(r->document);
      if (st || st.error().http_status != 412) return st;
      if (attempt >= kAttempts) {
        st.error().message = "group " + group + " changed during each of " + std::to_string(kAttempts) +
                             " attempts; try again: " + st.error().message;
        return st;
      }
    }
  }

  // protocol.md §6 force-release (amended): the lease ends, the state does not. An
  // idle entry would count as a healthy member to a peer that never saw the lease,
  // and the holder may still be inside its install; upgrading without a lease
  // counts as disrupted while the holder heartbeats (§4.3 rule 2), until it writes
  // waiting itself. A dead holder stops counting after 3 × heartbeat.
  Status write_released(const std::string& group, const std::string& node, const GroupDocument& doc, Entry e,
                        const std::string& message) {
    e.lease_duration_seconds = 0;
    e.acquire_time.clear();
    e.renew_time.clear();
    e.write_id.clear();
    e.message = message;
    auto rev = ex_.write_entry(group, node, e, doc.revision);
    if (!rev) return std::unexpected(rev.error());
    std::cout << node << ": lease of epoch " << e.epoch << " ended, " << message << "; " << node
              << " stays counted as disrupted until it writes again (revision " << *rev << ")\n";
    return {};
  }

  // Keeps version, epoch (epochs only grow, protocol.md §4.3) and lastSeen (only the
  // member proves its own liveness); drops the target and the lease.
  Status write_idle(const std::string& group, const std::string& node, const GroupDocument& doc, Entry e,
                    const std::string& message) {
    const State before = e.state;
    e.state = State::idle;
    e.target_version.clear();
    e.lease_duration_seconds = 0;
    e.acquire_time.clear();
    e.renew_time.clear();
    e.waiting_since.clear();
    e.write_id.clear();
    e.message = message;
    auto rev = ex_.write_entry(group, node, e, doc.revision);
    if (!rev) return std::unexpected(rev.error());
    std::cout << node << ": " << to_string(before) << " -> idle, " << message << " (revision " << *rev
              << ")\n";
    return {};
  }

  Exchange& ex_;
  ExchangeAdmin admin_;
  std::string user_;
};

int run(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) return report(parsed.error());
  Options o = std::move(*parsed);
  if (o.help) {
    std::cout << kHelp;
    return exit_ok;
  }
  if (o.version) {
    std::cout << "agentctl " << AGENTD_VERSION << "\n";
    return exit_ok;
  }
  auto usage = [](const std::string& text) {
    return report(Error{Errc::config, text + " (see agentctl --help)"});
  };
  if (o.args.empty()) return usage("no command given");
  const std::string cmd = o.args[0];
  const std::vector<std::string> operands(o.args.begin() + 1, o.args.end());
  struct Shape {
    const char* name;
    std::size_t operands;
  };
  static constexpr Shape kCommands[] = {{"status", 1},        {"pause", 1},    {"unpause", 1}, {"resume", 2},
                                        {"force-release", 2}, {"settings", 1}, {"remove", 2}};
  const Shape* shape = nullptr;
  for (const auto& s : kCommands)
    if (cmd == s.name) shape = &s;
  if (!shape) return usage("unknown command '" + cmd + "'");
  if (operands.size() != shape->operands)
    return usage(cmd + " takes " + (shape->operands == 1 ? "GROUP" : "GROUP NODE"));
  if ((o.json || o.raw || o.watch) && cmd != "status")
    return usage("--json, --raw and --watch are only for status");
  if (o.json && o.raw) return usage("--json and --raw exclude each other");
  if (o.raw && o.watch) return usage("--watch shows the table or --json, not --raw");
  if (o.force && cmd != "resume" && cmd != "force-release")
    return usage("--force is only for resume and force-release");
  if ((o.max_concurrent || o.min_available) && cmd != "settings")
    return usage("--max-concurrent and --min-available are only for settings");
  for (const auto& op : operands)
    if (op.empty()) return usage("GROUP and NODE must not be empty");

  if (o.exchange_url.empty()) return usage("no Exchange URL: give --exchange-url or set HZN_EXCHANGE_URL");
  if (o.org.empty()) return usage("no organization: give --org or set HZN_ORG_ID");
  auto colon = o.user_auth.find(':');
  if (o.user_auth.empty() || colon == std::string::npos || colon == 0)
    return usage(
        "no user credentials: give --user-auth-file FILE (USER:PASSWORD) or set HZN_EXCHANGE_USER_AUTH");
  std::string user = o.user_auth.substr(0, colon);
  if (user.find('/') == std::string::npos) user = o.org + "/" + user;  // as hzn does

  HttpOptions http_options;
  http_options.basic_user = user;
  http_options.basic_password = o.user_auth.substr(colon + 1);
  http_options.ca_file = o.ca_file;
  http_options.user_agent = std::string("agentctl/") + AGENTD_VERSION;
  // --watch runs until a signal: SIGINT and SIGTERM are blocked and read by the
  // waiter, which also ends a request or a retry in flight.
  std::optional<SignalWaiter> waiter;
  if (o.watch) {
    waiter.emplace();
    http_options.cancelled = [&waiter] { return waiter->stop_requested(); };
  }
  auto http = make_curl_http_client(http_options);
  BlockingSleeper blocking;
  Sleeper& sleeper = waiter ? static_cast<Sleeper&>(*waiter) : blocking;
  // node_id is unused: admin calls name their node explicitly.
  Exchange ex(*http, ExchangeEndpoint{o.exchange_url, "", o.org, ""}, RetryPolicy{}, sleeper);
  Admin admin(ex, user);

  const std::string& group = operands[0];
  Status st;
  if (cmd == "status" && o.watch)
    st = admin.watch(group, o.json, o.interval, *waiter);
  else if (cmd == "status")
    st = admin.status(group, o.raw, o.json);
  else if (cmd == "pause")
    st = admin.pause(group, true);
  else if (cmd == "unpause")
    st = admin.pause(group, false);
  else if (cmd == "settings")
    st = admin.settings(group, o.max_concurrent, o.min_available);
  else if (cmd == "resume")
    st = admin.resume(group, operands[1], o.force);
  else if (cmd == "force-release")
    st = admin.force_release(group, operands[1], o.force);
  else
    st = admin.remove(group, operands[1]);
  if (!st) return report(st.error());
  return exit_ok;
}

}  // namespace
}  // namespace agentd

int main(int argc, char** argv) {
  return agentd::run(argc, argv);
}
