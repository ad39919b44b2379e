// BlockSignal: a signal blocked in this thread for a scope, as the daemon blocks
// SIGTERM/SIGINT for its signalfd; children started meanwhile must not inherit it.
#pragma once

#include <pthread.h>

#include <csignal>

namespace agentd::testing {

class BlockSignal {
 public:
  explicit BlockSignal(int sig) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~BlockSignal() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockSignal(const BlockSignal&) = delete;
  BlockSignal& operator=(const BlockSignal&) = delete;

 private:
  sigset_t old_{};
};

}  // namespace agentd::testing
