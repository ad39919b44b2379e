// Shared by the files of the stand-in's Hub (hub.cpp, hub_*.cpp): the replies
// and the request helpers. Private to them.
#pragma once

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>

#include "agentd/clock.h"
#include "agentd/files.h"
#include "agentd/group.h"
#include "hub.h"

namespace agentd::standin::hub_internal {

inline constexpr const char* kTokenMask = "***************";
inline constexpr std::int64_t kMaxRecordsCap = 10000;            // EX reference.conf:157
inline constexpr std::int64_t kContentionUs = 2'000'000;         // EX reference.conf:158
inline constexpr std::int64_t kLastUpdatedSlackUs = 10'000'000;  // exchange-api.md §6.2

// ---- replies -------------------------------------------------------------------------

inline Reply json_reply(int status, const cJSON* body) {
  Reply r;
  r.status = status;
  r.body = json::print(body);
  return r;
}

// {"code","msg"} (exchange-api.md §1.3); 204 carries no body.
inline Reply api(int status, const std::string& code, const std::string& msg) {
  Reply r;
  r.status = status;
  if (status != 204) {
    auto o = json::object();
    json::set(o.get(), "code", code);
    json::set(o.get(), "msg", msg);
    r.body = json::print(o.get());
  }
  return r;
}

// An accepted state-changing request (what the dropAfterCommit fault counts).
inline Reply written(int status, const std::string& msg) {
  Reply r = api(status, "ok", msg);
  r.write = true;
  return r;
}

inline Reply unauthorized() {
  return api(401, "invalid-credentials", "invalid.credentials");
}
inline Reply unrecognized() {
  return api(404, "not-found", "unrecognized route");
}
inline Reply not_found(const std::string& msg) {
  return api(404, "not-found", msg);
}
inline Reply bad_input(const std::string& msg) {
  return api(400, "invalid-input", msg);
}
inline Reply conflict(const std::string& msg) {
  return api(409, "already-exists", msg);
}
inline Reply forbidden(const std::string& msg) {
  return api(403, "access-denied", msg);
}
// EX auth/Identity.scala accessDeniedMsg: "Access denied: '{0}' does not have authorization: {1} {2}".
inline Reply denied(const Identity& who, const std::string& permission, const std::string& target) {
  return forbidden("Access denied: '" + who.full() + "' does not have authorization: " + permission + " " +
                   target);
}

// The Exchange's map answers: {"<key>": {...}, "lastIndex": 0}.
inline Reply map_reply(const char* key, json::Ptr map, int status = 200) {
  auto o = json::object();
  json::set(o.get(), key, std::move(map));
  json::set(o.get(), "lastIndex", 0);
  return json_reply(status, o.get());
}

// What a GET that finds nothing answers: the same shape, empty, with 404.
inline Reply empty_map(const char* key) {
  return map_reply(key, json::object(), 404);
}

inline Reply empty_groups() {
  auto o = json::object();
  json::set(o.get(), "nodeGroups", json::array());
  return json_reply(404, o.get());
}

inline std::string quoted(std::int64_t revision) {
  return "\"" + std::to_string(revision) + "\"";
}

// ---- request helpers ------------------------------------------------------------------

// A body that is not JSON is a 400 (exchange-api.md §1.3); `empty_ok` routes take no body.
inline Result<json::Ptr> parse_body(const Call& call, bool empty_ok) {
  bool blank =
      std::all_of(call.body.begin(), call.body.end(), [](char c) { return std::isspace((unsigned char)c); });
  if (blank && empty_ok) return json::object();
  auto p = json::parse(call.body, "request body");
  if (!p) return std::unexpected(p.error());
  if (!cJSON_IsObject(p->get())) return fail(Errc::parse, "request body must be a JSON object");
  return p;
}

inline bool present(const cJSON* o, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && !cJSON_IsNull(v);
}

inline std::vector<std::string> dedup(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& s : in)
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

inline std::optional<std::string> base64_decode(const std::string& in) {
  std::string out;
  int val = 0, bits = -8;
  for (char ch : in) {
    int c;
    if (ch >= 'A' && ch <= 'Z')
      c = ch - 'A';
    else if (ch >= 'a' && ch <= 'z')
      c = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9')
      c = ch - '0' + 52;
    else if (ch == '+')
      c = 62;
    else if (ch == '/')
      c = 63;
    else if (ch == '=')
      break;
    else
      return std::nullopt;
    val = (val << 6) + c;
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xff));
      bits -= 8;
    }
  }
  return out;
}

// "Basic base64(org/id:secret)" -> (org/id, secret).
inline std::optional<std::pair<std::string, std::string>> basic_credentials(
    const std::string& authorization) {
  if (authorization.size() < 6) return std::nullopt;
  std::string scheme = authorization.substr(0, 6);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (scheme != "basic ") return std::nullopt;
  std::string b64 = authorization.substr(6);
  while (!b64.empty() && b64.front() == ' ') b64.erase(0, 1);
  auto decoded = base64_decode(b64);
  if (!decoded) return std::nullopt;
  auto colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::make_pair(decoded->substr(0, colon), decoded->substr(colon + 1));
}

// The Exchange's ^(\S*?)/(\S*)$ on the Basic user name (EX ExchangeApiApp.scala).
inline std::optional<std::pair<std::string, std::string>> split_user(const std::string& user) {
  if (std::any_of(user.begin(), user.end(), [](unsigned char c) { return std::isspace(c); }))
    return std::nullopt;
  auto slash = user.find('/');
  if (slash == std::string::npos) return std::nullopt;
  return std::make_pair(user.substr(0, slash), user.substr(slash + 1));
}

// If-None-Match: a list of entity tags or "*".
inline bool none_match_hits(const std::string& header, std::int64_t revision) {
  std::size_t i = 0;
  while (i <= header.size()) {
    std::size_t j = header.find(',', i);
    if (j == std::string::npos) j = header.size();
    std::string tag = header.substr(i, j - i);
    while (!tag.empty() && tag.front() == ' ') tag.erase(0, 1);
    while (!tag.empty() && tag.back() == ' ') tag.pop_back();
    if (tag == "*") return true;
    auto r = parse_etag(tag);
    if (r && *r == revision) return true;
    i = j + 1;
  }
  return false;
}

inline json::Ptr string_array(const std::vector<std::string>& v) {
  auto a = json::array();
  for (const auto& s : v) json::append(a.get(), s);
  return a;
}

}  // namespace agentd::standin::hub_internal
