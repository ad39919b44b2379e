// The constraint language of management policies (upgrade/constraints.h),
// one expression per line, against typed node properties.
#include "fuzz_common.h"
#include "upgrade/constraints.h"

using namespace agentd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Properties props = {
      {"purpose", PropertyValue::of_string("edge")},
      {"openhorizon.arch", PropertyValue::of_string("amd64")},
      {"version", PropertyValue::of_version("2.31.0")},
      {"cores", PropertyValue::of_number(4)},
      {"gpu", PropertyValue::of_bool(true)},
      {"zones", PropertyValue::of_list({"a", "b", "c"})},
  };
  auto lines = fuzz::split(fuzz::bytes(data, size), '\n', 16);
  (void)evaluate_constraints(lines, props);
  (void)evaluate_constraint(lines[0], props);
  return 0;
}
