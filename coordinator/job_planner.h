// Job planning: what an operator hands the coordinator. Admin blob uploads
// (model files, datasets), a submitted job's checks (model, tokenizer, LoRA
// targets, rule, replication, limits), its plan (held-out split, shards,
// initial adapter, memory estimate, round 1's units), and cancellation.
#ifndef OPENFORCE_COORDINATOR_JOB_PLANNER_H_
#define OPENFORCE_COORDINATOR_JOB_PLANNER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/internal/coordinator_core.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

// An admin blob upload in progress.
struct BlobUpload {
  std::string sha256;
  uint64_t size = 0;
  std::string upload_id;
  uint64_t received = 0;
  bool complete = false;  // already in the store
};

class JobPlanner {
 public:
  explicit JobPlanner(CoordinatorCore* core) : core_(*core) {}
  JobPlanner(const JobPlanner&) = delete;
  JobPlanner& operator=(const JobPlanner&) = delete;

  // A blob upload starts with the first chunk's declared hash and size; a
  // first chunk with no data only asks how far an earlier upload got.
  [[nodiscard]] absl::StatusOr<BlobUpload> BeginBlobUpload(
      const v1::UploadBlobChunk& first);
  [[nodiscard]] absl::Status AppendBlobChunk(BlobUpload* upload,
                                             const v1::UploadBlobChunk& chunk);
  [[nodiscard]] absl::StatusOr<v1::UploadBlobResponse> FinishBlobUpload(
      BlobUpload* upload);
  // Checks the spec against the blobs it names and plans the job; nothing
  // is stored for a refused spec.
  [[nodiscard]] absl::StatusOr<v1::SubmitJobResponse> SubmitJob(
      const v1::SubmitJobRequest& request);
  [[nodiscard]] absl::StatusOr<v1::CancelJobResponse> CancelJob(
      const v1::CancelJobRequest& request);

 private:
  CoordinatorCore& core_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_JOB_PLANNER_H_
