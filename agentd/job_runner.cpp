#include "job_runner.h"

namespace agentd {

Job::~Job() {
  join();
}

void Job::join() {
  if (thread_.joinable()) thread_.join();
}

void Job::start(ActionKind kind, std::function<Status()> work, std::function<void()> wake) {
  join();
  kind_ = kind;
  done_.store(false);
  thread_ = std::thread([this, work = std::move(work), wake = std::move(wake)] {
    result_ = work();
    done_.store(true);
    wake();
  });
}

std::optional<std::pair<ActionKind, Status>> Job::take() {
  if (!thread_.joinable() || !done_.load()) return std::nullopt;
  thread_.join();
  return std::make_pair(kind_, result_);
}

}  // namespace agentd
