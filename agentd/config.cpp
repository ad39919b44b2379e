#include "config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>

#include "env_file.h"

namespace agentd {
namespace {

using std::chrono::milliseconds;

constexpr std::int64_t kMinDurationMs = 1;           // 0.001 s
constexpr std::int64_t kMaxDurationMs = 86'400'000;  // one day
constexpr std::size_t kMinResponseBytes = 1024;
constexpr std::size_t kMaxResponseBytes = 1024 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Values and their checks. Each returns the problem, or nothing when the value is good.

using Problem = std::optional<std::string>;

bool has_space_or_control(std::string_view v) {
  return std::any_of(v.begin(), v.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  });
}

Problem check_url(std::string_view v, bool exchange, std::string& out) {
  if (v.empty()) return "must not be empty";
  if (has_space_or_control(v)) return "'" + std::string(v) + "' contains whitespace or control characters";
  std::string_view rest;
  if (v.starts_with("https://")) {
    rest = v.substr(8);
  } else if (v.starts_with("http://")) {
    rest = v.substr(7);
  } else {
    return "'" + std::string(v) + "' must start with http:// or https://";
  }
  if (rest.empty() || rest.front() == '/') return "'" + std::string(v) + "' has no host";
  std::string url(v);
  while (url.ends_with('/') && url.size() > v.size() - rest.size() + 1) url.pop_back();
  if (exchange && !url.ends_with("/v1")) {
    return "'" + std::string(v) +
           "' must end in /v1 (the Exchange API root, e.g. https://exchange.example.com/api/v1)";
  }
  out = std::move(url);
  return std::nullopt;
}

// Org and node ids go into URL paths and into the Basic-auth user "org/node".
Problem check_id(std::string_view v, std::string& out) {
  if (v.empty()) return "must not be empty";
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '/' || c == ':' || c == '?' || c == '#' || c == '%') {
      return "'" + std::string(v) + "' must not contain whitespace, control characters or any of / : ? # %";
    }
  }
  out = std::string(v);
  return std::nullopt;
}

Problem check_absolute_path(std::string_view v, std::string& out) {
  if (v.empty()) return "must not be empty";
  if (v.front() != '/') return "'" + std::string(v) + "' must be an absolute path";
  if (std::any_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    return "path contains control characters";
  }
  out = std::string(v);
  return std::nullopt;
}

// Decimal seconds with up to three fraction digits: "120", "0.25", "1.5".
Problem check_duration(std::string_view v, milliseconds& out) {
  const std::string shown = "'" + std::string(v) + "'";
  if (v.empty()) return "must not be empty (seconds, e.g. 20 or 0.25)";
  std::size_t dot = v.find('.');
  std::string_view whole = v.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view{} : v.substr(dot + 1);
  auto all_digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || !all_digits(whole) || !all_digits(frac) ||
      (dot != std::string_view::npos && frac.empty())) {
    return shown + " is not a number of seconds (e.g. 20 or 0.25)";
  }
  if (frac.size() > 3) return shown + " has more than 3 decimal places (the resolution is 1 ms)";
  std::size_t first = whole.find_first_not_of('0');
  if (first != std::string_view::npos && whole.size() - first > 6) {
    return shown + " must be at most 86400 seconds";
  }
  std::int64_t ms = 0;
  for (char c : whole) ms = ms * 10 + (c - '0');
  ms *= 1000;
  std::int64_t scale = 100;
  for (char c : frac) {
    ms += (c - '0') * scale;
    scale /= 10;
  }
  if (ms < kMinDurationMs) return shown + " must be positive (at least 0.001 seconds)";
  if (ms > kMaxDurationMs) return shown + " must be at most 86400 seconds";
  out = milliseconds{ms};
  return std::nullopt;
}

