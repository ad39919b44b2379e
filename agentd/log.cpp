#include "log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

namespace agentd {
namespace {

const char* level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

// syslog(3) priorities, as journald expects in PRIORITY=.
const char* level_priority(Level l) {
  switch (l) {
    case Level::debug: return "7";
    case Level::info: return "6";
    case Level::warn: return "4";
    case Level::error: return "3";
  }
  return "6";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v) {
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\x";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// Writes all of `s` with as few write(2) calls as the kernel allows, so lines from
// several threads do not interleave mid-line.
void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a logging failure
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

class StderrLogger final : public Logger {
 public:
  explicit StderrLogger(Level min_level) : min_level_(min_level) {}
  void log(Level level, std::string_view event, std::initializer_list<Field> fields) override {
    if (level < min_level_) return;
    std::string line = format_line(level, event, fields);
    line += '\n';
    write_all(STDERR_FILENO, line);
  }

 private:
  Level min_level_;
};

// journald field names: upper-case letters, digits and '_', not starting with a digit.
std::string journal_field_name(std::string_view key) {
  std::string name = "AGENTD_";
  for (char c : key) {
    if (c >= 'a' && c <= 'z') {
      name += static_cast<char>(c - 'a' + 'A');
    } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      name += c;
    } else {
      name += '_';
    }
  }
  return name;
}

class JournalLogger final : public Logger {
 public:
  explicit JournalLogger(Level min_level) : min_level_(min_level) {}
  void log(Level level, std::string_view event, std::initializer_list<Field> fields) override {
    if (level < min_level_) return;
    std::vector<std::string> items;
    items.reserve(fields.size() + 4);
    items.push_back("MESSAGE=" + format_line(level, event, fields));
    items.push_back(std::string("PRIORITY=") + level_priority(level));
    items.push_back("SYSLOG_IDENTIFIER=agentd");
    items.push_back("AGENTD_EVENT=" + std::string(event));
    for (const Field& f : fields) items.push_back(journal_field_name(f.key) + "=" + f.value);
    // journald takes binary-safe values (newlines included) through sendv's iovecs.
    std::vector<iovec> iov;
    iov.reserve(items.size());
    for (std::string& s : items) iov.push_back(iovec{s.data(), s.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
      // Sending failed (journald overloaded or restarting): keep the line on stderr.
      // (A missing journal socket is not reported by sd_journal_sendv.)
      std::string line = items.front().substr(8) + "\n";
      write_all(STDERR_FILENO, line);
    }
  }

 private:
  Level min_level_;
};

}  // namespace

std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields) {
  std::string out = "level=";
  out += level_name(level);
  out += " event=";
  append_value(out, event);
  for (const Field& f : fields) {
    out += ' ';
    out += f.key;
    out += '=';
    append_value(out, f.value);
  }
  return out;
}

std::unique_ptr<Logger> make_logger(Level min_level, bool journal) {
  if (journal) return std::make_unique<JournalLogger>(min_level);
  return std::make_unique<StderrLogger>(min_level);
}

// sd_journal_stream_fd(3) / systemd.exec(5): $JOURNAL_STREAM is "DEV:INODE" of the
// stream that fd 1/2 were connected to; compare with what fd 2 is now.
bool stderr_is_journal() {
  const char* v = std::getenv("JOURNAL_STREAM");
  if (v == nullptr || *v == '\0') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long dev = std::strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != ':') return false;
  const char* ino_text = end + 1;
  unsigned long long ino = std::strtoull(ino_text, &end, 10);
  if (errno != 0 || end == ino_text || *end != '\0') return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace agentd
