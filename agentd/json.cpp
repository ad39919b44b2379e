#include "json.h"

#include <cjson/cJSON.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>

namespace agentd::json {

namespace {
std::string key_error(const char* key, const char* want) {
  return std::string("field '") + key + "' must be " + want;
}
}  // namespace

void Deleter::operator()(cJSON* p) const {
  cJSON_Delete(p);
}

Result<Ptr> parse(std::string_view text, std::string_view what) {
  const char* end = nullptr;
  Ptr p(cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, false));
  if (!p) {
    std::size_t at = end ? static_cast<std::size_t>(end - text.data()) : 0;
    return fail(Errc::parse, "malformed JSON in " + std::string(what) + " near byte " + std::to_string(at));
  }
  // Only whitespace may follow the value.
  for (const char* c = end; c && c < text.data() + text.size(); ++c) {
    if (*c != ' ' && *c != '\n' && *c != '\r' && *c != '\t' && *c != '\0')
      return fail(Errc::parse, "trailing data after JSON in " + std::string(what));
  }
  return p;
}

Ptr object() {
  return Ptr(cJSON_CreateObject());
}
Ptr array() {
  return Ptr(cJSON_CreateArray());
}

std::string print(const cJSON* j) {
  std::unique_ptr<char, decltype(&cJSON_free)> s(cJSON_PrintUnformatted(j), &cJSON_free);
  return s ? std::string(s.get()) : std::string();
}

Ptr clone(const cJSON* j) {
  return Ptr(cJSON_Duplicate(j, true));
}

static const cJSON* member(const cJSON* obj, const char* key) {
  if (!obj || !cJSON_IsObject(obj)) return nullptr;
  return cJSON_GetObjectItemCaseSensitive(obj, key);
}

Result<const cJSON*> get_object(const cJSON* obj, const char* key) {
  const cJSON* v = member(obj, key);
  if (!cJSON_IsObject(v)) return fail(Errc::parse, key_error(key, "an object"));
  return v;
}

Result<const cJSON*> get_array(const cJSON* obj, const char* key) {
  const cJSON* v = member(obj, key);
  if (!cJSON_IsArray(v)) return fail(Errc::parse, key_error(key, "an array"));
  return v;
}

Result<std::string> get_string(const cJSON* obj, const char* key) {
  const cJSON* v = member(obj, key);
  if (!cJSON_IsString(v) || !v->valuestring) return fail(Errc::parse, key_error(key, "a string"));
  return std::string(v->valuestring);
}

static Result<std::int64_t> as_int(const cJSON* v, const char* key) {
  if (cJSON_IsRaw(v) && v->valuestring) {  // built by make_int, not parsed
    errno = 0;
    char* end = nullptr;
    long long n = std::strtoll(v->valuestring, &end, 10);
    if (errno != 0 || !end || *end != '\0') return fail(Errc::parse, key_error(key, "an integer in range"));
    return static_cast<std::int64_t>(n);
  }
  if (!cJSON_IsNumber(v)) return fail(Errc::parse, key_error(key, "a number"));
  double d = v->valuedouble;
  // 2^63 is not representable in int64; integral check rejects 1.5 and NaN.
  if (!(d >= -9.2e18 && d <= 9.2e18) || std::floor(d) != d)
    return fail(Errc::parse, key_error(key, "an integer in range"));
  return static_cast<std::int64_t>(d);
}

Result<std::int64_t> get_int(const cJSON* obj, const char* key) {
  return as_int(member(obj, key), key);
}

Result<bool> get_bool(const cJSON* obj, const char* key) {
  const cJSON* v = member(obj, key);
  if (!cJSON_IsBool(v)) return fail(Errc::parse, key_error(key, "a boolean"));
  return cJSON_IsTrue(v) != 0;
}

Result<std::string> opt_string(const cJSON* obj, const char* key, std::string fallback) {
  const cJSON* v = member(obj, key);
  if (!v || cJSON_IsNull(v)) return fallback;
  return get_string(obj, key);
}

Result<std::int64_t> opt_int(const cJSON* obj, const char* key, std::int64_t fallback) {
  const cJSON* v = member(obj, key);
  if (!v || cJSON_IsNull(v)) return fallback;
  return as_int(v, key);
}

Result<bool> opt_bool(const cJSON* obj, const char* key, bool fallback) {
  const cJSON* v = member(obj, key);
  if (!v || cJSON_IsNull(v)) return fallback;
  return get_bool(obj, key);
}

