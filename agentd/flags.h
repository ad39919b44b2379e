// agentd's command line and environment, the last two sources of configuration
// (config.h), and --help.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "result.h"

namespace agentd {

struct Flags {
  std::string config_file = "/etc/agentd/agentd.conf";  // --config; conf.d is beside it
  std::string horizon_file = "/etc/default/horizon";    // --horizon-file
  std::optional<std::string> state_dir;                 // --state-dir
  std::optional<std::string> log_level;                 // --log-level
  bool check_config = false;                            // --check-config: validate and exit
  bool help = false;
  bool version = false;
};

// Parses argv; Errc::config with a usage message on an unknown or malformed flag.
Result<Flags> parse_flags(int argc, const char* const* argv);

std::map<std::string, std::string> environment_map(char** envp);

const char* help_text();  // man-page quality --help

}  // namespace agentd
