// One error type and one Result<T> for the whole project (style.md "Errors").
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace agentd {

enum class Errc {
  config,        // bad configuration value; reported with file:line:key
  io,            // local file system
  transport,     // connection refused/reset, timeout, DNS: the request may or may not have landed
  http,          // hub answered with a status that fits no other category (e.g. 5xx)
  parse,         // malformed or wrongly typed JSON, bad header
  too_large,     // response or file over its size cap
  unauthorized,  // 401
  forbidden,     // 403
  not_found,     // 404
  conflict,      // 409, or 412 on a conditional write (protocol.md §3: stale revision)
  precondition,  // 428: If-Match missing
  unsupported,   // the hub lacks the coordination extension (protocol.md §3)
  verification,  // artifact hash/signature mismatch
  process,       // a child process failed
  cancelled,     // stop requested (SIGTERM) while waiting
  internal,
};

const char* to_string(Errc c);

struct Error {
  Errc code = Errc::internal;
  std::string message;
  int http_status = 0;  // set for errors that came from an HTTP response

  // Retrying can help: transport trouble and the hub's 5xx/408/429 (exchange-api.md §0).
  bool transient() const {
    return code == Errc::transport ||
           (code == Errc::http && (http_status >= 500 || http_status == 408 || http_status == 429));
  }
  std::string describe() const;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = Result<void>;

inline std::unexpected<Error> fail(Errc code, std::string message, int http_status = 0) {
  return std::unexpected(Error{code, std::move(message), http_status});
}

}  // namespace agentd
