#include "server.h"

#include "hub/server.h"

namespace agentd::anax {

Server::Server(Anax& anax) : anax_(anax) {
  http_.new_task_queue = [] { return new httplib::ThreadPool(8); };
  http_.set_keep_alive_timeout(2);  // bounds how long stop() waits for idle connections
  http_.set_tcp_nodelay(true);
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    Call call = standin::to_call(req);
    standin::write_reply(anax_.handle(call), call.path, res);
  };
  http_.Get(".*", handler);
  http_.Put(".*", handler);
  http_.Post(".*", handler);
  http_.Delete(".*", handler);
}

Server::~Server() {
  stop();
}

Result<int> Server::bind(const std::string& host, int port) {
  return standin::bind_http(http_, host, port);
}

void Server::run() {
  http_.listen_after_bind();
}

void Server::stop() {
  http_.stop();
}

bool Server::is_running() const {
  return http_.is_running();
}

}  // namespace agentd::anax