Problem check_level(std::string_view v, Level& out) {
  if (v == "debug")
    out = Level::debug;
  else if (v == "info")
    out = Level::info;
  else if (v == "warn")
    out = Level::warn;
  else if (v == "error")
    out = Level::error;
  else
    return "'" + std::string(v) + "' must be one of debug, info, warn, error";
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// The keys. Setters validate and store one value into Config.

using Setter = Problem (*)(Config&, std::string_view);

template <auto Member>
Problem set_duration(Config& c, std::string_view v) {
  return check_duration(v, c.*Member);
}

template <auto Member>
Problem set_required_text(Config& c, std::string_view v) {
  if (v.empty()) return "must not be empty";
  c.*Member = std::string(v);
  return std::nullopt;
}

template <auto Member>
Problem set_optional_text(Config& c, std::string_view v) {
  c.*Member = std::string(v);
  return std::nullopt;
}

Problem set_exchange_url(Config& c, std::string_view v) {
  return check_url(v, true, c.exchange_url);
}
Problem set_css_url(Config& c, std::string_view v) {
  if (v.empty()) {
    c.css_url.clear();
    return std::nullopt;
  }
  return check_url(v, false, c.css_url);
}
Problem set_org(Config& c, std::string_view v) {
  return check_id(v, c.org);
}
Problem set_node(Config& c, std::string_view v) {
  return check_id(v, c.node_id);
}
Problem set_ca_file(Config& c, std::string_view v) {
  if (v.empty()) {
    c.ca_file.clear();
    return std::nullopt;
  }
  struct stat st {};
  std::string path(v);
  if (::stat(path.c_str(), &st) != 0) return "'" + path + "': " + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "'" + path + "' is not a regular file";
  if (::access(path.c_str(), R_OK) != 0) return "'" + path + "' is not readable: " + std::strerror(errno);
  c.ca_file = path;
  return std::nullopt;
}
Problem set_token_file(Config& c, std::string_view v) {
  return check_absolute_path(v, c.token_file);
}
Problem set_state_dir(Config& c, std::string_view v) {
  return check_absolute_path(v, c.state_dir);
}
// Empty turns the metrics file off.
Problem set_metrics_dir(Config& c, std::string_view v) {
  if (v.empty()) {
    c.metrics_dir.clear();
    return std::nullopt;
  }
  return check_absolute_path(v, c.metrics_dir);
}
Problem set_log_level(Config& c, std::string_view v) {
  return check_level(v, c.log_level);
}
// A whole number of at most `digits` digits within [min, max]; `unit` and
// `example` word the problem ("bytes", "4194304").
Problem check_count(std::string_view v, std::size_t digits, std::uint64_t min, std::uint64_t max,
                    std::string_view unit, std::string_view example, std::string_view range,
                    std::uint64_t& out) {
  const std::string shown = "'" + std::string(v) + "'";
  if (v.empty() || v.size() > digits ||
      !std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return shown + " is not a number of " + std::string(unit) + " (e.g. " + std::string(example) + ")";
  std::uint64_t n = std::stoull(std::string(v));
  if (n < min || n > max) return shown + " must be between " + std::string(range);
  out = n;
  return std::nullopt;
}

Problem set_max_response(Config& c, std::string_view v) {
  std::uint64_t n = 0;
  if (Problem p = check_count(v, 12, kMinResponseBytes, kMaxResponseBytes, "bytes", "4194304",
                              "1024 and 1073741824 bytes", n))
    return p;
  c.max_response_bytes = static_cast<std::size_t>(n);
  return std::nullopt;
}

Problem set_upgrade_method(Config& c, std::string_view v) {
  if (v != "packages" && v != "commands") return "'" + std::string(v) + "' must be packages or commands";
  c.upgrade_method = std::string(v);
  return std::nullopt;
}
Problem set_anax(Config& c, std::string_view v) {
  if (v != "auto" && v != "on" && v != "off") return "'" + std::string(v) + "' must be auto, on or off";
  c.anax = std::string(v);
  return std::nullopt;
}
Problem set_agent_port(Config& c, std::string_view v) {
  std::uint64_t port = 0;
  if (Problem p = check_count(v, 5, 1, 65535, "port", "8510", "1 and 65535", port)) return p;
  c.anax_url = "http://localhost:" + std::to_string(port);
  return std::nullopt;
}
Problem set_package_system(Config& c, std::string_view v) {
  if (v != "auto" && v != "deb" && v != "rpm" && v != "tarball")
    return "'" + std::string(v) + "' must be one of auto, deb, rpm, tarball";
  c.package_system = std::string(v);
  return std::nullopt;
}
// Package and unit names go into command lines as single arguments; still, only
// the characters their package systems allow are accepted.
bool name_chars_ok(std::string_view v, std::string_view extra) {
  return !v.empty() && v.size() <= 128 && v.front() != '-' && std::all_of(v.begin(), v.end(), [&](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           extra.find(ch) != std::string_view::npos;
  });
}
Problem set_package_name(Config& c, std::string_view v) {
  if (!name_chars_ok(v, "+-._")) return "'" + std::string(v) + "' is not a package name";
  c.agent_package = std::string(v);
  return std::nullopt;
}
Problem set_agent_unit(Config& c, std::string_view v) {
  if (!v.empty() && !name_chars_ok(v, "-._@:\\"))
    return "'" + std::string(v) + "' is not a systemd unit name";
  c.agent_unit = std::string(v);
  if (!v.empty() && v.find('.') == std::string_view::npos) c.agent_unit += ".service";
  return std::nullopt;
}
Problem set_arch(Config& c, std::string_view v) {
  if (!name_chars_ok(v, "-_")) return "'" + std::string(v) + "' is not an architecture name (e.g. arm64)";
  c.arch = std::string(v);
  return std::nullopt;
}
Problem set_install_root(Config& c, std::string_view v) {
  return check_absolute_path(v, c.install_root);
}
Problem set_trusted_keys_dir(Config& c, std::string_view v) {
  return check_absolute_path(v, c.trusted_keys_dir);
}
template <auto Member>
Problem set_bool(Config& c, std::string_view v) {
  if (v == "true" || v == "yes" || v == "1") {
    c.*Member = true;
  } else if (v == "false" || v == "no" || v == "0") {
    c.*Member = false;
  } else {
    return "'" + std::string(v) + "' must be true or false";
  }
  return std::nullopt;
}
Problem set_max_download(Config& c, std::string_view v) {
  return check_count(v, 13, 1024, 1ull << 40, "bytes", "1073741824", "1024 bytes and 1 TiB",
                     c.max_download_bytes);
}
Problem set_download_attempts(Config& c, std::string_view v) {
  std::uint64_t n = 0;
  if (Problem p = check_count(v, 3, 1, 100, "attempts", "5", "1 and 100", n)) return p;
  c.download_attempts = static_cast<int>(n);
  return std::nullopt;
}

struct KeySpec {
  std::string_view name;
  Setter set;
  bool required;
};

// Order here is the order of validation messages.
constexpr KeySpec kKeys[] = {
    {"HZN_EXCHANGE_URL", &set_exchange_url, true},
    {"HZN_FSS_CSSURL", &set_css_url, false},
    {"HZN_ORG_ID", &set_org, true},
    {"HZN_DEVICE_ID", &set_node, true},
    {"HZN_MGMT_HUB_CERT_PATH", &set_ca_file, false},
    {"HZN_AGENT_PORT", &set_agent_port, false},
    {"AGENTD_TOKEN_FILE", &set_token_file, true},
    {"AGENTD_STATE_DIR", &set_state_dir, false},
    {"AGENTD_METRICS_DIR", &set_metrics_dir, false},
    {"AGENTD_LEASE_DURATION_SECONDS", &set_duration<&Config::lease_duration>, false},
    {"AGENTD_HEARTBEAT_SECONDS", &set_duration<&Config::heartbeat>, false},
    {"AGENTD_IDLE_HEARTBEAT_SECONDS", &set_duration<&Config::idle_heartbeat>, false},
    {"AGENTD_CHANGES_SECONDS", &set_duration<&Config::changes_interval>, false},
    {"AGENTD_FAST_POLL_SECONDS", &set_duration<&Config::fast_poll>, false},
    {"AGENTD_POLL_SECONDS", &set_duration<&Config::poll>, false},
    {"AGENTD_CONNECT_TIMEOUT_SECONDS", &set_duration<&Config::connect_timeout>, false},
    {"AGENTD_HTTP_TIMEOUT_SECONDS", &set_duration<&Config::http_timeout>, false},
    {"AGENTD_MAX_RESPONSE_BYTES", &set_max_response, false},
    {"AGENTD_ALLOW_INSECURE_HTTP", &set_bool<&Config::allow_insecure_http>, false},
    {"AGENTD_TRUST_SYSTEM_CAS", &set_bool<&Config::trust_system_cas>, false},
    {"AGENTD_LOG_LEVEL", &set_log_level, false},
    {"AGENTD_UPGRADE_METHOD", &set_upgrade_method, false},
    {"AGENTD_ANAX", &set_anax, false},
    {"AGENTD_PACKAGE_SYSTEM", &set_package_system, false},
    {"AGENTD_AGENT_PACKAGE", &set_package_name, false},
    {"AGENTD_AGENT_UNIT", &set_agent_unit, false},
    {"AGENTD_INSTALL_ROOT", &set_install_root, false},
    {"AGENTD_ARCH", &set_arch, false},
    {"AGENTD_TRUSTED_KEYS_DIR", &set_trusted_keys_dir, false},
    {"AGENTD_ALLOW_UNSIGNED_MANIFEST", &set_bool<&Config::allow_unsigned_manifest>, false},
    {"AGENTD_ALLOW_DOWNGRADE", &set_bool<&Config::allow_downgrade>, false},
    {"AGENTD_DOWNLOAD_TIMEOUT_SECONDS", &set_duration<&Config::download_timeout>, false},
    {"AGENTD_MAX_DOWNLOAD_BYTES", &set_max_download, false},
    {"AGENTD_DOWNLOAD_ATTEMPTS", &set_download_attempts, false},
    {"AGENTD_HEALTH_TIMEOUT_SECONDS", &set_duration<&Config::health_timeout>, false},
    {"AGENTD_INSTALL_TIMEOUT_SECONDS", &set_duration<&Config::install_timeout>, false},
    {"AGENTD_VERSION_COMMAND", &set_optional_text<&Config::version_command>, false},
    {"AGENTD_PREPARE_COMMAND", &set_optional_text<&Config::prepare_command>, false},
    {"AGENTD_INSTALL_COMMAND", &set_optional_text<&Config::install_command>, false},
    {"AGENTD_RESTART_COMMAND", &set_optional_text<&Config::restart_command>, false},
    {"AGENTD_HEALTH_COMMAND", &set_optional_text<&Config::health_command>, false},
    {"AGENTD_ROLLBACK_COMMAND", &set_optional_text<&Config::rollback_command>, false},
    {"AGENTD_COMMAND_TIMEOUT_SECONDS", &set_duration<&Config::command_timeout>, false},
};

const KeySpec* find_key(std::string_view name) {
  for (const KeySpec& k : kKeys) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string unknown_key_problem(std::string_view name) {
  std::string problem = "unknown key";
  const KeySpec* best = nullptr;
  std::size_t best_distance = 4;  // suggest only near misses
  for (const KeySpec& k : kKeys) {
    std::size_t d = edit_distance(name, k.name);
    if (d < best_distance) {
      best_distance = d;
      best = &k;
    }
  }
  if (best != nullptr) problem += " (did you mean " + std::string(best->name) + "?)";
  return problem;
}

// ---------------------------------------------------------------------------
// Collecting settings from files, the environment and flags; later sources win.

struct Setting {
  std::string value;
  std::string origin;  // "FILE:LINE", "environment" or "--flag"
};

struct Collected {
  std::map<std::string, Setting, std::less<>> settings;
  std::vector<std::string> errors;
  std::vector<std::string> sources;
};

// "FILE:LINE: KEY: problem", "environment: KEY: problem", "--flag: problem",
// "KEY (default): problem".
std::string located(const Setting& s, std::string_view key, std::string_view problem) {
  if (s.origin.starts_with("--")) return s.origin + ": " + std::string(problem);
  if (s.origin == "default") return std::string(key) + " (default): " + std::string(problem);
  return s.origin + ": " + std::string(key) + ": " + std::string(problem);
}

void read_settings_file(const std::string& path, bool missing_ok, Collected& c) {
  auto text = read_env_file(path);
  if (!text) {
    if (text.error().code == Errc::not_found && missing_ok) return;
    c.errors.push_back(text.error().message);
    return;
  }
  c.sources.push_back(path);
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text->size()) {
    std::size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    std::string_view line(text->data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    std::string where = path + ":" + std::to_string(line_no);
    auto parsed = parse_env_line(line);
    if (!parsed) {
      c.errors.push_back(where + ": " + parsed.error().message);
      continue;
    }
    if (parsed->key.empty()) continue;
    if (find_key(parsed->key) != nullptr) {
      c.settings[parsed->key] = Setting{std::move(parsed->value), where};
    } else if (parsed->key.starts_with("AGENTD_")) {
      // A misspelt AGENTD_ key would otherwise silently leave its default in force.
      c.errors.push_back(where + ": " + parsed->key + ": " + unknown_key_problem(parsed->key));
    }
    // Other keys (the agent's own HZN_* settings, anything else) are not ours.
  }
}

void read_conf_d(const std::filesystem::path& dir, Collected& c) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st)) return;  // no conf.d is fine
  if (!fs::is_directory(st)) {
    c.errors.push_back(dir.string() + ": not a directory");
    return;
  }
  std::vector<std::string> names;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    c.errors.push_back(dir.string() + ": cannot list: " + ec.message());
    return;
  }
  for (const fs::directory_entry& e : it) {
    std::string name = e.path().filename().string();
    if (name.starts_with('.') || !name.ends_with(".conf") || name.size() == 5) continue;
    std::error_code type_ec;
    if (fs::is_directory(e.status(type_ec))) continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());  // byte order, as the shell's glob in the C locale
  for (const std::string& name : names) read_settings_file((dir / name).string(), false, c);
}

