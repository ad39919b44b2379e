#include "agentd/config.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agentd/token_file.h"
#include "support/temp_dir.h"

using namespace agentd;
using namespace std::chrono_literals;
using agentd::testing::TempDir;

namespace {

using Env = std::map<std::string, std::string>;

const char* kHorizon =
    "HZN_EXCHANGE_URL=http://127.0.0.1:3090/v1\n"
    "HZN_ORG_ID=myorg\n"
    "HZN_DEVICE_ID=node1\n";

// A scratch /etc: horizon file, agentd.conf and conf.d in a temp directory.
struct Etc {
  TempDir dir;
  Flags flags;
  Etc() {
    flags.horizon_file = dir.file("horizon");
    flags.config_file = dir.file("agentd/agentd.conf");
  }
  std::string horizon(const std::string& text) const { return dir.write("horizon", text); }
  std::string config(const std::string& text) const { return dir.write("agentd/agentd.conf", text); }
  std::string conf_d(const std::string& name, const std::string& text) const {
    return dir.write("agentd/conf.d/" + name, text);
  }
  // A valid configuration plus `extra` lines at the end of agentd.conf (line 4 onwards).
  std::string minimal(const std::string& extra = "") const {
    horizon(kHorizon);
    return config("AGENTD_TOKEN_FILE=" + dir.file("token") +
                  "\n"
                  "AGENTD_VERSION_COMMAND='cat \"$AGENTD_STATE_DIR/version\"'\n"
                  "AGENTD_INSTALL_COMMAND=/usr/local/bin/install-agent\n" +
                  extra);
  }
  Result<Config> load(const Env& env = {}) const { return load_config(flags, env); }
};

std::string error_of(const Result<Config>& r) {
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::config);
  return r.error().message;
}

