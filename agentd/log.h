// Structured logs: one line per event with key=value fields (style.md "Logs");
// to journald with AGENTD_* fields when stderr is the journal, else to stderr.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace agentd {

enum class Level { debug, info, warn, error };

struct Field {
  std::string_view key;
  std::string value;
};

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log(Level level, std::string_view event, std::initializer_list<Field> fields) = 0;
  void debug(std::string_view e, std::initializer_list<Field> f = {}) { log(Level::debug, e, f); }
  void info(std::string_view e, std::initializer_list<Field> f = {}) { log(Level::info, e, f); }
  void warn(std::string_view e, std::initializer_list<Field> f = {}) { log(Level::warn, e, f); }
  void error(std::string_view e, std::initializer_list<Field> f = {}) { log(Level::error, e, f); }
};

// journal: send to journald (sd_journal_send) instead of stderr.
std::unique_ptr<Logger> make_logger(Level min_level, bool journal);
// True when stderr is connected to the journal ($JOURNAL_STREAM matches fd 2).
bool stderr_is_journal();
// "level=info event=acquire group=line1 epoch=7 msg=\"a b\"" (values quoted when needed).
std::string format_line(Level level, std::string_view event, std::initializer_list<Field> fields);

}  // namespace agentd
