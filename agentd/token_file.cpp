#include "token_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fd.h"
#include "files.h"

namespace agentd {
namespace {
constexpr std::size_t kMaxTokenBytes = 64 * 1024;
}  // namespace

Result<std::string> read_token_file(const std::string& path) {
  if (path.empty()) return fail(Errc::config, "AGENTD_TOKEN_FILE: not set");
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    int err = errno;
    return fail(Errc::config, path + ": cannot open the token file: " + std::strerror(err));
  }
  // fstat on the open descriptor: what we check is what we read.
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(Errc::config, path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(Errc::config, path + ": the token file is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(Errc::config,
                path + ": mode " + mode +
                    " lets group or others read the token; it must be 0600 or stricter: chmod 600 " + path);
  }
  // Anyone else owning the file could replace the token (or chmod it open later).
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return fail(Errc::config, path + ": owned by uid " + std::to_string(st.st_uid) +
                                  ", neither root nor the user agentd runs as (uid " +
                                  std::to_string(::geteuid()) + "): chown it");
  auto read = read_all(fd.get(), kMaxTokenBytes);
  if (!read && read.error().code == Errc::too_large)
    return fail(Errc::config, path + ": the token file is too large");
  if (!read) return fail(Errc::config, path + ": cannot read the token file: " + read.error().message);
  std::string token = std::move(*read);
  if (token.ends_with('\n')) token.pop_back();
  if (token.ends_with('\r')) token.pop_back();
  if (token.empty()) return fail(Errc::config, path + ": the token file is empty");
  if (std::any_of(token.begin(), token.end(), [](char ch) {
        auto u = static_cast<unsigned char>(ch);
        return u < 0x20 || u == 0x7f;
      })) {
    return fail(Errc::config, path + ": the token contains control characters or more than one line");
  }
  return token;
}

}  // namespace agentd
