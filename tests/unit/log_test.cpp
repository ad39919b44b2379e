#include "agentd/log.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "support/temp_dir.h"

using namespace agentd;
using agentd::testing::TempDir;

namespace {

// Points fd 2 at a file for the scope; restores it after.
class CaptureStderr {
 public:
  explicit CaptureStderr(std::string path) : path_(std::move(path)) {
    saved_ = ::dup(STDERR_FILENO);
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    ::dup2(fd, STDERR_FILENO);
    ::close(fd);
  }
  ~CaptureStderr() { restore(); }
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }
  std::string text() {
    restore();
    std::ifstream f(path_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

 private:
  std::string path_;
  int saved_ = -1;
};

// Sets or unsets an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_SUITE("log") {
  TEST_CASE("format_line: level, event, then fields in order") {
    CHECK(format_line(Level::info, "acquire", {{"group", "line1"}, {"epoch", "7"}, {"msg", "a b"}}) ==
          "level=info event=acquire group=line1 epoch=7 msg=\"a b\"");
    CHECK(format_line(Level::debug, "poll", {}) == "level=debug event=poll");
    CHECK(format_line(Level::warn, "x", {}) == "level=warn event=x");
    CHECK(format_line(Level::error, "x", {}) == "level=error event=x");
  }

  TEST_CASE("format_line quotes and escapes values that would break key=value parsing") {
    auto one = [](std::string v) { return format_line(Level::info, "e", {{"v", std::move(v)}}).substr(21); };
    CHECK(one("plain-value_1.2:/x") == "plain-value_1.2:/x");
    CHECK(one("") == "\"\"");
    CHECK(one("a b") == "\"a b\"");
    CHECK(one("k=v") == "\"k=v\"");
    CHECK(one("say \"hi\"") == "\"say \\\"hi\\\"\"");
    CHECK(one("back\\slash") == "\"back\\\\slash\"");
    CHECK(one("two\nlines") == "\"two\\nlines\"");
    CHECK(one("tab\there\r") == "\"tab\\there\\r\"");
    CHECK(one(std::string("nul\0x", 5)) == "\"nul\\x00x\"");
    CHECK(one("bell\x07\x7f") == "\"bell\\x07\\x7f\"");
    CHECK(one("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes through
    // The event is quoted by the same rule.
    CHECK(format_line(Level::info, "odd event", {}) == "level=info event=\"odd event\"");
  }

  TEST_CASE("the stderr logger writes one line per event at or above its level") {
    TempDir dir;
    CaptureStderr cap(dir.file("stderr"));
    auto log = make_logger(Level::warn, false);
    log->debug("hidden-debug");
    log->info("hidden-info", {{"k", "v"}});
    log->warn("renew", {{"group", "g1"}, {"reason", "hub slow"}});
    log->error("fenced", {{"epoch", "8"}});
    CHECK(cap.text() ==
          "level=warn event=renew group=g1 reason=\"hub slow\"\nlevel=error event=fenced epoch=8\n");

    CaptureStderr all(dir.file("all"));
    auto debug = make_logger(Level::debug, false);
    debug->debug("d");
    debug->info("i");
    CHECK(all.text() == "level=debug event=d\nlevel=info event=i\n");
  }

  TEST_CASE("stderr_is_journal compares $JOURNAL_STREAM with fd 2") {
    TempDir dir;
    CaptureStderr cap(dir.file("stderr"));
    struct stat st {};
    REQUIRE(::fstat(STDERR_FILENO, &st) == 0);
    std::string match = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
    {
      ScopedEnv env("JOURNAL_STREAM", match.c_str());
      CHECK(stderr_is_journal());
    }
    {
      ScopedEnv env("JOURNAL_STREAM", other.c_str());
      CHECK_FALSE(stderr_is_journal());
    }
    const std::string trailing = match + "x";
    for (const char* bad : {"", "12", "12:", ":34", "x:y", trailing.c_str()}) {
      ScopedEnv env("JOURNAL_STREAM", bad);
      CHECK_FALSE(stderr_is_journal());
    }
    ScopedEnv unset("JOURNAL_STREAM", nullptr);
    CHECK_FALSE(stderr_is_journal());
  }
}
