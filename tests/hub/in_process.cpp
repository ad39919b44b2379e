#include "in_process.h"

#include <chrono>

namespace agentd::standin {

Result<std::unique_ptr<InProcessHub>> InProcessHub::start(const HubOptions& options) {
  std::unique_ptr<InProcessHub> h(new InProcessHub());
  auto hub = Hub::open(options);
  if (!hub) return std::unexpected(hub.error());
  h->hub_ = std::move(*hub);
  h->server_ = std::make_unique<Server>(*h->hub_);
  auto port = h->server_->bind("127.0.0.1", 0);
  if (!port) return std::unexpected(port.error());
  h->port_ = *port;
  h->thread_ = std::thread([s = h->server_.get()] { s->run(); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!h->server_->is_running() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  if (!h->server_->is_running()) return fail(Errc::internal, "the stand-in did not start serving within 5 s");
  return h;
}

InProcessHub::~InProcessHub() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace agentd::standin
