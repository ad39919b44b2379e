// The stand-in served from a thread of the calling process, on 127.0.0.1 and a
// port chosen by the OS: for unit tests that talk HTTP to it.
#pragma once

#include <memory>
#include <thread>

#include "agentd/result.h"
#include "hub.h"
#include "server.h"

namespace agentd::standin {

class InProcessHub {
 public:
  static Result<std::unique_ptr<InProcessHub>> start(const HubOptions& options);
  ~InProcessHub();
  InProcessHub(const InProcessHub&) = delete;
  InProcessHub& operator=(const InProcessHub&) = delete;

  int port() const { return port_; }
  Hub& hub() { return *hub_; }
  Server& server() { return *server_; }

 private:
  InProcessHub() = default;
  std::unique_ptr<Hub> hub_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace agentd::standin