// The configuration error lines, one per problem.
std::vector<std::string> lines_of(const std::string& message) {
  std::vector<std::string> out;
  std::istringstream in(message);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

Result<Flags> flags_of(std::vector<const char*> args) {
  args.insert(args.begin(), "agentd");
  return parse_flags(static_cast<int>(args.size()), args.data());
}

std::string seconds_text(std::chrono::milliseconds d) {
  std::string s = std::to_string(d.count() / 1000);
  if (d.count() % 1000 != 0) {
    std::string frac = std::to_string(1000 + d.count() % 1000).substr(1);
    while (frac.ends_with('0')) frac.pop_back();
    s += "." + frac;
  }
  return s;
}

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("a minimal configuration loads with the documented defaults") {
    Etc etc;
    std::string conf = etc.minimal();
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    const Config defaults;
    CHECK(r->exchange_url == "http://127.0.0.1:3090/v1");
    CHECK(r->org == "myorg");
    CHECK(r->node_id == "node1");
    CHECK(r->css_url.empty());
    CHECK(r->ca_file.empty());
    CHECK(r->token_file == etc.dir.file("token"));
    CHECK(r->version_command == "cat \"$AGENTD_STATE_DIR/version\"");
    CHECK(r->install_command == "/usr/local/bin/install-agent");
    CHECK(r->prepare_command.empty());
    CHECK(r->rollback_command.empty());
    CHECK(r->state_dir == "/var/lib/agentd");
    CHECK(r->lease_duration == 120s);
    CHECK(r->heartbeat == 20s);
    CHECK(r->idle_heartbeat == 600s);
    CHECK(r->changes_interval == 30s);
    CHECK(r->fast_poll == 2s);
    CHECK(r->poll == 10s);
    CHECK(r->connect_timeout == 10s);
    CHECK(r->http_timeout == 30s);
    CHECK(r->max_response_bytes == 4u * 1024 * 1024);
    CHECK(r->log_level == Level::info);
    CHECK(r->command_timeout == 600s);
    CHECK(r->sources == std::vector<std::string>{etc.flags.horizon_file, conf});
  }

  TEST_CASE("file syntax: export, comments, blank lines, quotes, CRLF") {
    Etc etc;
    etc.horizon(
        "# written by the agent installer\n"
        "\n"
        "export HZN_EXCHANGE_URL=\"https://hub.example.com/api/v1/\"\n"
        "  export\tHZN_ORG_ID='myorg'   # the org\n"
        "HZN_DEVICE_ID=node1 # trailing comment\r\n"
        "HZN_FSS_CSSURL=https://hub.example.com/css/\n"
        "HZN_AGENT_PORT=8510\n"
        "SOMETHING_ELSE=\"not ours\"\n");
    etc.config(
        "AGENTD_TOKEN_FILE=/etc/agentd/token\n"
        "AGENTD_VERSION_COMMAND=\"printf '%s' \\\"$X\\\" \\$Y \\\\ \\` \\n\"\n"
        "AGENTD_INSTALL_COMMAND='echo \"a  b\" \\ $AGENTD_TARGET_VERSION # not a comment'\n"
        "AGENTD_PREPARE_COMMAND=\n"
        "AGENTD_RESTART_COMMAND=''\n"
        "AGENTD_HEALTH_COMMAND=a#b\n"
        "AGENTD_ROLLBACK_COMMAND=  /opt/agent.sh rollback --to \"$AGENTD_PREVIOUS_VERSION\" it's  # comment\n"
        "AGENTD_POLL_SECONDS = 5\n"
        "AGENTD_LOG_LEVEL=debug\n"
        "AGENTD_LOG_LEVEL=warn\n");
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->exchange_url == "https://hub.example.com/api/v1");
    CHECK(r->org == "myorg");
    CHECK(r->node_id == "node1");
    CHECK(r->css_url == "https://hub.example.com/css");
    CHECK(r->version_command == "printf '%s' \"$X\" $Y \\ ` \\n");
    CHECK(r->install_command == "echo \"a  b\" \\ $AGENTD_TARGET_VERSION # not a comment");
    CHECK(r->prepare_command.empty());
    CHECK(r->restart_command.empty());
    CHECK(r->health_command == "a#b");
    CHECK(r->rollback_command == "/opt/agent.sh rollback --to \"$AGENTD_PREVIOUS_VERSION\" it's");
    CHECK(r->poll == 5s);
    CHECK(r->log_level == Level::warn);  // later line of the same file wins
  }

  TEST_CASE("file syntax errors name file, line and key") {
    Etc etc;
    std::string conf = etc.minimal(
        "AGENTD_PREPARE_COMMAND=\"echo unterminated\n"
        "AGENTD_RESTART_COMMAND='also unterminated\n"
        "AGENTD_HEALTH_COMMAND='ok' trailing\n"
        "this is not an assignment\n"
        "=value\n");
    auto lines = lines_of(error_of(etc.load()));
    CHECK(lines ==
          std::vector<std::string>{
              conf + ":4: AGENTD_PREPARE_COMMAND: unterminated double quote",
              conf + ":5: AGENTD_RESTART_COMMAND: unterminated single quote",
              conf + ":6: AGENTD_HEALTH_COMMAND: unexpected text after the closing quote: 'trailing'",
              conf + ":7: expected KEY=VALUE",
              conf + ":8: expected KEY=VALUE",
          });
  }

  TEST_CASE("an unknown AGENTD_ key in a file is an error; other unknown keys are ignored") {
    Etc etc;
    std::string conf =
        etc.minimal("AGENTD_HEARTBEAT_SECOND=5\nAGENTD_FROBNICATE=1\nHZN_AGENT_PORT=8510\nFOO=1\n");
    auto lines = lines_of(error_of(etc.load()));
    CHECK(lines ==
          std::vector<std::string>{
              conf + ":4: AGENTD_HEARTBEAT_SECOND: unknown key (did you mean AGENTD_HEARTBEAT_SECONDS?)",
              conf + ":5: AGENTD_FROBNICATE: unknown key",
          });

    // The environment carries unrelated AGENTD_* variables (a command's own); not ours to judge.
    Etc ok;
    ok.minimal();
    CHECK(ok.load({{"AGENTD_TARGET_VERSION", "2.0.0"},
                   {"AGENTD_STEP", "install"},
                   {"HZN_EXCHANGE_USER_AUTH", "x:y"}})
              .has_value());
  }

  TEST_CASE("precedence: horizon file < agentd.conf < conf.d in lexical order < environment < flags") {
    Etc etc;
    etc.horizon(std::string(kHorizon) + "AGENTD_LOG_LEVEL=error\n");
    std::string conf = etc.config(
        "HZN_ORG_ID=org-from-config\n"
        "AGENTD_TOKEN_FILE=/etc/agentd/token\n"
        "AGENTD_VERSION_COMMAND=v\n"
        "AGENTD_INSTALL_COMMAND=i\n"
        "AGENTD_POLL_SECONDS=5\n"
        "AGENTD_CHANGES_SECONDS=5\n"
        "AGENTD_STATE_DIR=/from/config\n"
        "AGENTD_HEALTH_COMMAND=from-config\n");
    std::string d10 = etc.conf_d("10-site.conf", "AGENTD_POLL_SECONDS=6\nAGENTD_CHANGES_SECONDS=6\n");
    std::string d9 = etc.conf_d("9-late.conf", "AGENTD_POLL_SECONDS=7\nAGENTD_LOG_LEVEL=warn\n");
    // Not *.conf, hidden, or a directory: not read (they would be errors if they were).
    etc.conf_d("README", "not a config file\n");
    etc.conf_d(".hidden.conf", "AGENTD_BOGUS=1\n");
    etc.conf_d("50-site.conf.dpkg-old", "AGENTD_BOGUS=1\n");
    std::filesystem::create_directories(etc.dir.file("agentd/conf.d/sub.conf"));

    auto r = etc.load(
        {{"AGENTD_CHANGES_SECONDS", "8"}, {"AGENTD_STATE_DIR", "/from/env"}, {"HZN_DEVICE_ID", "node-env"}});
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->org == "org-from-config");  // agentd.conf over the horizon file
    CHECK(r->node_id == "node-env");     // environment over files
    CHECK(r->poll == 7s);                // "9-late.conf" sorts after "10-site.conf"
    CHECK(r->changes_interval == 8s);    // environment over conf.d
    CHECK(r->log_level == Level::warn);  // conf.d over the horizon file
    CHECK(r->state_dir == "/from/env");
    CHECK(r->health_command == "from-config");
    CHECK(r->sources == std::vector<std::string>{etc.flags.horizon_file, conf, d10, d9});

    etc.flags.state_dir = "/from/flag";
    etc.flags.log_level = "debug";
    auto f = etc.load({{"AGENTD_STATE_DIR", "/from/env"}, {"AGENTD_LOG_LEVEL", "error"}});
    REQUIRE_MESSAGE(f.has_value(), f.error().message);
    CHECK(f->state_dir == "/from/flag");
    CHECK(f->log_level == Level::debug);
  }

  TEST_CASE("missing files: the default paths may be absent, a named file may not") {
    Etc etc;
    etc.minimal();
    SUBCASE("no conf.d is fine") {
      CHECK(etc.load().has_value());
    }
    SUBCASE("a named --config that does not exist") {
      etc.flags.config_file = etc.dir.file("nope.conf");
      auto lines = lines_of(error_of(etc.load()));
      CHECK(lines.front() == etc.dir.file("nope.conf") + ": cannot open: No such file or directory");
    }
    SUBCASE("a named --horizon-file that does not exist") {
      etc.flags.horizon_file = etc.dir.file("no-horizon");
      auto lines = lines_of(error_of(etc.load()));
      CHECK(lines.front() == etc.dir.file("no-horizon") + ": cannot open: No such file or directory");
    }
    SUBCASE("conf.d that is not a directory") {
      etc.dir.write("agentd/conf.d", "oops\n");
      CHECK(lines_of(error_of(etc.load())) ==
            std::vector<std::string>{etc.dir.file("agentd/conf.d") + ": not a directory"});
    }
    SUBCASE("the default paths, absent, with everything in the environment") {
      if (std::filesystem::exists(Flags{}.config_file) || std::filesystem::exists(Flags{}.horizon_file)) {
        MESSAGE("skipped: this machine has a real agentd configuration");
        return;
      }
      auto r = load_config(Flags{}, {{"HZN_EXCHANGE_URL", "http://127.0.0.1:1/v1"},
                                     {"HZN_ORG_ID", "o"},
                                     {"HZN_DEVICE_ID", "n"},
                                     {"AGENTD_TOKEN_FILE", "/t"},
                                     {"AGENTD_VERSION_COMMAND", "v"},
                                     {"AGENTD_INSTALL_COMMAND", "i"}});
      REQUIRE_MESSAGE(r.has_value(), r.error().message);
      CHECK(r->sources.empty());
    }
  }

  TEST_CASE("every required key missing is reported, naming where to set it") {
    Etc etc;
    etc.horizon("# empty\n");
    etc.config("AGENTD_UPGRADE_METHOD=commands\nAGENTD_INSTALL_COMMAND=\n");
    auto lines = lines_of(error_of(etc.load()));
    const std::string h = etc.flags.horizon_file, c = etc.flags.config_file;
    CHECK(lines ==
          std::vector<std::string>{
              "HZN_EXCHANGE_URL: required but not set (set it in " + h + " or the environment)",
              "HZN_ORG_ID: required but not set (set it in " + h + " or the environment)",
              "HZN_DEVICE_ID: required but not set (set it in " + h + " or the environment)",
              "AGENTD_TOKEN_FILE: required but not set (set it in " + c + " or the environment)",
              "AGENTD_VERSION_COMMAND: required when AGENTD_UPGRADE_METHOD=commands (from " + c + ":1)",
              "AGENTD_INSTALL_COMMAND: required when AGENTD_UPGRADE_METHOD=commands (from " + c + ":1)",
          });
  }

  TEST_CASE("the packages method needs no commands and has safe defaults") {
    Etc etc;
    etc.horizon(kHorizon);
    etc.config("AGENTD_TOKEN_FILE=" + etc.dir.file("token") + "\n");
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->upgrade_method == "packages");
    CHECK(r->package_system == "auto");
    CHECK(r->agent_package == "horizon");
    CHECK(r->agent_unit == "horizon.service");
    CHECK(r->trusted_keys_dir == "/etc/agentd/trusted.d");
    CHECK_FALSE(r->allow_unsigned_manifest);
    CHECK(r->install_root == "/");
  }

  TEST_CASE("pipeline settings are validated") {
    struct Case {
      std::string line, problem;
    };
    const std::vector<Case> cases = {
        {"AGENTD_UPGRADE_METHOD=scripts", "AGENTD_UPGRADE_METHOD: 'scripts' must be packages or commands"},
        {"AGENTD_PACKAGE_SYSTEM=apk", "AGENTD_PACKAGE_SYSTEM: 'apk' must be one of auto, deb, rpm, tarball"},
        {"AGENTD_AGENT_PACKAGE=-rf", "AGENTD_AGENT_PACKAGE: '-rf' is not a package name"},
        {"AGENTD_AGENT_PACKAGE='a b'", "AGENTD_AGENT_PACKAGE: 'a b' is not a package name"},
        {"AGENTD_AGENT_UNIT='x;y'", "AGENTD_AGENT_UNIT: 'x;y' is not a systemd unit name"},
        {"AGENTD_ALLOW_UNSIGNED_MANIFEST=maybe",
         "AGENTD_ALLOW_UNSIGNED_MANIFEST: 'maybe' must be true or false"},
        {"AGENTD_MAX_DOWNLOAD_BYTES=12",
         "AGENTD_MAX_DOWNLOAD_BYTES: '12' must be between 1024 bytes and 1 TiB"},
        {"AGENTD_DOWNLOAD_ATTEMPTS=0", "AGENTD_DOWNLOAD_ATTEMPTS: '0' must be between 1 and 100"},
        {"AGENTD_INSTALL_ROOT=relative", "AGENTD_INSTALL_ROOT: 'relative' must be an absolute path"},
    };
    for (const Case& tc : cases) {
      CAPTURE(tc.line);
      Etc etc;
      std::string conf = etc.minimal(tc.line + "\n");
      auto r = etc.load();
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message == conf + ":4: " + tc.problem);
    }
    Etc etc;
    etc.minimal("AGENTD_AGENT_UNIT=horizon\nAGENTD_ALLOW_UNSIGNED_MANIFEST=yes\n");
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->agent_unit == "horizon.service");
    CHECK(r->allow_unsigned_manifest);
  }

  TEST_CASE("URLs") {
    struct Case {
      std::string key, value, expect;  // expect: the stored URL, or the problem
      bool ok;
    };
    const std::vector<Case> cases = {
        {"HZN_EXCHANGE_URL", "https://hub/v1", "https://hub/v1", true},
        {"HZN_EXCHANGE_URL", "https://hub:8443/api/v1//", "https://hub:8443/api/v1", true},
        {"HZN_EXCHANGE_URL", "ftp://hub/v1", "'ftp://hub/v1' must start with http:// or https://", false},
        {"HZN_EXCHANGE_URL", "hub/v1", "'hub/v1' must start with http:// or https://", false},
        {"HZN_EXCHANGE_URL", "https://hub/api",
         "'https://hub/api' must end in /v1 (the Exchange API root, e.g. "
         "https://exchange.example.com/api/v1)",
         false},
        {"HZN_EXCHANGE_URL", "https://hub/v12", "", false},
        {"HZN_EXCHANGE_URL", "http:///v1", "'http:///v1' has no host", false},
        {"HZN_EXCHANGE_URL", "", "must not be empty", false},
        {"HZN_FSS_CSSURL", "http://127.0.0.1:9/css/", "http://127.0.0.1:9/css", true},
        {"HZN_FSS_CSSURL", "", "", true},
        {"HZN_FSS_CSSURL", "https://css.example.com", "https://css.example.com", true},
        {"HZN_FSS_CSSURL", "css.example.com", "'css.example.com' must start with http:// or https://", false},
    };
    for (const Case& tc : cases) {
      CAPTURE(tc.value);
      Etc etc;
      std::string conf = etc.minimal(tc.key + "='" + tc.value + "'\n");
      auto r = etc.load();
      if (tc.ok) {
        REQUIRE_MESSAGE(r.has_value(), r.error().message);
        CHECK((tc.key == "HZN_EXCHANGE_URL" ? r->exchange_url : r->css_url) == tc.expect);
      } else {
        std::string message = error_of(r);
        if (!tc.expect.empty()) CHECK(message == conf + ":4: " + tc.key + ": " + tc.expect);
        CHECK(message.starts_with(conf + ":4: " + tc.key + ": "));
      }
    }
  }

  TEST_CASE("plain http:// to another machine is refused unless AGENTD_ALLOW_INSECURE_HTTP, then warned") {
    for (const char* url :
         {"http://hub.example.com/v1", "http://10.0.0.5:3090/v1", "http://127.0.0.1.evil.com/v1",
          "http://localhost.evil.com/v1", "http://[::2]/v1", "http://u@128.0.0.1/v1"}) {
      CAPTURE(url);
      Etc etc;
      std::string conf = etc.minimal(std::string("HZN_EXCHANGE_URL=") + url + "\n");
      std::string message = error_of(etc.load());
      CHECK(message.starts_with(conf + ":4: HZN_EXCHANGE_URL: '" + url +
                                "' is plain http:// to another machine"));
      CHECK(message.find("AGENTD_ALLOW_INSECURE_HTTP=true") != std::string::npos);
    }
    {
      Etc etc;
      std::string conf = etc.minimal("HZN_FSS_CSSURL=http://css.example.com/\n");
      CHECK(error_of(etc.load()).starts_with(conf + ":4: HZN_FSS_CSSURL: 'http://css.example.com'"));
    }
    for (const char* url : {"http://127.0.0.1:3090/v1", "http://localhost/v1", "http://[::1]:80/v1",
                            "http://127.1.2.3/v1", "https://hub.example.com/v1"}) {
      CAPTURE(url);
      Etc etc;
      etc.minimal(std::string("HZN_EXCHANGE_URL=") + url + "\n");
      auto r = etc.load();
      REQUIRE_MESSAGE(r.has_value(), r.error().message);
      CHECK(r->warnings.empty());
    }
    Etc etc;
    etc.minimal("HZN_EXCHANGE_URL=http://hub.example.com/v1\nAGENTD_ALLOW_INSECURE_HTTP=true\n");
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->allow_insecure_http);
    REQUIRE(r->warnings.size() == 1);
    CHECK(r->warnings[0].starts_with("HZN_EXCHANGE_URL=http://hub.example.com/v1: plain http://"));
    CHECK(r->warnings[0].find("in clear") != std::string::npos);
  }

  TEST_CASE("security settings: defaults, and the ones that weaken it are warnings") {
    Etc etc;
    etc.minimal();
    auto d = etc.load();
    REQUIRE(d.has_value());
    CHECK_FALSE(d->allow_insecure_http);
    CHECK_FALSE(d->trust_system_cas);
    CHECK_FALSE(d->allow_downgrade);
    CHECK(d->download_timeout == 3600s);
    CHECK(d->warnings.empty());
    etc.minimal(
        "AGENTD_ALLOW_DOWNGRADE=yes\nAGENTD_TRUST_SYSTEM_CAS=true\nAGENTD_DOWNLOAD_TIMEOUT_SECONDS=60\n"
        "AGENTD_ALLOW_UNSIGNED_MANIFEST=1\n");
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->allow_downgrade);
    CHECK(r->trust_system_cas);
    CHECK(r->download_timeout == 60s);
    REQUIRE(r->warnings.size() == 2);
    CHECK(r->warnings[0].starts_with("AGENTD_ALLOW_DOWNGRADE=true (from " + etc.flags.config_file + ":4)"));
    CHECK(r->warnings[1].starts_with("AGENTD_ALLOW_UNSIGNED_MANIFEST=true"));
    etc.minimal("AGENTD_ALLOW_DOWNGRADE=maybe\n");
    CHECK(error_of(etc.load()).find("AGENTD_ALLOW_DOWNGRADE: 'maybe' must be true or false") !=
          std::string::npos);
  }

  TEST_CASE("hub_call_budget: a read and a write fit in a heartbeat and in a renew period") {
    Config c;
    CHECK(hub_call_budget(c) == 10s);  // min(20 s heartbeat, 120 s / 3) / 2
    c.heartbeat = 60s;
    c.lease_duration = 90s;
    CHECK(hub_call_budget(c) == 15s);  // the renew period is the shorter
    c.http_timeout = 5s;
    CHECK(hub_call_budget(c) == 5s);  // never above the whole-request timeout
    c.heartbeat = 500ms;
    CHECK(hub_call_budget(c) == 1s);  // at least a second, even with test timings
  }

  TEST_CASE("is_loopback_url") {
    CHECK(is_loopback_url("http://127.0.0.1:3090/v1"));
    CHECK(is_loopback_url("http://localhost"));
    CHECK(is_loopback_url("http://[::1]/x"));
    CHECK(is_loopback_url("http://user:pw@127.0.0.9/x"));
    CHECK_FALSE(is_loopback_url("http://127.0.0.256/"));
    CHECK_FALSE(is_loopback_url("http://127.0.0/"));
    CHECK_FALSE(is_loopback_url("http://127.0.0.1.nip.io/"));
    CHECK_FALSE(is_loopback_url("http://evil/?h=127.0.0.1"));
    CHECK_FALSE(is_loopback_url("http://[::1].evil/"));
    CHECK_FALSE(is_loopback_url("localhost"));
  }

  TEST_CASE("org and node ids, CA file, absolute paths") {
    Etc etc;
    std::string ca = etc.dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
    std::string conf = etc.minimal(
        "HZN_ORG_ID=my/org\n"
        "HZN_DEVICE_ID='node 1'\n"
        "HZN_MGMT_HUB_CERT_PATH=" +
        etc.dir.file("missing.pem") +
        "\n"
        "AGENTD_TOKEN_FILE=token\n"
        "AGENTD_STATE_DIR=var/lib/agentd\n");
    auto lines = lines_of(error_of(etc.load()));
    CHECK(lines == std::vector<std::string>{
                       conf + ":4: HZN_ORG_ID: 'my/org' must not contain whitespace, control characters or "
                              "any of / : ? # %",
                       conf + ":5: HZN_DEVICE_ID: 'node 1' must not contain whitespace, control characters "
                              "or any of / : ? # %",
                       conf + ":6: HZN_MGMT_HUB_CERT_PATH: '" + etc.dir.file("missing.pem") +
                           "': No such file or directory",
                       conf + ":7: AGENTD_TOKEN_FILE: 'token' must be an absolute path",
                       conf + ":8: AGENTD_STATE_DIR: 'var/lib/agentd' must be an absolute path",
                   });

    Etc good;
    good.minimal("HZN_MGMT_HUB_CERT_PATH=" + ca + "\n");
    auto r = good.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->ca_file == ca);

    Etc dir_ca;
    std::string c2 = dir_ca.minimal("HZN_MGMT_HUB_CERT_PATH=" + dir_ca.dir.path() + "\n");
    CHECK(error_of(dir_ca.load()) ==
          c2 + ":4: HZN_MGMT_HUB_CERT_PATH: '" + dir_ca.dir.path() + "' is not a regular file");
  }

  TEST_CASE("durations: decimal seconds with up to three fraction digits, within bounds") {
    struct Case {
      std::string value;
      std::optional<std::chrono::milliseconds> ms;  // nullopt: rejected with `problem`
      std::string problem;
    };
    const std::vector<Case> cases = {
        {"45", 45s, ""},
        {"0.25", 250ms, ""},
        {"1.5", 1500ms, ""},
        {"0.001", 1ms, ""},
        {"007", 7s, ""},
        {"86400", 86400s, ""},
        {"0", std::nullopt, "'0' must be positive (at least 0.001 seconds)"},
        {"0.000", std::nullopt, "'0.000' must be positive (at least 0.001 seconds)"},
        {"0.0001", std::nullopt, "'0.0001' has more than 3 decimal places (the resolution is 1 ms)"},
        {"86400.001", std::nullopt, "'86400.001' must be at most 86400 seconds"},
        {"99999999999999999999", std::nullopt, "'99999999999999999999' must be at most 86400 seconds"},
        {"-1", std::nullopt, "'-1' is not a number of seconds (e.g. 20 or 0.25)"},
        {"1e3", std::nullopt, "'1e3' is not a number of seconds (e.g. 20 or 0.25)"},
        {"1.", std::nullopt, "'1.' is not a number of seconds (e.g. 20 or 0.25)"},
        {".5", std::nullopt, "'.5' is not a number of seconds (e.g. 20 or 0.25)"},
        {"20s", std::nullopt, "'20s' is not a number of seconds (e.g. 20 or 0.25)"},
        {"", std::nullopt, "must not be empty (seconds, e.g. 20 or 0.25)"},
    };
    for (const Case& tc : cases) {
      CAPTURE(tc.value);
      Etc etc;
      std::string conf = etc.minimal("AGENTD_COMMAND_TIMEOUT_SECONDS=" + tc.value + "\n");
      auto r = etc.load();
      if (tc.ms) {
        REQUIRE_MESSAGE(r.has_value(), r.error().message);
        CHECK(r->command_timeout == *tc.ms);
      } else {
        CHECK(error_of(r) == conf + ":4: AGENTD_COMMAND_TIMEOUT_SECONDS: " + tc.problem);
      }
    }

    // Every duration key goes through the same rule (test timings are fractional).
    Etc fast;
    fast.minimal(
        "AGENTD_LEASE_DURATION_SECONDS=1.5\n"
        "AGENTD_HEARTBEAT_SECONDS=0.2\n"
        "AGENTD_IDLE_HEARTBEAT_SECONDS=0.5\n"
        "AGENTD_CHANGES_SECONDS=0.3\n"
        "AGENTD_FAST_POLL_SECONDS=0.05\n"
        "AGENTD_POLL_SECONDS=0.1\n"
        "AGENTD_CONNECT_TIMEOUT_SECONDS=0.75\n"
        "AGENTD_HTTP_TIMEOUT_SECONDS=2.5\n");
    auto r = fast.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->lease_duration == 1500ms);
    CHECK(r->heartbeat == 200ms);
    CHECK(r->idle_heartbeat == 500ms);
    CHECK(r->changes_interval == 300ms);
    CHECK(r->fast_poll == 50ms);
    CHECK(r->poll == 100ms);
    CHECK(r->connect_timeout == 750ms);
    CHECK(r->http_timeout == 2500ms);
  }

  TEST_CASE("max response bytes and log level") {
    Etc etc;
    std::string conf = etc.minimal("AGENTD_MAX_RESPONSE_BYTES=100\nAGENTD_LOG_LEVEL=verbose\n");
    CHECK(lines_of(error_of(etc.load())) ==
          std::vector<std::string>{
              conf + ":4: AGENTD_MAX_RESPONSE_BYTES: '100' must be between 1024 and 1073741824 bytes",
              conf + ":5: AGENTD_LOG_LEVEL: 'verbose' must be one of debug, info, warn, error",
          });
    Etc bad_number;
    std::string c2 = bad_number.minimal("AGENTD_MAX_RESPONSE_BYTES=4M\n");
    CHECK(error_of(bad_number.load()) ==
          c2 + ":4: AGENTD_MAX_RESPONSE_BYTES: '4M' is not a number of bytes (e.g. 4194304)");
    Etc good;
    good.minimal("AGENTD_MAX_RESPONSE_BYTES=1048576\nAGENTD_LOG_LEVEL=error\n");
    auto r = good.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->max_response_bytes == 1048576u);
    CHECK(r->log_level == Level::error);
  }

  TEST_CASE("bad values from the environment and from flags name their source") {
    Etc etc;
    etc.minimal();
    etc.flags.state_dir = "relative/dir";
    etc.flags.log_level = "loud";
    auto lines =
        lines_of(error_of(etc.load({{"AGENTD_POLL_SECONDS", "soon"}, {"HZN_EXCHANGE_URL", "http://hub"}})));
    CHECK(lines ==
          std::vector<std::string>{
              "environment: HZN_EXCHANGE_URL: 'http://hub' must end in /v1 (the Exchange API root, e.g. "
              "https://exchange.example.com/api/v1)",
              "--state-dir: 'relative/dir' must be an absolute path",
              "environment: AGENTD_POLL_SECONDS: 'soon' is not a number of seconds (e.g. 20 or 0.25)",
              "--log-level: 'loud' must be one of debug, info, warn, error",
          });
  }

  TEST_CASE("timing rules name both keys: fast poll under lease/3, heartbeat under the lease") {
    Etc etc;
    std::string conf = etc.minimal(
        "AGENTD_LEASE_DURATION_SECONDS=3\nAGENTD_FAST_POLL_SECONDS=1\nAGENTD_HEARTBEAT_SECONDS=0.5\n");
    CHECK(error_of(etc.load()) == conf +
                                      ":5: AGENTD_FAST_POLL_SECONDS: 1 must be less than "
                                      "AGENTD_LEASE_DURATION_SECONDS / 3 (3 / 3, from " +
                                      conf + ":4): a waiting member must see each lease renewal");

    Etc hb;
    std::string c2 = hb.minimal("AGENTD_LEASE_DURATION_SECONDS=15\n");
    CHECK(
        error_of(hb.load()) ==
        "AGENTD_HEARTBEAT_SECONDS (default): 20 must be less than AGENTD_LEASE_DURATION_SECONDS (15, from " +
            c2 + ":4)");

    Etc env;
    env.minimal("AGENTD_LEASE_DURATION_SECONDS=1.5\n");
    CHECK(error_of(env.load({{"AGENTD_HEARTBEAT_SECONDS", "1.5"}, {"AGENTD_FAST_POLL_SECONDS", "0.25"}})) ==
          "environment: AGENTD_HEARTBEAT_SECONDS: 1.5 must be less than AGENTD_LEASE_DURATION_SECONDS (1.5, "
          "from " +
              env.flags.config_file + ":4)");

    Etc just_under;
    just_under.minimal(
        "AGENTD_LEASE_DURATION_SECONDS=3\nAGENTD_FAST_POLL_SECONDS=0.999\nAGENTD_HEARTBEAT_SECONDS=2.999\n");
    CHECK(just_under.load().has_value());
  }

  TEST_CASE("all problems are reported at once") {
    Etc etc;
    std::string conf = etc.minimal("AGENTD_POLL_SECONDS=x\nAGENTD_TYPO=1\n");
    etc.horizon("HZN_EXCHANGE_URL=nope\nHZN_ORG_ID=o\nHZN_DEVICE_ID=n\n");
    auto lines = lines_of(error_of(etc.load()));
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == conf + ":5: AGENTD_TYPO: unknown key");
    CHECK(lines[1].starts_with(etc.flags.horizon_file + ":1: HZN_EXCHANGE_URL: "));
    CHECK(lines[2].starts_with(conf + ":4: AGENTD_POLL_SECONDS: "));
  }

  TEST_CASE("token file: 0600 or stricter, regular, readable, not empty") {
    TempDir dir;
    auto token = [&](const std::string& name, const std::string& content, mode_t mode) {
      std::string p = dir.write(name, content);
      REQUIRE(::chmod(p.c_str(), mode) == 0);
      return p;
    };
    CHECK(read_token_file(token("ok", "s3cret\n", 0600)) == "s3cret");
    CHECK(read_token_file(token("readonly", "s3cret", 0400)) == "s3cret");
    CHECK(read_token_file(token("crlf", "s3cret\r\n", 0600)) == "s3cret");

    std::string world = token("world", "s3cret\n", 0644);
    auto w = read_token_file(world);
    REQUIRE_FALSE(w.has_value());
    CHECK(w.error().code == Errc::config);
    CHECK(w.error().message == world +
                                   ": mode 0644 lets group or others read the token; it must be 0600 or "
                                   "stricter: chmod 600 " +
                                   world);
    std::string group = token("group", "s3cret\n", 0640);
    CHECK(read_token_file(group).error().message.find("mode 0640") != std::string::npos);
    CHECK(read_token_file(group).error().message.ends_with("chmod 600 " + group));
    CHECK_FALSE(read_token_file(token("other-exec", "s3cret\n", 0601)).has_value());

    auto missing = read_token_file(dir.file("absent"));
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().message ==
          dir.file("absent") + ": cannot open the token file: No such file or directory");

    std::string empty = token("empty", "", 0600);
    CHECK(read_token_file(empty).error().message == empty + ": the token file is empty");
    CHECK(
        read_token_file(token("newline", "\n", 0600)).error().message.ends_with(": the token file is empty"));
    CHECK(
        read_token_file(token("two-lines", "a\nb\n", 0600)).error().message.ends_with("more than one line"));

    std::filesystem::create_directory(dir.file("dir"));
    ::chmod(dir.file("dir").c_str(), 0700);
    CHECK(read_token_file(dir.file("dir")).error().message ==
          dir.file("dir") + ": the token file is not a regular file");

    CHECK(read_token_file("").error().code == Errc::config);

    // Owned by someone else, the file could be rewritten (or opened up) behind agentd's back.
    if (::geteuid() == 0) {
      std::string foreign = token("foreign", "s3cret\n", 0600);
      REQUIRE(::chown(foreign.c_str(), 4242, 4242) == 0);
      auto f = read_token_file(foreign);
      REQUIRE_FALSE(f.has_value());
      CHECK(f.error().message.find("owned by uid 4242, neither root nor the user agentd runs as") !=
            std::string::npos);
    }

    std::string unreadable = token("unreadable", "s3cret\n", 0000);
    if (::geteuid() != 0) {
      CHECK(read_token_file(unreadable).error().message.find("Permission denied") != std::string::npos);
    }
  }

  TEST_CASE("parse_flags: both option forms, errors carry the usage") {
    auto f = flags_of({"--config", "/c.conf", "--horizon-file=/h", "--state-dir=/s", "--log-level", "debug",
                       "--check-config"});
    REQUIRE(f.has_value());
    CHECK(f->config_file == "/c.conf");
    CHECK(f->horizon_file == "/h");
    CHECK(f->state_dir == "/s");
    CHECK(f->log_level == "debug");
    CHECK(f->check_config);
    CHECK_FALSE(f->help);
    CHECK_FALSE(f->version);

    auto defaults = flags_of({});
    REQUIRE(defaults.has_value());
    CHECK(defaults->config_file == "/etc/agentd/agentd.conf");
    CHECK(defaults->horizon_file == "/etc/default/horizon");
    CHECK_FALSE(defaults->state_dir.has_value());
    CHECK_FALSE(defaults->log_level.has_value());

    CHECK(flags_of({"-h"})->help);
    CHECK(flags_of({"--help"})->help);
    CHECK(flags_of({"-V"})->version);
    CHECK(flags_of({"--version"})->version);

    struct Bad {
      std::vector<const char*> args;
      std::string first_line;
    };
    const std::vector<Bad> bad = {
        {{"--frobnicate"}, "unknown option '--frobnicate'"},
        {{"-x"}, "unknown option '-x'"},
        {{"--config"}, "option --config needs a value"},
        {{"--state-dir="}, "option --state-dir needs a non-empty value"},
        {{"--help=yes"}, "option --help takes no value"},
        {{"--check-config=1"}, "option --check-config takes no value"},
        {{"extra"}, "unexpected argument 'extra'"},
    };
    for (const Bad& b : bad) {
      CAPTURE(b.first_line);
      auto r = flags_of(b.args);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().code == Errc::config);
      CHECK(lines_of(r.error().message).front() == b.first_line);
      CHECK(r.error().message.find("usage: agentd [--config FILE]") != std::string::npos);
    }
  }

  TEST_CASE("environment_map splits at the first '=' and keeps the first duplicate") {
    const char* raw[] = {"A=1", "B=x=y", "NOEQUALS", "=bad", "EMPTY=", "A=2", nullptr};
    auto env = environment_map(const_cast<char**>(raw));
    CHECK(env == Env{{"A", "1"}, {"B", "x=y"}, {"EMPTY", ""}});
    CHECK(environment_map(nullptr).empty());
  }

  TEST_CASE("help text: every section, every key of config.h with its default, every exit status") {
    // agentd --help is agentd(8) as groff formats it (packaging/help-from-man.cmake):
    // sections at the margin, entries indented by 7.
    std::string help = help_text();
    CHECK(help.rfind("NAME\n", 0) == 0);                 // no page header
    CHECK(help.find("AGENTD(8)") == std::string::npos);  // nor footer
    CHECK(help.find("  found  ") == std::string::npos);  // left-adjusted, not justified
    CHECK(help.find('\b') == std::string::npos);         // no overstriking
    CHECK(help.find("\x1b[") == std::string::npos);      // no terminal escapes
    for (const char* section : {"NAME\n", "SYNOPSIS\n", "DESCRIPTION\n", "OPTIONS\n", "CONFIGURATION\n",
                                "FILES\n", "ENVIRONMENT\n", "EXIT STATUS\n", "SIGNALS\n", "EXAMPLES\n"}) {
      CHECK_MESSAGE(help.find(section) != std::string::npos, section);
    }
    for (const char* option : {"--config FILE", "--horizon-file FILE", "--state-dir DIR", "--log-level LEVEL",
                               "--check-config", "-h, --help", "-V, --version"}) {
      CHECK_MESSAGE(help.find(option) != std::string::npos, option);
    }

    // Every HZN_/AGENTD_ key named in config.h, read from the header itself.
    std::ifstream header(std::filesystem::path(__FILE__).parent_path() / "../../agentd/config.h");
    REQUIRE(header);
    std::string text((std::istreambuf_iterator<char>(header)), std::istreambuf_iterator<char>());
    std::set<std::string> keys;
    std::regex key_re("\\b(AGENTD|HZN)_[A-Z_]+[A-Z]\\b");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), key_re); it != std::sregex_iterator();
         ++it) {
      keys.insert(it->str());
    }
    CHECK(keys.size() >= 18);
    // config.h names the commands as AGENTD_*_COMMAND.
    for (const char* command :
         {"AGENTD_VERSION_COMMAND", "AGENTD_PREPARE_COMMAND", "AGENTD_INSTALL_COMMAND",
          "AGENTD_RESTART_COMMAND", "AGENTD_HEALTH_COMMAND", "AGENTD_ROLLBACK_COMMAND"}) {
      keys.insert(command);
    }
    for (const std::string& key : keys) {
      CHECK_MESSAGE(help.find("\n       " + key + " (") != std::string::npos, key);
    }

    // Defaults as config.h has them.
    const Config d;
    const std::pair<const char*, std::chrono::milliseconds> durations[] = {
        {"AGENTD_LEASE_DURATION_SECONDS", d.lease_duration},
        {"AGENTD_HEARTBEAT_SECONDS", d.heartbeat},
        {"AGENTD_IDLE_HEARTBEAT_SECONDS", d.idle_heartbeat},
        {"AGENTD_CHANGES_SECONDS", d.changes_interval},
        {"AGENTD_FAST_POLL_SECONDS", d.fast_poll},
        {"AGENTD_POLL_SECONDS", d.poll},
        {"AGENTD_CONNECT_TIMEOUT_SECONDS", d.connect_timeout},
        {"AGENTD_HTTP_TIMEOUT_SECONDS", d.http_timeout},
        {"AGENTD_COMMAND_TIMEOUT_SECONDS", d.command_timeout},
    };
    for (const auto& [key, value] : durations) {
      std::string expect = std::string(key) + " (default " + seconds_text(value) + ")";
      CHECK_MESSAGE(help.find(expect) != std::string::npos, expect);
    }
    CHECK(help.find("AGENTD_STATE_DIR (default " + d.state_dir + ")") != std::string::npos);
    CHECK(help.find("AGENTD_MAX_RESPONSE_BYTES (default " + std::to_string(d.max_response_bytes) + ")") !=
          std::string::npos);
    CHECK(help.find("AGENTD_LOG_LEVEL (default info)") != std::string::npos);
    CHECK(d.log_level == Level::info);
    const Flags f;
    CHECK(help.find("(default " + f.config_file + ")") != std::string::npos);
    CHECK(help.find("(default " + f.horizon_file + ")") != std::string::npos);

    for (int status : {exit_ok, exit_failure, exit_usage, exit_config, exit_token, exit_state}) {
      CHECK_MESSAGE(help.find("\n       " + std::to_string(status) + "      ") != std::string::npos, status);
    }
    CHECK(help.find("SIGTERM, SIGINT") != std::string::npos);
  }

  TEST_CASE("the help text's example files load as they are printed") {
    std::string help = help_text();
    // The example block after a "       FILE:" line (one blank line, then lines
    // indented by 11), up to the next blank line.
    auto block = [&](const std::string& title) {
      std::size_t start = help.find("\n       " + title + ":\n\n");
      REQUIRE_MESSAGE(start != std::string::npos, title);
      start = help.find("\n\n", start) + 2;
      std::string out;
      std::istringstream in(help.substr(start));
      for (std::string line; std::getline(in, line) && !line.empty();) {
        REQUIRE(line.rfind("           ", 0) == 0);
        out += line.substr(11) + "\n";
      }
      return out;
    };
    Etc etc;
    etc.horizon(block("/etc/default/horizon"));
    etc.config(block("/etc/agentd/agentd.conf (the package pipeline; keys in trusted.d/)"));
    auto pipeline = etc.load();
    REQUIRE_MESSAGE(pipeline.has_value(), pipeline.error().message);
    CHECK(pipeline->upgrade_method == "packages");
    CHECK(pipeline->health_command == "hzn node list");
    etc.conf_d("50-commands.conf",
               block("/etc/agentd/conf.d/50-commands.conf (the operator's own commands)"));
    auto r = etc.load();
    REQUIRE_MESSAGE(r.has_value(), r.error().message);
    CHECK(r->upgrade_method == "commands");
    CHECK(r->exchange_url == "https://exchange.example.com/api/v1");
    CHECK(r->version_command == "dpkg-query -W -f='${Version}' horizon");
    CHECK(r->install_command == "apt-get install -y --allow-downgrades \"horizon=$AGENTD_TARGET_VERSION\"");
    CHECK_FALSE(r->rollback_command.empty());
  }
}
