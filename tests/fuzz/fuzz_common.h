// Helpers shared by the libFuzzer targets (tests/fuzz/run.sh builds and runs them).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace agentd::fuzz {

inline std::string_view bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits the input at `sep` into at most `n` parts (the last keeps the rest).
inline std::vector<std::string> split(std::string_view in, char sep, std::size_t n) {
  std::vector<std::string> out;
  while (out.size() + 1 < n) {
    auto at = in.find(sep);
    if (at == std::string_view::npos) break;
    out.emplace_back(in.substr(0, at));
    in.remove_prefix(at + 1);
  }
  out.emplace_back(in);
  return out;
}

// A private scratch directory for the whole run, removed at exit. The name
// lives on the heap and is never freed: the exit handler runs after static
// destructors would have.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    // tmpfs when there is one: ext4 flushes a file rewritten from length 0 at close.
    std::error_code ec;
    const auto base = std::filesystem::is_directory("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                                    : std::filesystem::temp_directory_path();
    std::string tmpl = (base / "agentd-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    auto* kept = new std::string(tmpl);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return kept;
  }();
  return *dir;
}

}  // namespace agentd::fuzz
