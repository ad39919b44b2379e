// cJSON wrapped once in RAII, with typed accessors that validate every read
// (style.md "C libraries"). Nothing outside json.cpp calls cJSON_Parse/Delete.
#pragma once

#include <cjson/cJSON.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

namespace agentd::json {

struct Deleter {
  void operator()(cJSON* p) const { cJSON_Delete(p); }
};
using Ptr = std::unique_ptr<cJSON, Deleter>;

// Parses a whole document; trailing garbage and nesting deeper than cJSON's
// limit are errors. `what` names the document in the error ("group document").
Result<Ptr> parse(std::string_view text, std::string_view what);

Ptr object();
Ptr array();
std::string print(const cJSON* j);  // compact
Ptr clone(const cJSON* j);

// Required fields: missing or wrongly typed is an Errc::parse error naming the key.
Result<const cJSON*> get_object(const cJSON* obj, const char* key);
Result<const cJSON*> get_array(const cJSON* obj, const char* key);
Result<std::string> get_string(const cJSON* obj, const char* key);
Result<std::int64_t> get_int(const cJSON* obj, const char* key);  // integral, within int64
Result<bool> get_bool(const cJSON* obj, const char* key);

// Optional fields: absent or null gives `fallback`; present with the wrong type is an error.
Result<std::string> opt_string(const cJSON* obj, const char* key, std::string fallback = {});
Result<std::int64_t> opt_int(const cJSON* obj, const char* key, std::int64_t fallback);
Result<bool> opt_bool(const cJSON* obj, const char* key, bool fallback);
Result<std::vector<std::string>> opt_string_array(const cJSON* obj, const char* key);

// Builders; keys replace existing ones.
void set(cJSON* obj, const char* key, std::string_view value);
void set(cJSON* obj, const char* key, const char* value);
void set(cJSON* obj, const char* key, std::int64_t value);
void set(cJSON* obj, const char* key, int value);
void set(cJSON* obj, const char* key, bool value);
void set(cJSON* obj, const char* key, Ptr value);
void append(cJSON* arr, Ptr value);
void append(cJSON* arr, std::string_view value);

}  // namespace agentd::json
