// Fd: an owned file descriptor (closed when it goes), and above_stdio for the
// descriptors a parent holds while it starts a child.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "result.h"

namespace agentd {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Gives up ownership, e.g. to close() it by hand and see the error.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// Moves `fd` off 0..2 (as O_CLOEXEC). A child dup2s its stdin/stdout/stderr onto
// 0..2, which would clobber a descriptor of ours sitting there; and the daemon may
// have been started with 0..2 closed, so open() and pipe() can hand those out.
inline Result<Fd> above_stdio(Fd fd) {
  if (fd.get() > STDERR_FILENO) return fd;
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) return fail(Errc::process, std::string("fcntl(F_DUPFD_CLOEXEC): ") + std::strerror(errno));
  return Fd(moved);
}

}  // namespace agentd
