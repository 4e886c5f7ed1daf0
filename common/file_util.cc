// POSIX file helpers; see file_util.h.
#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace openforce {

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) ::close(fd_);
}

int ScopedFd::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

absl::Status ErrnoToStatus(int errnum, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", std::strerror(errnum));
  switch (errnum) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             uint64_t max_bytes) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::string out;
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return absl::OutOfRangeError(absl::StrCat(
          path, " is larger than the ", max_bytes, "-byte limit for it"));
    }
  }
  return out;
}

absl::Status WriteAll(int fd, absl::string_view data, absl::string_view what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("write ", what));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid())
    return ErrnoToStatus(errno, absl::StrCat("open directory ", dir));
  if (::fsync(fd.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fsync directory ", dir));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view data, mode_t mode) {
  return WriteFileAtomicallyWith(
      path,
      [&](int fd, const std::string& temp) { return WriteAll(fd, data, temp); },
      mode);
}

absl::Status WriteFileAtomicallyWith(
    const std::string& path,
    const std::function<absl::Status(int fd, const std::string& temp)>& write,
    mode_t mode) {
  std::filesystem::path target(path);
  std::string dir =
      target.has_parent_path() ? target.parent_path().string() : ".";
  std::string temp =
      absl::StrCat(dir, "/.", target.filename().string(), ".tmp-", ::getpid());
  {
    ScopedFd fd(
        ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", temp));
    // The umask may have narrowed or the file may have existed with other bits.
    if (::fchmod(fd.get(), mode) != 0) {
      ::unlink(temp.c_str());
      return ErrnoToStatus(errno, absl::StrCat("chmod ", temp));
    }
    absl::Status written = write(fd.get(), temp);
    if (written.ok() && ::fsync(fd.get()) != 0) {
      written = ErrnoToStatus(errno, absl::StrCat("fsync ", temp));
    }
    if (!written.ok()) {
      ::unlink(temp.c_str());
      return written;
    }
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    absl::Status status =
        ErrnoToStatus(errno, absl::StrCat("rename to ", path));
    ::unlink(temp.c_str());
    return status;
  }
  return SyncDirectory(dir);
}

absl::Status MakeDirectories(const std::string& dir, mode_t mode) {
  std::error_code error;
  const bool created = std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("create directory ", dir, ": ", error.message()));
  }
  if (!std::filesystem::is_directory(dir, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, " exists and is not a directory"));
  }
  // Only a directory made here gets `mode`; an existing one keeps what its
  // owner chose.
  if (created && ::chmod(dir.c_str(), mode) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chmod ", dir));
  }
  return absl::OkStatus();
}

}  // namespace openforce
