// The anax stand-in served from a thread of the calling process, on 127.0.0.1 and
// a port chosen by the OS: for unit tests that talk HTTP to it.
#pragma once

#include <memory>
#include <thread>

#include "agentd/result.h"
#include "anax.h"
#include "server.h"

namespace agentd::anax {

class InProcessAnax {
 public:
  static Result<std::unique_ptr<InProcessAnax>> start(const AnaxOptions& options);
  ~InProcessAnax();
  InProcessAnax(const InProcessAnax&) = delete;
  InProcessAnax& operator=(const InProcessAnax&) = delete;

  int port() const { return port_; }
  Anax& anax() { return *anax_; }

 private:
  InProcessAnax() = default;
  std::unique_ptr<Anax> anax_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace agentd::anax
