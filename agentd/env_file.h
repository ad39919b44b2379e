// The KEY=VALUE files agentd reads its settings from (/etc/default/horizon,
// agentd.conf, conf.d/*.conf): shell-style lines, read without a shell.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "result.h"

namespace agentd {

// Largest settings file read; a bigger one is refused.
inline constexpr std::size_t kMaxEnvFileBytes = 1024 * 1024;

struct EnvLine {
  std::string key;  // empty for blank and comment lines
  std::string value;
};

// One line: KEY=VALUE, optional "export ", the value '...' (literal), "..."
// (\" \\ \$ \` escapes) or unquoted (the rest of the line), then an optional
// " # comment". Nothing is expanded, so a command can name $AGENTD_TARGET_VERSION
// for its own shell to expand. Errc::config "problem" or "KEY: problem" otherwise.
Result<EnvLine> parse_env_line(std::string_view raw);

// The text of a settings file: a regular file of at most kMaxEnvFileBytes.
// A missing file is Errc::not_found; other failures are Errc::config
// "PATH: problem".
Result<std::string> read_env_file(const std::string& path);

}  // namespace agentd