Result<std::vector<std::string>> opt_string_array(const cJSON* obj, const char* key) {
  std::vector<std::string> out;
  const cJSON* v = member(obj, key);
  if (!v || cJSON_IsNull(v)) return out;
  if (!cJSON_IsArray(v)) return fail(Errc::parse, key_error(key, "an array of strings"));
  const cJSON* item = nullptr;
  cJSON_ArrayForEach(item, v) {
    if (!cJSON_IsString(item) || !item->valuestring)
      return fail(Errc::parse, key_error(key, "an array of strings"));
    out.emplace_back(item->valuestring);
  }
  return out;
}

bool View::null_or_absent() const {
  return !j_ || cJSON_IsNull(j_);
}
bool View::is_object() const {
  return cJSON_IsObject(j_);
}
bool View::is_array() const {
  return cJSON_IsArray(j_);
}
bool View::is_string() const {
  return cJSON_IsString(j_) && j_->valuestring;
}
bool View::is_number() const {
  return cJSON_IsNumber(j_);
}
bool View::is_bool() const {
  return cJSON_IsBool(j_);
}
bool View::is_true() const {
  return cJSON_IsTrue(j_);
}
std::string View::key() const {
  return j_ && j_->string ? std::string(j_->string) : std::string();
}
std::string View::text() const {
  return is_string() ? std::string(j_->valuestring) : std::string();
}
double View::number() const {
  return is_number() ? j_->valuedouble : 0;
}
int View::size() const {
  return is_array() || is_object() ? cJSON_GetArraySize(j_) : 0;
}
View View::at(int index) const {
  return is_array() ? View(cJSON_GetArrayItem(j_, index)) : View();
}
View View::member(const char* key) const {
  return View(json::member(j_, key));
}
View::Iterator& View::Iterator::operator++() {
  at_ = at_->next;
  return *this;
}

View::Iterator View::begin() const {
  return Iterator(is_array() || is_object() ? j_->child : nullptr);
}

Result<View> View::obj(const char* key) const {
  auto v = get_object(j_, key);
  if (!v) return std::unexpected(v.error());
  return View(*v);
}
Result<View> View::arr(const char* key) const {
  auto v = get_array(j_, key);
  if (!v) return std::unexpected(v.error());
  return View(*v);
}
Result<std::string> View::str(const char* key) const {
  return get_string(j_, key);
}
Result<std::int64_t> View::num(const char* key) const {
  return get_int(j_, key);
}
Result<std::string> View::opt_str(const char* key, std::string fallback) const {
  return opt_string(j_, key, std::move(fallback));
}
Result<std::int64_t> View::opt_num(const char* key, std::int64_t fallback) const {
  return opt_int(j_, key, fallback);
}
Result<bool> View::opt_bool(const char* key, bool fallback) const {
  return json::opt_bool(j_, key, fallback);
}
Result<std::vector<std::string>> View::opt_str_array(const char* key) const {
  return opt_string_array(j_, key);
}

static void put(cJSON* obj, const char* key, cJSON* value) {
  if (cJSON_GetObjectItemCaseSensitive(obj, key))
    cJSON_ReplaceItemInObjectCaseSensitive(obj, key, value);
  else
    cJSON_AddItemToObject(obj, key, value);
}

void set(cJSON* obj, const char* key, std::string_view value) {
  put(obj, key, cJSON_CreateString(std::string(value).c_str()));
}
void set(cJSON* obj, const char* key, const char* value) {
  put(obj, key, cJSON_CreateString(value));
}
// cJSON keeps numbers as doubles and prints large ones in exponent form
// (1.79564054339025e+15); such values go out as their exact decimal text.
static cJSON* make_int(std::int64_t value) {
  if (value >= INT32_MIN && value <= INT32_MAX) return cJSON_CreateNumber(static_cast<double>(value));
  return cJSON_CreateRaw(std::to_string(value).c_str());
}

void set(cJSON* obj, const char* key, std::int64_t value) {
  put(obj, key, make_int(value));
}
void set(cJSON* obj, const char* key, int value) {
  put(obj, key, cJSON_CreateNumber(value));
}
void set(cJSON* obj, const char* key, bool value) {
  put(obj, key, cJSON_CreateBool(value));
}
void set(cJSON* obj, const char* key, Ptr value) {
  put(obj, key, value.release());
}
void append(cJSON* arr, Ptr value) {
  cJSON_AddItemToArray(arr, value.release());
}
void append(cJSON* arr, std::string_view value) {
  cJSON_AddItemToArray(arr, cJSON_CreateString(std::string(value).c_str()));
}

}  // namespace agentd::json
