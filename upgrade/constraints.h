// The Open Horizon text constraint language, as anax evaluates a node
// management policy's `constraints` against the node's policy properties
// (anax externalpolicy/text_language, constraint_expression.go,
// counter_party_properties.go):
//   name OP value, joined by AND/&& and OR/|| (AND binds tighter), parentheses;
//   OP is ==, = , !=, <, <=, >, >=, in ("=>" and "=<" are errors: anax's
//   tokenizer takes them, its evaluator reads them as ==); a value is a bare word, a number, a
//   version, a version range "[1.0.0,2.0.0)", or a "quoted string" ("in" takes a
//   comma-separated list in one quoted string: purpose in "a,b").
// A property the node does not have satisfies nothing. Anything else is an
// Errc::parse error naming the expression and the column.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agentd/result.h"

namespace agentd {

// A node policy property, typed as anax types it (property_list.go): strings,
// versions and lists keep their text (a list as "a,b,c"), numbers are doubles.
struct PropertyValue {
  enum class Type { string, number, boolean, version, list };
  Type type = Type::string;
  std::string text;
  double number = 0;
  bool boolean = false;

  static PropertyValue of_string(std::string s);
  static PropertyValue of_version(std::string v);
  static PropertyValue of_list(const std::vector<std::string>& items);
  static PropertyValue of_number(double n);
  static PropertyValue of_bool(bool b);
};

using Properties = std::map<std::string, PropertyValue>;

// All constraints must hold (anax ANDs the array). A blank expression holds, as
// in anax. Never throws; nesting deeper than 64 parentheses is a parse error.
Result<bool> evaluate_constraints(const std::vector<std::string>& constraints, const Properties& props);

// One expression.
Result<bool> evaluate_constraint(const std::string& expression, const Properties& props);

}  // namespace agentd
