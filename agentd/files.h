// Small file helpers shared by the daemon, the state file and the stand-in.
#pragma once

#include <cstddef>
#include <string>

#include "result.h"

namespace agentd {

// Writes `content` to a temporary file beside `path`, fsyncs it, renames it over
// `path` and fsyncs the directory: after a crash the file is either old or new.
// `mode` applies to the new file. A full disk is an Errc::io error and leaves
// the old file untouched. The temporary file is created with O_EXCL|O_NOFOLLOW
// (a leftover one is removed first): a symlink planted there is never followed.
Status write_file_atomic(const std::string& path, const std::string& content, unsigned mode = 0600);

// Reads a whole file, refusing one larger than `max_bytes` (Errc::too_large).
// A missing file is Errc::not_found.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes);

// Reads an open descriptor to its end, refusing more than `max_bytes`
// (Errc::too_large). A read error is Errc::io whose message is strerror's text
// alone, for the caller to place beside its path.
Result<std::string> read_all(int fd, std::size_t max_bytes);

// A directory only agentd may change: it exists, is a directory (not a
// symlink), is owned by the user agentd runs as and is not writable by group
// or others. Errc::io naming the problem and the fix otherwise.
Status check_private_dir(const std::string& path);

// Appends one line (a '\n' is added) with O_APPEND and fsync-free write(2).
Status append_line(const std::string& path, const std::string& line);

}  // namespace agentd
