// The group document the hub answers (protocol.md §2) and its ETag. What
// parses must survive agentd's own write of each entry (a member writes back
// what it read).
#include <cstdlib>

#include "agentd/group.h"
#include "fuzz_common.h"

using namespace agentd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split(fuzz::bytes(data, size), '\0', 2);
  (void)parse_etag(parts[0]);
  auto doc = parse_group_document(parts.back(), 1);
  if (!doc) return 0;
  (void)doc->min_available();
  for (const auto& [node, entry] : doc->entries) {
    auto again = parse_entry(entry_to_json(entry).get());
    if (!again) std::abort();  // agentd would write an entry it cannot read back
  }
  if (!parse_settings(settings_to_json(doc->settings).get())) std::abort();
  return 0;
}