std::string ms_text(milliseconds d) {
  std::string s = std::to_string(d.count() / 1000);
  if (auto frac = d.count() % 1000; frac != 0) {
    char buf[8];
    std::snprintf(buf, sizeof buf, ".%03lld", static_cast<long long>(frac));
    std::string f(buf);
    while (f.ends_with('0')) f.pop_back();
    s += f;
  }
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------

Result<Config> load_config(const Flags& flags, const std::map<std::string, std::string>& env) {
  const Flags defaults;
  Collected c;
  // A default path may be absent (the environment can carry everything); a file
  // named on the command line must exist.
  read_settings_file(flags.horizon_file, flags.horizon_file == defaults.horizon_file, c);
  read_settings_file(flags.config_file, flags.config_file == defaults.config_file, c);
  std::filesystem::path config_dir = std::filesystem::path(flags.config_file).parent_path();
  if (config_dir.empty()) config_dir = ".";
  read_conf_d(config_dir / "conf.d", c);

  for (const KeySpec& k : kKeys) {
    if (auto it = env.find(std::string(k.name)); it != env.end()) {
      c.settings[std::string(k.name)] = Setting{it->second, "environment"};
    }
  }
  if (flags.state_dir) c.settings["AGENTD_STATE_DIR"] = Setting{*flags.state_dir, "--state-dir"};
  if (flags.log_level) c.settings["AGENTD_LOG_LEVEL"] = Setting{*flags.log_level, "--log-level"};

  Config cfg;
  std::map<std::string_view, bool> valid;  // key -> set and valid (for the cross-key rules)
  for (const KeySpec& k : kKeys) {
    auto it = c.settings.find(k.name);
    if (it == c.settings.end()) {
      if (k.required) {
        std::string where = k.name.starts_with("HZN_") ? flags.horizon_file : flags.config_file;
        c.errors.push_back(std::string(k.name) + ": required but not set (set it in " + where +
                           " or the environment)");
      } else {
        valid[k.name] = true;  // the default
      }
      continue;
    }
    if (Problem p = k.set(cfg, it->second.value)) {
      c.errors.push_back(located(it->second, k.name, *p));
    } else {
      valid[k.name] = true;
    }
  }

  // Cross-key rules. protocol.md §4.4: the holder renews every lease/3, so waiting
  // members must poll faster than that; protocol.md §5: heartbeats within a lease.
  auto origin_of = [&](std::string_view key) -> std::string {
    auto it = c.settings.find(key);
    return it == c.settings.end() ? "default" : it->second.origin;
  };
  auto blame = [&](std::string_view key, const std::string& problem) {
    auto it = c.settings.find(key);
    Setting s = it == c.settings.end() ? Setting{"", "default"} : it->second;
    c.errors.push_back(located(s, key, problem));
  };
  if (valid["AGENTD_LEASE_DURATION_SECONDS"] && valid["AGENTD_FAST_POLL_SECONDS"] &&
      cfg.fast_poll * 3 >= cfg.lease_duration) {
    blame("AGENTD_FAST_POLL_SECONDS",
          ms_text(cfg.fast_poll) + " must be less than AGENTD_LEASE_DURATION_SECONDS / 3 (" +
              ms_text(cfg.lease_duration) + " / 3, from " + origin_of("AGENTD_LEASE_DURATION_SECONDS") +
              "): a waiting member must see each lease renewal");
  }
  if (valid["AGENTD_LEASE_DURATION_SECONDS"] && valid["AGENTD_HEARTBEAT_SECONDS"] &&
      cfg.heartbeat >= cfg.lease_duration) {
    blame("AGENTD_HEARTBEAT_SECONDS",
          ms_text(cfg.heartbeat) + " must be less than AGENTD_LEASE_DURATION_SECONDS (" +
              ms_text(cfg.lease_duration) + ", from " + origin_of("AGENTD_LEASE_DURATION_SECONDS") + ")");
  }

  // exchange-api.md §1.5: the node token goes out with every request, so plain
  // http:// is only for the same machine unless the operator says otherwise.
  for (auto [key, url] :
       {std::pair<std::string_view, const std::string*>{"HZN_EXCHANGE_URL", &cfg.exchange_url},
        {"HZN_FSS_CSSURL", &cfg.css_url}}) {
    if (!valid[key] || !url->starts_with("http://") || is_loopback_url(*url)) continue;
    if (!cfg.allow_insecure_http) {
      blame(key,
            "'" + *url +
                "' is plain http:// to another machine: the node token would cross the network in clear; "
                "use https:// (or set AGENTD_ALLOW_INSECURE_HTTP=true)");
    } else {
      cfg.warnings.push_back(
          std::string(key) + "=" + *url +
          ": plain http:// to another machine, allowed by AGENTD_ALLOW_INSECURE_HTTP (from " +
          origin_of("AGENTD_ALLOW_INSECURE_HTTP") + "): the node token crosses the network in clear");
    }
  }
  if (cfg.allow_downgrade)
    cfg.warnings.push_back("AGENTD_ALLOW_DOWNGRADE=true (from " + origin_of("AGENTD_ALLOW_DOWNGRADE") +
                           "): a hub may move this node to a version older than it ever ran");
  if (cfg.allow_unsigned_manifest)
    cfg.warnings.push_back("AGENTD_ALLOW_UNSIGNED_MANIFEST=true (from " +
                           origin_of("AGENTD_ALLOW_UNSIGNED_MANIFEST") +
                           "): an upgrade manifest without a signature is accepted");

  // The commands method runs only the operator's commands: it needs the two
  // that have no default.
  if (cfg.upgrade_method == "commands") {
    for (std::string_view key : {"AGENTD_VERSION_COMMAND", "AGENTD_INSTALL_COMMAND"}) {
      auto it = c.settings.find(key);
      if (it == c.settings.end() || it->second.value.empty())
        c.errors.push_back(std::string(key) + ": required when AGENTD_UPGRADE_METHOD=commands (from " +
                           origin_of("AGENTD_UPGRADE_METHOD") + ")");
    }
  }

  if (!c.errors.empty()) {
    std::string message;
    for (const std::string& e : c.errors) {
      if (!message.empty()) message += '\n';
      message += e;
    }
    return fail(Errc::config, message);
  }
  cfg.sources = std::move(c.sources);
  return cfg;
}

std::chrono::milliseconds hub_call_budget(const Config& c) {
  const milliseconds afford = std::min(c.heartbeat, c.lease_duration / 3) / 2;
  return std::min(c.http_timeout, std::max(afford, milliseconds{1000}));
}

bool is_loopback_url(std::string_view url) {
  std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view host = url.substr(scheme + 3);
  host = host.substr(0, host.find_first_of("/?#"));
  if (auto at = host.rfind('@'); at != std::string_view::npos) host = host.substr(at + 1);
  if (host.starts_with('[')) return host == "[::1]" || host.starts_with("[::1]:");
  host = host.substr(0, host.find(':'));
  if (host == "localhost") return true;
  // 127.0.0.0/8 in dotted decimal, four parts of 0..255.
  if (!host.starts_with("127.")) return false;
  int parts = 0;
  for (std::size_t i = 0; i <= host.size();) {
    std::size_t dot = std::min(host.find('.', i), host.size());
    std::string_view p = host.substr(i, dot - i);
    if (p.empty() || p.size() > 3 ||
        !std::all_of(p.begin(), p.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) ||
        std::stoi(std::string(p)) > 255)
      return false;
    ++parts;
    i = dot + 1;
  }
  return parts == 4;
}

}  // namespace agentd
