#include "agentd/env_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "support/temp_dir.h"

using namespace agentd;

TEST_SUITE("env_file") {
  TEST_CASE("parse_env_line: quoting, export, comments, nothing expanded") {
    CHECK(parse_env_line("  # a comment")->key.empty());
    CHECK(parse_env_line("")->key.empty());
    auto plain = parse_env_line("export KEY=a b  # note");
    REQUIRE(plain);
    CHECK(plain->key == "KEY");
    CHECK(plain->value == "a b");
    CHECK(parse_env_line("K='$x \"y\"'")->value == "$x \"y\"");
    CHECK(parse_env_line(R"(K="a\"b\$c")")->value == "a\"b$c");
    CHECK(parse_env_line("K=\"open").error().message == "K: unterminated double quote");
    CHECK(parse_env_line("K='x' y").error().message == "K: unexpected text after the closing quote: 'y'");
    CHECK(parse_env_line("=x").error().message == "expected KEY=VALUE");
  }

  TEST_CASE("read_env_file: regular files within the cap, a missing one is not_found") {
    testing::TempDir dir;
    CHECK(read_env_file(dir.file("absent")).error().code == Errc::not_found);
    CHECK(read_env_file(dir.path()).error().message == dir.path() + ": not a regular file");
    std::ofstream(dir.file("big")) << std::string(kMaxEnvFileBytes + 1, 'x');
    CHECK(read_env_file(dir.file("big")).error().message ==
          dir.file("big") + ": larger than " + std::to_string(kMaxEnvFileBytes) + " bytes");
    std::ofstream(dir.file("ok")) << "A=1\n";
    CHECK(read_env_file(dir.file("ok")) == "A=1\n");
  }
}
