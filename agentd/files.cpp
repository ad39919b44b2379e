#include "files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fd.h"

namespace agentd {

namespace {
std::unexpected<Error> io_error(const std::string& what, const std::string& path) {
  return fail(Errc::io, what + " " + path + ": " + std::strerror(errno));
}

Status write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, std::strerror(errno));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}
}  // namespace

Status write_file_atomic(const std::string& path, const std::string& content, unsigned mode) {
  std::string tmp = path + ".tmp";
  // A leftover from a crash (or a planted symlink: unlink does not follow it) goes first.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return io_error("cannot remove", tmp);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (fd.get() < 0) return io_error("cannot create", tmp);
  // The umask (agentd.service has 0077) must not narrow `mode`: a file meant
  // for another reader (the metrics for node_exporter) would be unreadable.
  if (::fchmod(fd.get(), mode) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    return io_error("cannot chmod", tmp);
  }
  if (auto w = write_all(fd.get(), content.data(), content.size()); !w) {
    ::unlink(tmp.c_str());
    return fail(Errc::io, "cannot write " + tmp + ": " + w.error().message);
  }
  if (::fsync(fd.get()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    return io_error("cannot fsync", tmp);
  }
  if (::close(fd.release()) != 0) {
    ::unlink(tmp.c_str());
    return io_error("cannot close", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    return io_error("cannot rename onto", path);
  }
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  if (dir.empty()) dir = ".";
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) ::fsync(dfd.get());  // best effort: some file systems refuse directory fsync
  return {};
}

Result<std::string> read_all(int fd, std::size_t max_bytes) {
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, std::strerror(errno));
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes)
      return fail(Errc::too_large, "larger than " + std::to_string(max_bytes) + " bytes");
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return fail(Errc::not_found, path + ": no such file");
    return io_error("cannot open", path);
  }
  auto out = read_all(fd.get(), max_bytes);
  if (!out && out.error().code == Errc::too_large)
    return fail(Errc::too_large, path + " is larger than " + std::to_string(max_bytes) + " bytes");
  if (!out) return fail(Errc::io, "cannot read " + path + ": " + out.error().message);
  return out;
}

Status check_private_dir(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return io_error("cannot stat", path);
  if (!S_ISDIR(st.st_mode)) return fail(Errc::io, path + " is not a directory");
  if (st.st_uid != ::geteuid())
    return fail(Errc::io, path + " is owned by uid " + std::to_string(st.st_uid) +
                              ", not by agentd's user (uid " + std::to_string(::geteuid()) + "): chown it");
  if ((st.st_mode & 022) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(Errc::io, path + " has mode " + mode +
                              ": group or others could change agentd's state and packages; chmod 700 " +
                              path);
  }
  return {};
}

Status append_line(const std::string& path, const std::string& line) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (fd.get() < 0) return io_error("cannot open", path);
  std::string l = line + "\n";
  if (auto w = write_all(fd.get(), l.data(), l.size()); !w)
    return fail(Errc::io, path + ": " + w.error().message);
  return {};
}

}  // namespace agentd
