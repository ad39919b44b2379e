// The anax stand-in's listener: cpp-httplib hands every request to Anax::handle
// (anax's local API listens on localhost; tests bind 127.0.0.1 and port 0).
#pragma once

#include <httplib.h>

#include <string>

#include "agentd/result.h"
#include "anax.h"

namespace agentd::anax {

class Server {
 public:
  explicit Server(Anax& anax);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds `host:port` (0: a port chosen by the OS) and returns the port.
  Result<int> bind(const std::string& host, int port);
  void run();  // serves until stop(), on its own thread
  void stop();
  bool is_running() const;

 private:
  Anax& anax_;
  httplib::Server http_;
};

}  // namespace agentd::anax
