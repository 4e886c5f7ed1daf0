// Content-addressed blob store on local disk. Every blob is named by the hex
// SHA-256 of its bytes; writes go to a temporary file that is fsynced and
// renamed into place (and the directory fsynced), so that a blob either exists
// whole or not at all, and a blob that exists is on disk. Partial uploads
// persist under an upload id so that a client can resume at the offset the
// store reports. Layout under the root:
//   objects/ab/abcdef...   committed blobs (first two hex digits fan out
//   directories) tmp/                   in-flight writes; emptied on Open(),
//   after a crash uploads/<id>.part      resumable partial uploads
#ifndef OPENFORCE_COMMON_BLOB_STORE_H_
#define OPENFORCE_COMMON_BLOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/sha256.h"

namespace openforce {

struct BlobStoreOptions {
  // Largest blob accepted through a writer or an upload; 0 means no limit.
  uint64_t max_blob_bytes = 0;
  // Unix milliseconds; stamps partial uploads when they receive data, so
  // that their age can be judged (tests substitute their own clock).
  std::function<int64_t()> now_ms;
};

// A partial upload on disk.
struct UploadInfo {
  std::string upload_id;
  uint64_t bytes = 0;
  int64_t modified_ms = 0;  // when it last received data
};

struct BlobStoreStats {
  uint64_t blob_count = 0;
  uint64_t blob_bytes = 0;
  uint64_t upload_count = 0;
  uint64_t upload_bytes = 0;
};

class BlobStore;

// Streams one blob into the store. Destroying a writer without Commit()
// discards it.
class BlobWriter {
 public:
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;
  ~BlobWriter();

  [[nodiscard]] absl::Status Append(absl::string_view data);
  // Makes the blob durable under its hash and returns the hash. When
  // `expected_hash` is not empty and differs, nothing is stored and the result
  // is DataLoss.
  [[nodiscard]] absl::StatusOr<std::string> Commit(
      absl::string_view expected_hash = "");
  uint64_t size() const { return size_; }

 private:
  friend class BlobStore;
  BlobWriter(BlobStore* store, std::string temp_path, ScopedFd fd);

  BlobStore* store_;
  std::string temp_path_;
  ScopedFd fd_;
  Sha256 hasher_;
  uint64_t size_ = 0;
  bool done_ = false;
};

class BlobStore {
 public:
  // Opens (creating if needed) the store under `root` and removes temporary
  // files that a crash may have left.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BlobStore>> Open(
      const std::string& root, BlobStoreOptions options = {});

  [[nodiscard]] absl::StatusOr<std::unique_ptr<BlobWriter>> NewWriter();
  [[nodiscard]] absl::StatusOr<std::string> Put(absl::string_view data);
  // Streams a file into the store and returns its hash.
  [[nodiscard]] absl::StatusOr<std::string> PutFile(const std::string& path);
  // Stores many blobs (a job's shards) durably with one filesystem sync for
  // all of them instead of an fsync per file: each is written to a
  // temporary file, one syncfs() makes them all durable, then each is
  // renamed into place and every directory that changed is fsynced once.
  // Their hashes, in order; on failure none is acknowledged (some may exist).
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> PutMany(
      const std::vector<std::string>& blobs);

  bool Contains(absl::string_view hash) const;
  [[nodiscard]] absl::StatusOr<uint64_t> Size(absl::string_view hash) const;
  // The whole blob, verified against its name: DataLoss when the bytes on disk
  // no longer hash to it.
  [[nodiscard]] absl::StatusOr<std::string> Get(absl::string_view hash) const;
  // Up to `max_bytes` from `offset`, unverified; callers streaming a blob
  // verify the hash of what they assembled (and the store can Verify() on its
  // side).
  [[nodiscard]] absl::StatusOr<std::string> ReadRange(absl::string_view hash,
                                                      uint64_t offset,
                                                      uint64_t max_bytes) const;
  // Rehashes the blob: OK, NotFound, or DataLoss naming the hash that was
  // found.
  [[nodiscard]] absl::Status Verify(absl::string_view hash) const;
  // Copies a verified blob to `path` (atomically, fsynced).
  [[nodiscard]] absl::Status CopyToFile(absl::string_view hash,
                                        const std::string& path) const;

