// The member's state file (upgrade/state_file.h). What loads must round-trip:
// written again and read back, it is the same.
#include <cstdlib>

#include "fuzz_common.h"
#include "upgrade/state_file.h"
#include "upgrade/version_floor.h"

using namespace agentd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(fuzz::bytes(data, size));
  (void)parse_version_floor(text);
  auto state = state_from_json(text);
  if (!state) return 0;
  const std::string written = state_to_json(*state);
  auto again = state_from_json(written);
  if (!again || state_to_json(*again) != written) std::abort();
  return 0;
}
