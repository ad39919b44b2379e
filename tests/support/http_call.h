// One HTTP request to a stand-in on 127.0.0.1 (the hub, anax's), with its answer
// parsed when it is JSON: shared by the stand-ins' unit tests.
#pragma once

#include <httplib.h>

#include <string>

#include "agentd/json.h"

namespace agentd::testing {

struct Res {
  int status = -1;  // -1: transport error, no response
  std::string body;
  std::string etag;
  std::string cache_control;
  std::string content_type;
  json::Ptr json;
  const cJSON* j() const { return json.get(); }
};

// `auth` is "user:password" ("" = none).
inline Res http_call(int port, const std::string& method, const std::string& path, const std::string& auth,
                     const std::string& body = "", const httplib::Headers& headers = {}) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(10, 0);
  if (!auth.empty()) {
    auto colon = auth.find(':');
    cli.set_basic_auth(auth.substr(0, colon), auth.substr(colon + 1));
  }
  httplib::Result r = method == "GET"     ? cli.Get(path, headers)
                      : method == "PUT"   ? cli.Put(path, headers, body, "application/json")
                      : method == "POST"  ? cli.Post(path, headers, body, "application/json")
                      : method == "PATCH" ? cli.Patch(path, headers, body, "application/json")
                                          : cli.Delete(path, headers);
  Res out;
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  out.etag = r->get_header_value("ETag");
  out.cache_control = r->get_header_value("Cache-Control");
  out.content_type = r->get_header_value("Content-Type");
  if (!out.body.empty() && out.content_type == "application/json") {
    auto p = json::parse(out.body, "response");
    if (p) out.json = std::move(*p);
  }
  return out;
}

}  // namespace agentd::testing