  // Resumable uploads. An upload id is 1-128 characters of [A-Za-z0-9_-].
  // Bytes received so far for `upload_id` (0 when it has not started).
  [[nodiscard]] absl::StatusOr<uint64_t> UploadOffset(
      absl::string_view upload_id);
  // Appends `data` at `offset`, which must equal UploadOffset()
  // (FailedPrecondition with the expected offset otherwise). Data is fsynced
  // before this returns. With `create` false the upload must exist already
  // (CreateUpload()): NotFound when it was aborted or expired meanwhile, so
  // a removed upload is never brought back by a late chunk.
  [[nodiscard]] absl::Status AppendUpload(absl::string_view upload_id,
                                          uint64_t offset,
                                          absl::string_view data,
                                          bool create = true);
  // Creates an empty upload (no-op when it exists), so that it counts as
  // open before its first byte arrives.
  [[nodiscard]] absl::Status CreateUpload(absl::string_view upload_id);
  // Verifies the upload against `expected_hash`, moves it into the store and
  // returns the hash. On a mismatch the partial upload is discarded and the
  // result is DataLoss.
  [[nodiscard]] absl::StatusOr<std::string> CommitUpload(
      absl::string_view upload_id, absl::string_view expected_hash);
  [[nodiscard]] absl::Status AbortUpload(absl::string_view upload_id);
  // Path of the partial upload, so its bytes can be checked before they are
  // committed; InvalidArgument for a malformed id.
  [[nodiscard]] absl::StatusOr<std::string> UploadPath(
      absl::string_view upload_id) const;
  // SHA-256 of the bytes received so far.
  [[nodiscard]] absl::StatusOr<std::string> HashUpload(
      absl::string_view upload_id);
  // Moves an upload the caller has already hashed (HashUpload) to `hash`
  // into the store without reading it again. Only for uploads that can no
  // longer grow.
  [[nodiscard]] absl::Status InstallVerifiedUpload(absl::string_view upload_id,
                                                   absl::string_view hash);
  // Partial uploads whose id starts with `prefix`.
  [[nodiscard]] absl::StatusOr<std::vector<UploadInfo>> ListUploads(
      absl::string_view prefix = "");
  // Removes partial uploads that received nothing for `max_age_ms`; how many.
  [[nodiscard]] absl::StatusOr<int> ExpireUploads(int64_t max_age_ms);
  // What the store holds now (walks the directories).
  [[nodiscard]] absl::StatusOr<BlobStoreStats> Stats() const;

  const std::string& root() const { return root_; }
  // Path of a committed blob; InvalidArgument when `hash` is not a hex
  // SHA-256, so no caller-supplied name can point outside the store.
  absl::StatusOr<std::string> ObjectPath(absl::string_view hash) const;

 private:
  friend class BlobWriter;
  BlobStore(std::string root, BlobStoreOptions options)
      : root_(std::move(root)), options_(options) {}

  std::string NewTempPath();
  int64_t NowMs() const;
  absl::StatusOr<std::string> HashUploadLocked(const std::string& path,
                                               absl::string_view upload_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(uploads_mu_);
  // Renames a fully written, fsynced file (temporary or upload) into place
  // under `hash`; with `sync_directory` false the caller fsyncs the object's
  // directory (ObjectDirectory) itself, once for many.
  absl::Status Install(const std::string& temp_path, const std::string& hash,
                       bool sync_directory = true);
  std::string ObjectDirectory(absl::string_view hash) const;
  absl::Status CheckSizeLimit(uint64_t size) const;

  const std::string root_;
  const BlobStoreOptions options_;
  absl::Mutex temp_mu_;
  uint64_t temp_counter_ ABSL_GUARDED_BY(temp_mu_) = 0;
  // Serialises operations on partial uploads: two requests for the same id must
  // not interleave their offset checks and writes.
  absl::Mutex uploads_mu_;
};

}  // namespace openforce

#endif  // OPENFORCE_COMMON_BLOB_STORE_H_
