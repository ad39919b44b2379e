// The configuration files agentd reads (/etc/default/horizon, agentd.conf) and
// the token file. Input: the horizon file, a NUL byte, agentd.conf.
#include <sys/stat.h>

#include <fstream>

#include "agentd/config.h"
#include "agentd/token_file.h"
#include "fuzz_common.h"

using namespace agentd;

namespace {
void put(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ::chmod(path.c_str(), mode);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split(fuzz::bytes(data, size), '\0', 2);
  const std::string& dir = fuzz::scratch_dir();
  Flags flags;
  flags.horizon_file = dir + "/horizon";
  flags.config_file = dir + "/agentd.conf";
  put(flags.horizon_file, parts[0], 0600);
  put(flags.config_file, parts.size() > 1 ? parts[1] : std::string(), 0600);
  auto config = load_config(flags, {});
  if (config) (void)is_loopback_url(config->exchange_url);
  (void)read_token_file(flags.horizon_file);
  return 0;
}
