// Content-addressed blob store; see blob_store.h.
#include "common/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace openforce {
namespace {

constexpr size_t kIoChunk = 1 << 20;
constexpr size_t kMaxUploadIdLength = 128;

absl::Status ValidateUploadId(absl::string_view upload_id) {
  if (upload_id.empty() || upload_id.size() > kMaxUploadIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload id must be 1-", kMaxUploadIdLength,
                     " characters, got ", upload_id.size()));
  }
  for (char c : upload_id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("upload id '", upload_id,
                       "' may only use letters, digits, '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

// Hashes a file from the start while counting its size.
absl::StatusOr<std::string> HashOpenFile(int fd, const std::string& path) {
  Sha256 hasher;
  std::string buffer(kIoChunk, '\0');
  uint64_t offset = 0;
  while (true) {
    ssize_t n =
        ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    hasher.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
  }
  return DigestToHex(hasher.Finish());
}

// Sets a partial upload's modification time to `now_ms`, which is when it
// last made progress by the store's clock; best effort (expiry only).
void StampModified(int fd, int64_t now_ms) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(now_ms / 1000);
  times[0].tv_nsec = times[1].tv_nsec =
      static_cast<long>(now_ms % 1000) * 1000000;
  (void)::futimens(fd, times);
}

}  // namespace

BlobWriter::BlobWriter(BlobStore* store, std::string temp_path, ScopedFd fd)
    : store_(store), temp_path_(std::move(temp_path)), fd_(std::move(fd)) {}

BlobWriter::~BlobWriter() {
  if (!done_) ::unlink(temp_path_.c_str());
}

