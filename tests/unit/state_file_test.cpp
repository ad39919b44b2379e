// The persisted state (protocol.md §4.2) and the atomic file helpers under it.
#include "upgrade/state_file.h"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "agentd/files.h"
#include "support/temp_dir.h"

using namespace agentd;

TEST_SUITE("state_file") {
  TEST_CASE("no file yet is not an error") {
    testing::TempDir dir;
    StateFile f(dir.file("state.json"));
    auto s = f.load();
    REQUIRE(s);
    CHECK_FALSE(s->has_value());
  }

  TEST_CASE("every persisted field round-trips; process-local ones do not persist") {
    testing::TempDir dir;
    StateFile f(dir.file("state.json"));
    PersistedState s;
    s.group = "line1";
    s.policy = "org/nmp1";
    s.pending_write_id = "abc";
    s.local.state = State::verifying;
    s.local.version = "1.0.0";
    s.local.target = "2.0.0";
    s.local.previous_version = "1.0.0";
    s.local.epoch = 17;
    s.local.highest_epoch = 18;
    s.local.acquire_time = "2026-11-25T20:00:00.000000Z";
    s.local.waiting_since = "w";
    s.local.message = "verifying \"2.0.0\"";
    s.local.last_write_id = "def";
    s.local.prepared = true;
    s.local.verification_failed = true;
    s.local.failed_target = "1.5";
    s.local.progress = Progress::restart_begun;
    s.local.last_renew = Mono{5};
    s.local.job_running = true;
    REQUIRE(f.save(s));
    struct stat st {};
    REQUIRE(stat(f.path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto back = f.load();
    REQUIRE(back);
    REQUIRE(back->has_value());
    const PersistedState& b = **back;
    CHECK(b.group == s.group);
    CHECK(b.policy == s.policy);
    CHECK(b.pending_write_id == "abc");
    CHECK(b.local.state == State::verifying);
    CHECK(b.local.epoch == 17);
    CHECK(b.local.highest_epoch == 18);
    CHECK(b.local.message == s.local.message);
    CHECK(b.local.last_write_id == "def");
    CHECK(b.local.prepared);
    CHECK(b.local.verification_failed);
    CHECK(b.local.failed_target == "1.5");
    CHECK(b.local.progress == Progress::restart_begun);
    CHECK_FALSE(b.local.last_renew);
    CHECK_FALSE(b.local.job_running);
  }

  TEST_CASE("a corrupt or foreign state file is refused with its path, not guessed at") {
    testing::TempDir dir;
    for (const char* text : {"{", R"({"format":2})", R"({"format":1,"state":"dancing"})",
                             R"({"format":1,"state":"idle","progress":"halfway"})",
                             R"({"format":1,"state":"idle","epoch":"x"})"}) {
      CAPTURE(text);
      std::string p = dir.write("bad.json", text);
      auto r = StateFile(p).load();
      REQUIRE_FALSE(r);
      CHECK(r.error().message.find(p) != std::string::npos);
    }
  }

  TEST_CASE("an oversized state file is refused") {
    testing::TempDir dir;
    std::string p = dir.write("big.json", std::string(70 * 1024, ' '));
    auto r = StateFile(p).load();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::too_large);
  }

  TEST_CASE("an atomic write leaves the old file intact when it cannot complete") {
    testing::TempDir dir;
    std::string p = dir.file("f");
    REQUIRE(write_file_atomic(p, "old"));
    // The directory becomes read-only: the temporary file cannot be created.
    if (geteuid() != 0) {
      chmod(dir.path().c_str(), 0500);
      CHECK_FALSE(write_file_atomic(p, "new"));
      chmod(dir.path().c_str(), 0700);
      CHECK(read_file(p, 100).value() == "old");
    }
    // A path whose directory does not exist is a clear io error.
    auto r = write_file_atomic(dir.file("no/such/dir/f"), "x");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::io);
    CHECK(r.error().message.find("no/such/dir") != std::string::npos);
  }

  TEST_CASE("a full disk is an io error and the old content survives") {
    testing::TempDir dir;
    std::string p = dir.file("f");
    REQUIRE(write_file_atomic(p, "old"));
    // A file size limit of 4 bytes answers the fifth byte with EFBIG, as a
    // full disk answers with ENOSPC; SIGXFSZ is ignored meanwhile.
    struct rlimit saved {};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = saved;
    small.rlim_cur = 4;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    auto r = write_file_atomic(p, "new content");
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::io);
    CHECK(read_file(p, 100).value() == "old");
    CHECK_FALSE(std::filesystem::exists(p + ".tmp"));
  }

  TEST_CASE("a symlink planted at the temporary file's name is not written through") {
    testing::TempDir dir;
    std::string p = dir.file("state.json");
    std::string victim = dir.write("victim", "precious");
    REQUIRE(symlink(victim.c_str(), (p + ".tmp").c_str()) == 0);
    REQUIRE(write_file_atomic(p, "new"));
    CHECK(read_file(victim, 100).value() == "precious");
    CHECK(read_file(p, 100).value() == "new");
    struct stat st {};
    REQUIRE(lstat(p.c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
  }

  TEST_CASE("check_private_dir: agentd's own directory, not writable by group or others, not a symlink") {
    testing::TempDir dir;
    std::string d = dir.path() + "/state";
    REQUIRE(mkdir(d.c_str(), 0700) == 0);
    CHECK(check_private_dir(d));
    REQUIRE(chmod(d.c_str(), 0777) == 0);
    auto open = check_private_dir(d);
    REQUIRE_FALSE(open);
    CHECK(open.error().message.find("mode 0777") != std::string::npos);
    REQUIRE(chmod(d.c_str(), 0700) == 0);
    std::string link = dir.path() + "/link";
    REQUIRE(symlink(d.c_str(), link.c_str()) == 0);
    CHECK_FALSE(check_private_dir(link));
    CHECK_FALSE(check_private_dir(dir.path() + "/missing"));
    if (geteuid() == 0) {
      REQUIRE(chown(d.c_str(), 4242, 4242) == 0);
      auto other = check_private_dir(d);
      REQUIRE_FALSE(other);
      CHECK(other.error().message.find("uid 4242") != std::string::npos);
    }
  }

  TEST_CASE("read_file: missing, capped, whole") {
    testing::TempDir dir;
    CHECK(read_file(dir.file("none"), 10).error().code == Errc::not_found);
    std::string p = dir.write("x", "0123456789");
    CHECK(read_file(p, 10).value() == "0123456789");
    CHECK(read_file(p, 9).error().code == Errc::too_large);
    REQUIRE(append_line(dir.file("log"), "a"));
    REQUIRE(append_line(dir.file("log"), "b"));
    CHECK(read_file(dir.file("log"), 100).value() == "a\nb\n");
  }
}
