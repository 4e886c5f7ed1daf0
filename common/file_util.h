// Small POSIX file helpers with absl::Status errors: whole-file reads, durable
// atomic writes (temporary file, fsync, rename, fsync of the directory) and an
// RAII descriptor.
#ifndef OPENFORCE_COMMON_FILE_UTIL_H_
#define OPENFORCE_COMMON_FILE_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce {

// Owns a POSIX file descriptor and closes it on destruction.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release();

 private:
  int fd_ = -1;
};

// An absl::Status for the current errno, e.g. "open /x/y: No such file or
// directory".
absl::Status ErrnoToStatus(int errnum, absl::string_view what);

// Reads a whole file. Fails with NotFound when it does not exist, and with
// OutOfRange when it holds more than `max_bytes` (files a user was handed are
// untrusted).
[[nodiscard]] absl::StatusOr<std::string> ReadFileToString(
    const std::string& path, uint64_t max_bytes = UINT64_MAX);

// Writes all of `data` to `fd`, retrying short writes and EINTR.
[[nodiscard]] absl::Status WriteAll(int fd, absl::string_view data,
                                    absl::string_view what);

// Writes `data` to `path` so that a crash leaves either the old file or the new
// one: a temporary file in the same directory is written with `mode`, fsynced,
// renamed over `path`, and the directory is fsynced.
[[nodiscard]] absl::Status WriteFileAtomically(const std::string& path,
                                               absl::string_view data,
                                               mode_t mode = 0644);

// As WriteFileAtomically, for contents too large to hold in memory: `write`
// is given the temporary file's descriptor and name and writes the contents
// (with WriteAll); an error from it removes the temporary file.
[[nodiscard]] absl::Status WriteFileAtomicallyWith(
    const std::string& path,
    const std::function<absl::Status(int fd, const std::string& temp)>& write,
    mode_t mode = 0644);

// fsyncs a directory so that renames and unlinks in it are durable.
[[nodiscard]] absl::Status SyncDirectory(const std::string& dir);

// Creates `dir` and its missing parents with `mode`.
[[nodiscard]] absl::Status MakeDirectories(const std::string& dir,
                                           mode_t mode = 0755);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_FILE_UTIL_H_