absl::Status BlobWriter::Append(absl::string_view data) {
  if (done_)
    return absl::FailedPreconditionError("blob writer already committed");
  RETURN_IF_ERROR(store_->CheckSizeLimit(size_ + data.size()));
  RETURN_IF_ERROR(WriteAll(fd_.get(), data, temp_path_));
  hasher_.Update(data);
  size_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobWriter::Commit(
    absl::string_view expected_hash) {
  if (done_)
    return absl::FailedPreconditionError("blob writer already committed");
  std::string hash = DigestToHex(hasher_.Finish());
  if (!expected_hash.empty() && hash != expected_hash) {
    return absl::DataLossError(absl::StrCat("blob content hashes to ", hash,
                                            ", expected ", expected_hash));
  }
  if (::fsync(fd_.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("fsync ", temp_path_));
  }
  fd_ = ScopedFd();
  RETURN_IF_ERROR(store_->Install(temp_path_, hash));
  done_ = true;
  return hash;
}

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(
    const std::string& root, BlobStoreOptions options) {
  if (root.empty())
    return absl::InvalidArgumentError("blob store root is empty");
  for (const char* sub : {"", "/objects", "/tmp", "/uploads"}) {
    RETURN_IF_ERROR(MakeDirectories(absl::StrCat(root, sub), 0700));
  }
  std::error_code error;
  std::string canonical = std::filesystem::canonical(root, error).string();
  if (error) {
    return absl::InternalError(
        absl::StrCat("resolve blob store root ", root, ": ", error.message()));
  }
  // Anything in tmp/ is a write that never committed; the data it held was
  // never acknowledged, so it is safe to drop.
  for (const auto& entry :
       std::filesystem::directory_iterator(canonical + "/tmp", error)) {
    std::filesystem::remove_all(entry.path(), error);
    if (error) {
      return absl::InternalError(absl::StrCat(
          "remove leftover ", entry.path().string(), ": ", error.message()));
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("list ", canonical, "/tmp: ", error.message()));
  }
  return std::unique_ptr<BlobStore>(new BlobStore(canonical, options));
}

absl::Status BlobStore::CheckSizeLimit(uint64_t size) const {
  if (options_.max_blob_bytes != 0 && size > options_.max_blob_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("blob of ", size, " bytes exceeds the limit of ",
                     options_.max_blob_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobStore::ObjectPath(
    absl::string_view hash) const {
  if (!IsSha256Hex(hash)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", hash,
        "' is not a blob name (64 lowercase hex digits of SHA-256)"));
  }
  return absl::StrCat(root_, "/objects/", hash.substr(0, 2), "/", hash);
}

absl::StatusOr<std::string> BlobStore::UploadPath(
    absl::string_view upload_id) const {
  RETURN_IF_ERROR(ValidateUploadId(upload_id));
  return absl::StrCat(root_, "/uploads/", upload_id, ".part");
}

std::string BlobStore::NewTempPath() {
  absl::MutexLock lock(&temp_mu_);
  return absl::StrCat(root_, "/tmp/", ::getpid(), "-", temp_counter_++);
}

std::string BlobStore::ObjectDirectory(absl::string_view hash) const {
  return absl::StrCat(root_, "/objects/", hash.substr(0, 2));
}

absl::Status BlobStore::Install(const std::string& temp_path,
                                const std::string& hash, bool sync_directory) {
  ASSIGN_OR_RETURN(std::string path, ObjectPath(hash));
  const std::string dir = ObjectDirectory(hash);
  if (::access(dir.c_str(), F_OK) != 0) {
    // A new fan-out directory: its own name must reach the disk too (once).
    RETURN_IF_ERROR(MakeDirectories(dir, 0700));
    RETURN_IF_ERROR(SyncDirectory(root_ + "/objects"));
  }
  // Renaming over an existing blob is harmless when it is intact and repairs it
  // when it was corrupted, so a re-upload always leaves a good copy.
  if (::rename(temp_path.c_str(), path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rename into ", path));
  }
  return sync_directory ? SyncDirectory(dir) : absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> BlobStore::PutMany(
    const std::vector<std::string>& blobs) {
  struct Pending {
    std::string temp;
    std::string hash;
  };
  std::vector<Pending> pending;
  pending.reserve(blobs.size());
  // Temporary files are removed unless installed.
  struct Cleanup {
    std::vector<Pending>* pending;
    size_t installed = 0;
    ~Cleanup() {
      for (size_t i = installed; i < pending->size(); ++i)
        ::unlink((*pending)[i].temp.c_str());
    }
  } cleanup{&pending};
  // Blobs already stored (same hash and size) or repeated in `blobs` are
  // written once or not at all: a rename over an existing file frees its
  // blocks, which costs a synchronous discard on some filesystems.
  std::vector<std::string> hashes;
  hashes.reserve(blobs.size());
  std::set<std::string> directories;
  std::set<std::string> seen;
  for (const std::string& data : blobs) {
    RETURN_IF_ERROR(CheckSizeLimit(data.size()));
    std::string hash = Sha256Hex(data);
    hashes.push_back(hash);
    if (!seen.insert(hash).second) continue;
    absl::StatusOr<uint64_t> stored = Size(hash);
    if (stored.ok() && *stored == data.size()) {
      // Its rename may not have reached the disk yet (a batch that failed
      // after installing it): its directory is synced with this batch's.
      directories.insert(ObjectDirectory(hash));
      continue;
    }
    Pending blob{NewTempPath(), std::move(hash)};
    ScopedFd fd(::open(blob.temp.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid())
      return ErrnoToStatus(errno, absl::StrCat("create ", blob.temp));
    pending.push_back(std::move(blob));
    RETURN_IF_ERROR(WriteAll(fd.get(), data, pending.back().temp));
  }
  // One sync of the filesystem instead of one fsync per file.
  ScopedFd tmp_dir(
      ::open((root_ + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!tmp_dir.valid() || ::syncfs(tmp_dir.get()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("syncfs ", root_, "/tmp"));
  }
  for (const Pending& blob : pending) {
    RETURN_IF_ERROR(Install(blob.temp, blob.hash, /*sync_directory=*/false));
    ++cleanup.installed;
    directories.insert(ObjectDirectory(blob.hash));
  }
  for (const std::string& dir : directories)
    RETURN_IF_ERROR(SyncDirectory(dir));
  return hashes;
}

absl::StatusOr<std::unique_ptr<BlobWriter>> BlobStore::NewWriter() {
  std::string temp = NewTempPath();
  ScopedFd fd(
      ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", temp));
  return std::unique_ptr<BlobWriter>(new BlobWriter(this, temp, std::move(fd)));
}

absl::StatusOr<std::string> BlobStore::Put(absl::string_view data) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, NewWriter());
  RETURN_IF_ERROR(writer->Append(data));
  return writer->Commit();
}

absl::StatusOr<std::string> BlobStore::PutFile(const std::string& path) {
  ScopedFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, NewWriter());
  std::string buffer(kIoChunk, '\0');
  while (true) {
    ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    RETURN_IF_ERROR(writer->Append(
        absl::string_view(buffer.data(), static_cast<size_t>(n))));
  }
  return writer->Commit();
}

bool BlobStore::Contains(absl::string_view hash) const {
  absl::StatusOr<std::string> path = ObjectPath(hash);
  if (!path.ok()) return false;
  struct stat info;
  return ::stat(path->c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

absl::StatusOr<uint64_t> BlobStore::Size(absl::string_view hash) const {
  ASSIGN_OR_RETURN(std::string path, ObjectPath(hash));
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("blob ", hash));
  }
  return static_cast<uint64_t>(info.st_size);
}

absl::StatusOr<std::string> BlobStore::Get(absl::string_view hash) const {
  ASSIGN_OR_RETURN(std::string path, ObjectPath(hash));
  absl::StatusOr<std::string> data = ReadFileToString(path);
  if (!data.ok()) {
    return absl::Status(
        data.status().code(),
        absl::StrCat("blob ", hash, ": ", data.status().message()));
  }
  std::string actual = Sha256Hex(*data);
  if (actual != hash) {
    return absl::DataLossError(absl::StrCat("blob ", hash,
                                            " is corrupted: its bytes at ",
                                            path, " hash to ", actual));
  }
  return data;
}

absl::StatusOr<std::string> BlobStore::ReadRange(absl::string_view hash,
                                                 uint64_t offset,
                                                 uint64_t max_bytes) const {
  ASSIGN_OR_RETURN(std::string path, ObjectPath(hash));
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("blob ", hash));
  struct stat info;
  if (::fstat(fd.get(), &info) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  uint64_t size = static_cast<uint64_t>(info.st_size);
  if (offset > size) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset,
                                              " is past the end of blob ", hash,
                                              " (", size, " bytes)"));
  }
  uint64_t length = std::min<uint64_t>(max_bytes, size - offset);
  std::string out(length, '\0');
  uint64_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd.get(), out.data() + done, length - done,
                        static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("read ", path));
    }
    if (n == 0) break;  // truncated underneath us; return what exists
    done += static_cast<uint64_t>(n);
  }
  out.resize(done);
  return out;
}

