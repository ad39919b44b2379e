#include "flags.h"

#include <string_view>

namespace agentd {
namespace {

constexpr std::string_view kUsage =
    "usage: agentd [--config FILE] [--horizon-file FILE] [--state-dir DIR]\n"
    "              [--log-level debug|info|warn|error] [--check-config]\n"
    "       agentd --help | --version";

}  // namespace

Result<Flags> parse_flags(int argc, const char* const* argv) {
  Flags flags;
  auto usage_error = [](const std::string& problem) {
    return fail(Errc::config, problem + "\n" + std::string(kUsage));
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::optional<std::string> inline_value;
    if (arg.starts_with("--")) {
      if (std::size_t eq = arg.find('='); eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        inline_value = std::string(arg.substr(eq + 1));
      }
    }
    auto take_value = [&]() -> Result<std::string> {
      std::string value;
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return usage_error("option " + std::string(name) + " needs a value");
      }
      if (value.empty()) return usage_error("option " + std::string(name) + " needs a non-empty value");
      return value;
    };
    auto no_value = [&](bool& target) -> Status {
      if (inline_value) return usage_error("option " + std::string(name) + " takes no value");
      target = true;
      return {};
    };
    Status ok;
    if (name == "--config") {
      auto v = take_value();
      if (!v) return std::unexpected(v.error());
      flags.config_file = *v;
    } else if (name == "--horizon-file") {
      auto v = take_value();
      if (!v) return std::unexpected(v.error());
      flags.horizon_file = *v;
    } else if (name == "--state-dir") {
      auto v = take_value();
      if (!v) return std::unexpected(v.error());
      flags.state_dir = *v;
    } else if (name == "--log-level") {
      auto v = take_value();
      if (!v) return std::unexpected(v.error());
      flags.log_level = *v;
    } else if (name == "--check-config") {
      ok = no_value(flags.check_config);
    } else if (name == "--help" || name == "-h") {
      ok = no_value(flags.help);
    } else if (name == "--version" || name == "-V") {
      ok = no_value(flags.version);
    } else if (name.starts_with("-")) {
      return usage_error("unknown option '" + std::string(arg) + "'");
    } else {
      return usage_error("unexpected argument '" + std::string(arg) + "'");
    }
    if (!ok) return std::unexpected(ok.error());
  }
  return flags;
}

std::map<std::string, std::string> environment_map(char** envp) {
  std::map<std::string, std::string> out;
  for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::size_t eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    out.emplace(std::string(entry.substr(0, eq)),
                std::string(entry.substr(eq + 1)));  // first wins, as getenv
  }
  return out;
}

const char* help_text() {
  // agentd(8), formatted at build time (packaging/help-from-man.cmake).
  static constexpr const char kHelp[] =
#include "agentd/help_text.inc"
      ;
  return kHelp;
}

}  // namespace agentd
