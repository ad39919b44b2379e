// cJSON wrapped once in RAII, with typed accessors that validate every read
// (style.md "C libraries"). Only json.cpp includes <cjson/cJSON.h> and calls
// cJSON_*: here cJSON is an opaque type, so the library stays private to
// agentd_core (tests/include_graph.sh checks it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"

// cJSON's own declaration is `typedef struct cJSON {...} cJSON;`.
struct cJSON;

namespace agentd::json {

struct Deleter {
  void operator()(cJSON* p) const;
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

// A read-only view of one value of a parsed document (it owns nothing: the
// document must outlive it), so that parsers read JSON without touching cJSON.
// A missing member is an absent View; member reads validate as the functions above.
class View {
 public:
  View() = default;
  View(const cJSON* j) : j_(j) {}  // implicit: a parser takes a document's get() as a View

  bool absent() const { return j_ == nullptr; }
  bool null_or_absent() const;  // absent, or JSON null
  bool is_object() const;
  bool is_array() const;
  bool is_string() const;  // a string with text
  bool is_number() const;
  bool is_bool() const;
  bool is_true() const;
  std::string key() const;             // its name in the object that holds it; "" otherwise
  std::string text() const;            // a string's text; "" for any other value
  double number() const;               // a number's value; 0 for any other value
  int size() const;                    // items of an array or members of an object
  View at(int index) const;            // an array's item; absent past the end
  View member(const char* key) const;  // absent when missing or not an object

  // Members, read as get_*/opt_* above.
  Result<View> obj(const char* key) const;
  Result<View> arr(const char* key) const;
  Result<std::string> str(const char* key) const;
  Result<std::int64_t> num(const char* key) const;
  Result<std::string> opt_str(const char* key, std::string fallback = {}) const;
  Result<std::int64_t> opt_num(const char* key, std::int64_t fallback) const;
  Result<bool> opt_bool(const char* key, bool fallback) const;
  Result<std::vector<std::string>> opt_str_array(const char* key) const;

  // The items of an array or the members of an object, in document order.
  class Iterator {
   public:
    explicit Iterator(const cJSON* at) : at_(at) {}
    View operator*() const { return View(at_); }
    Iterator& operator++();
    bool operator==(const Iterator& o) const { return at_ == o.at_; }

   private:
    const cJSON* at_;
  };
  Iterator begin() const;
  Iterator end() const { return Iterator(nullptr); }

  const cJSON* raw() const { return j_; }

 private:
  const cJSON* j_ = nullptr;
};

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