absl::Status BlobStore::Verify(absl::string_view hash) const {
  ASSIGN_OR_RETURN(std::string path, ObjectPath(hash));
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("blob ", hash));
  ASSIGN_OR_RETURN(std::string actual, HashOpenFile(fd.get(), path));
  if (actual != hash) {
    return absl::DataLossError(absl::StrCat("blob ", hash,
                                            " is corrupted: its bytes at ",
                                            path, " hash to ", actual));
  }
  return absl::OkStatus();
}

absl::Status BlobStore::CopyToFile(absl::string_view hash,
                                   const std::string& path) const {
  ASSIGN_OR_RETURN(std::string data, Get(hash));
  return WriteFileAtomically(path, data);
}

absl::StatusOr<uint64_t> BlobStore::UploadOffset(absl::string_view upload_id) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  absl::MutexLock lock(&uploads_mu_);
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return 0;
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  return static_cast<uint64_t>(info.st_size);
}

absl::Status BlobStore::CreateUpload(absl::string_view upload_id) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  absl::MutexLock lock(&uploads_mu_);
  ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", path));
  StampModified(fd.get(), NowMs());
  return absl::OkStatus();
}

absl::Status BlobStore::AppendUpload(absl::string_view upload_id,
                                     uint64_t offset, absl::string_view data,
                                     bool create) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  RETURN_IF_ERROR(CheckSizeLimit(offset + data.size()));
  absl::MutexLock lock(&uploads_mu_);
  ScopedFd fd(::open(path.c_str(),
                     O_WRONLY | O_CLOEXEC | (create ? O_CREAT : 0), 0600));
  if (!fd.valid()) {
    if (errno == ENOENT && !create) {
      return absl::NotFoundError(absl::StrCat(
          "upload ", upload_id, " no longer exists (replaced or expired)"));
    }
    return ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  struct stat info;
  if (::fstat(fd.get(), &info) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  uint64_t current = static_cast<uint64_t>(info.st_size);
  if (offset != current) {
    return absl::FailedPreconditionError(
        absl::StrCat("upload ", upload_id, " is at offset ", current,
                     "; a chunk at offset ", offset, " cannot be appended"));
  }
  if (::lseek(fd.get(), static_cast<off_t>(offset), SEEK_SET) < 0) {
    return ErrnoToStatus(errno, absl::StrCat("seek ", path));
  }
  absl::Status written = WriteAll(fd.get(), data, path);
  if (written.ok() && ::fdatasync(fd.get()) != 0) {
    written = ErrnoToStatus(errno, absl::StrCat("fdatasync ", path));
  }
  if (!written.ok()) {
    // Keep only what is known to be whole: cut back to where this chunk began.
    if (::ftruncate(fd.get(), static_cast<off_t>(offset)) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("truncate ", path));
    }
    return written;
  }
  // The modification time says when the upload last made progress; it is
  // set from the store's clock so expiry follows the same clock.
  StampModified(fd.get(), NowMs());
  // No directory fsync for a new partial upload: nothing about it is
  // acknowledged, and one lost in a crash is only uploaded again.
  return absl::OkStatus();
}

