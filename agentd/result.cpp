#include "result.h"

namespace agentd {

const char* to_string(Errc c) {
  switch (c) {
    case Errc::config: return "config";
    case Errc::io: return "io";
    case Errc::transport: return "transport";
    case Errc::http: return "http";
    case Errc::parse: return "parse";
    case Errc::too_large: return "too-large";
    case Errc::unauthorized: return "unauthorized";
    case Errc::forbidden: return "forbidden";
    case Errc::not_found: return "not-found";
    case Errc::conflict: return "conflict";
    case Errc::precondition: return "precondition";
    case Errc::unsupported: return "unsupported";
    case Errc::verification: return "verification";
    case Errc::process: return "process";
    case Errc::cancelled: return "cancelled";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

std::string Error::describe() const {
  std::string s = to_string(code);
  if (http_status != 0) s += " (HTTP " + std::to_string(http_status) + ")";
  if (!message.empty()) s += ": " + message;
  return s;
}

}  // namespace agentd
