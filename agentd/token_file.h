// The node token file (AGENTD_TOKEN_FILE): one line, readable by agentd alone.
#pragma once

#include <string>

#include "result.h"

namespace agentd {

// Reads the node token; Errc::config for unreadable/empty, and refuses a file that
// group or others can read (mode must be 0600 or stricter), that is not a regular
// file, or that is owned by someone other than root or the user agentd runs as.
Result<std::string> read_token_file(const std::string& path);

}  // namespace agentd