absl::StatusOr<std::string> BlobStore::CommitUpload(
    absl::string_view upload_id, absl::string_view expected_hash) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  if (!IsSha256Hex(expected_hash)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected hash '", expected_hash, "' is not 64 lowercase hex digits"));
  }
  absl::MutexLock lock(&uploads_mu_);
  ASSIGN_OR_RETURN(std::string actual, HashUploadLocked(path, upload_id));
  if (actual != expected_hash) {
    ::unlink(path.c_str());
    return absl::DataLossError(
        absl::StrCat("upload ", upload_id, " hashes to ", actual, ", expected ",
                     expected_hash, "; the partial upload was discarded"));
  }
  // The partial file was fdatasynced chunk by chunk, so one rename commits it;
  // a crash before that rename leaves the whole upload in place to commit
  // again.
  // The rename is journalled as one change to both directories; the fsync
  // of the object's directory in Install makes it durable.
  RETURN_IF_ERROR(Install(path, actual));
  return actual;
}

absl::Status BlobStore::AbortUpload(absl::string_view upload_id) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  absl::MutexLock lock(&uploads_mu_);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("remove ", path));
  }
  return absl::OkStatus();
}

int64_t BlobStore::NowMs() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<std::string> BlobStore::HashUploadLocked(
    const std::string& path, absl::string_view upload_id) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("no upload named ", upload_id));
    }
    return ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  return HashOpenFile(fd.get(), path);
}

absl::StatusOr<std::string> BlobStore::HashUpload(absl::string_view upload_id) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  absl::MutexLock lock(&uploads_mu_);
  return HashUploadLocked(path, upload_id);
}

absl::Status BlobStore::InstallVerifiedUpload(absl::string_view upload_id,
                                              absl::string_view hash) {
  ASSIGN_OR_RETURN(std::string path, UploadPath(upload_id));
  if (!IsSha256Hex(hash)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hash '", hash, "' is not 64 lowercase hex digits"));
  }
  absl::MutexLock lock(&uploads_mu_);
  if (::access(path.c_str(), F_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("no upload named ", upload_id));
  }
  return Install(path, std::string(hash));
}

absl::StatusOr<std::vector<UploadInfo>> BlobStore::ListUploads(
    absl::string_view prefix) {
  std::vector<UploadInfo> uploads;
  absl::MutexLock lock(&uploads_mu_);
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(root_ + "/uploads", error)) {
    const std::string name = entry.path().filename().string();
    constexpr absl::string_view kSuffix = ".part";
    if (name.size() <= kSuffix.size() ||
        name.compare(name.size() - kSuffix.size(), kSuffix.size(),
                     kSuffix.data()) != 0) {
      continue;
    }
    const std::string id = name.substr(0, name.size() - kSuffix.size());
    if (id.compare(0, prefix.size(), prefix.data(), prefix.size()) != 0)
      continue;
    struct stat info;
    if (::stat(entry.path().c_str(), &info) != 0) continue;  // just removed
    UploadInfo upload;
    upload.upload_id = id;
    upload.bytes = static_cast<uint64_t>(info.st_size);
    upload.modified_ms =
        int64_t{info.st_mtim.tv_sec} * 1000 + info.st_mtim.tv_nsec / 1000000;
    uploads.push_back(std::move(upload));
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("list ", root_, "/uploads: ", error.message()));
  }
  return uploads;
}

absl::StatusOr<int> BlobStore::ExpireUploads(int64_t max_age_ms) {
  ASSIGN_OR_RETURN(std::vector<UploadInfo> uploads, ListUploads());
  const int64_t cutoff = NowMs() - max_age_ms;
  int removed = 0;
  for (const UploadInfo& upload : uploads) {
    if (upload.modified_ms >= cutoff) continue;
    RETURN_IF_ERROR(AbortUpload(upload.upload_id));
    ++removed;
  }
  return removed;
}

absl::StatusOr<BlobStoreStats> BlobStore::Stats() const {
  BlobStoreStats stats;
  std::error_code error;
  for (auto it = std::filesystem::recursive_directory_iterator(
           root_ + "/objects", error);
       !error && it != std::filesystem::recursive_directory_iterator();
       it.increment(error)) {
    if (!it->is_regular_file(error)) continue;
    ++stats.blob_count;
    stats.blob_bytes += it->file_size(error);
  }
  for (const auto& entry :
       std::filesystem::directory_iterator(root_ + "/uploads", error)) {
    if (!entry.is_regular_file(error)) continue;
    ++stats.upload_count;
    stats.upload_bytes += entry.file_size(error);
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("walk ", root_, ": ", error.message()));
  }
  return stats;
}

}  // namespace openforce
