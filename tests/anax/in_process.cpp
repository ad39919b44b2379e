#include "in_process.h"

#include <chrono>

namespace agentd::anax {

Result<std::unique_ptr<InProcessAnax>> InProcessAnax::start(const AnaxOptions& options) {
  std::unique_ptr<InProcessAnax> a(new InProcessAnax());
  auto anax = Anax::open(options);
  if (!anax) return std::unexpected(anax.error());
  a->anax_ = std::move(*anax);
  a->server_ = std::make_unique<Server>(*a->anax_);
  auto port = a->server_->bind("127.0.0.1", 0);
  if (!port) return std::unexpected(port.error());
  a->port_ = *port;
  a->thread_ = std::thread([s = a->server_.get()] { s->run(); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!a->server_->is_running() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  if (!a->server_->is_running())
    return fail(Errc::internal, "the anax stand-in did not start serving within 5 s");
  return a;
}

// The server stops before the worker threads, which may still be calling out.
InProcessAnax::~InProcessAnax() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
  anax_.reset();
}

}  // namespace agentd::anax
