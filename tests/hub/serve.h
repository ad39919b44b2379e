// What the stand-ins' executables (exchange-standin, anax-standin) share: the stop
// signals taken by sigwait, and serving until one comes.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace agentd::standin {

// Blocks SIGTERM and SIGINT here and in every thread started later (call it
// first): serve_until_stopped takes them with sigwait.
inline sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

// Binds `server` (bind, run, stop, is_running) on host:port, prints "listening
// port=N" (what the harness waits for), serves until a stop signal, then stops.
// 0 after a stop, 1 when it cannot bind.
template <class Server>
int serve_until_stopped(Server& server, const std::string& host, int port, const sigset_t& stop_signals,
                        const char* name) {
  auto bound = server.bind(host, port);
  if (!bound) {
    std::fprintf(stderr, "%s: %s\n", name, bound.error().describe().c_str());
    return 1;
  }
  std::printf("listening port=%d\n", *bound);
  std::fflush(stdout);
  std::thread serving([&server] { server.run(); });
  // stop() does nothing until the accept loop runs; a signal meanwhile stays pending.
  for (int i = 0; i < 5000 && !server.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int sig = 0;
  sigwait(&stop_signals, &sig);
  server.stop();
  serving.join();
  return 0;
}

}  // namespace agentd::standin
