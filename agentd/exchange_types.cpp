// The Exchange's wire types (exchange_types.h).
#include "exchange_types.h"

#include <cstddef>
#include <utility>

namespace agentd {

PropertyValue PropertyValue::of_string(std::string s) {
  PropertyValue v;
  v.type = Type::string;
  v.text = std::move(s);
  return v;
}

PropertyValue PropertyValue::of_version(std::string s) {
  PropertyValue v;
  v.type = Type::version;
  v.text = std::move(s);
  return v;
}

PropertyValue PropertyValue::of_list(const std::vector<std::string>& items) {
  PropertyValue v;
  v.type = Type::list;
  for (std::size_t i = 0; i < items.size(); ++i) v.text += (i ? "," : "") + items[i];
  return v;
}

PropertyValue PropertyValue::of_number(double n) {
  PropertyValue v;
  v.type = Type::number;
  v.number = n;
  return v;
}

PropertyValue PropertyValue::of_bool(bool b) {
  PropertyValue v;
  v.type = Type::boolean;
  v.boolean = b;
  return v;
}

}  // namespace agentd
