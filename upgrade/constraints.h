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

#include <string>
#include <vector>

#include "agentd/exchange_types.h"
#include "agentd/result.h"

namespace agentd {

// PropertyValue and Properties, the node policy's properties, are wire types
// (agentd/exchange_types.h).

// All constraints must hold (anax ANDs the array). A blank expression holds, as
// in anax. Never throws; nesting deeper than 64 parentheses is a parse error.
Result<bool> evaluate_constraints(const std::vector<std::string>& constraints, const Properties& props);

// One expression.
Result<bool> evaluate_constraint(const std::string& expression, const Properties& props);

}  // namespace agentd
