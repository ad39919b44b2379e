#include "env_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "fd.h"
#include "files.h"

namespace agentd {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_key_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool is_key_char(char c) {
  return is_key_start(c) || (c >= '0' && c <= '9');
}

}  // namespace

Result<EnvLine> parse_env_line(std::string_view raw) {
  std::string_view s = trim(raw);
  if (s.empty() || s.front() == '#') return EnvLine{};
  if (s.starts_with("export") && s.size() > 6 && (s[6] == ' ' || s[6] == '\t')) s = trim(s.substr(6));
  std::size_t k = 0;
  if (s.empty() || !is_key_start(s[0])) return fail(Errc::config, "expected KEY=VALUE");
  while (k < s.size() && is_key_char(s[k])) ++k;
  EnvLine out;
  out.key = std::string(s.substr(0, k));
  std::string_view rest = trim(s.substr(k));
  if (rest.empty() || rest.front() != '=') return fail(Errc::config, "expected KEY=VALUE");
  rest = trim(rest.substr(1));
  auto key_problem = [&](std::string_view p) { return fail(Errc::config, out.key + ": " + std::string(p)); };

  auto after_quote = [&](std::string_view tail) -> Status {
    tail = trim(tail);
    if (!tail.empty() && tail.front() != '#') {
      return key_problem("unexpected text after the closing quote: '" + std::string(tail) + "'");
    }
    return {};
  };
  if (!rest.empty() && rest.front() == '\'') {
    std::size_t end = rest.find('\'', 1);
    if (end == std::string_view::npos) return key_problem("unterminated single quote");
    out.value = std::string(rest.substr(1, end - 1));
    if (auto ok = after_quote(rest.substr(end + 1)); !ok) return std::unexpected(ok.error());
    return out;
  }
  if (!rest.empty() && rest.front() == '"') {
    std::size_t i = 1;
    for (; i < rest.size() && rest[i] != '"'; ++i) {
      char c = rest[i];
      if (c == '\\' && i + 1 < rest.size() &&
          (rest[i + 1] == '"' || rest[i + 1] == '\\' || rest[i + 1] == '$' || rest[i + 1] == '`')) {
        out.value += rest[++i];
      } else {
        out.value += c;
      }
    }
    if (i >= rest.size()) return key_problem("unterminated double quote");
    if (auto ok = after_quote(rest.substr(i + 1)); !ok) return std::unexpected(ok.error());
    return out;
  }
  // Unquoted: the rest of the line as written, spaces and quotes included, so
  // "AGENTD_INSTALL_COMMAND=/usr/bin/install-agent --yes" works unquoted.
  std::size_t end = rest.size();
  for (std::size_t i = 1; i < rest.size(); ++i) {
    if (rest[i] == '#' && (rest[i - 1] == ' ' || rest[i - 1] == '\t')) {
      end = i;
      break;
    }
  }
  out.value = std::string(trim(rest.substr(0, end)));
  return out;
}

Result<std::string> read_env_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused below).
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) {
    int err = errno;
    return fail(err == ENOENT ? Errc::not_found : Errc::config,
                path + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(Errc::config, path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(Errc::config, path + ": not a regular file");
  auto text = read_all(fd.get(), kMaxEnvFileBytes);
  if (!text && text.error().code == Errc::too_large)
    return fail(Errc::config, path + ": larger than " + std::to_string(kMaxEnvFileBytes) + " bytes");
  if (!text) return fail(Errc::config, path + ": cannot read: " + text.error().message);
  return text;
}

}  // namespace agentd
