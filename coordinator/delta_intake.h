// Delta intake: what workers deliver. The checks on an upload's first
// message (call and header signatures, job, round, parent, lease, size,
// samples, the worker's open uploads), durable chunks, the hash and tensor
// checks on the complete partial upload (outside the decision lock), and the
// accepted or rejected result recorded before the worker hears of it;
// validation reports (validation_intake.cc); partial uploads past their age.
#ifndef OPENFORCE_COORDINATOR_DELTA_INTAKE_H_
#define OPENFORCE_COORDINATOR_DELTA_INTAKE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/internal/coordinator_core.h"
#include "coordinator/state_store.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

// An upload in progress: what BeginUpload() checked, for the chunks after.
struct DeltaUpload {
  v1::DeltaHeader header;
  UnitRecord unit;
  std::string upload_id;
  uint64_t received = 0;
  bool already_accepted = false;  // a retry of an acknowledged upload
};

class DeltaIntake {
 public:
  explicit DeltaIntake(CoordinatorCore* core) : core_(*core) {}
  DeltaIntake(const DeltaIntake&) = delete;
  DeltaIntake& operator=(const DeltaIntake&) = delete;

  [[nodiscard]] absl::StatusOr<v1::GetUploadOffsetResponse> GetUploadOffset(
      const v1::GetUploadOffsetRequest& request);
  // Checks the first message of an upload before any byte is stored.
  // Rejections carry a RejectReason.
  [[nodiscard]] absl::StatusOr<DeltaUpload> BeginUpload(
      const v1::UploadDeltaChunk& first);
  // Appends a chunk durably; the offset must continue the upload.
  [[nodiscard]] absl::Status AppendUpload(DeltaUpload* upload, uint64_t offset,
                                          const std::string& data);
  // When every byte arrived: verifies hash and content on the partial upload
  // (outside the decision lock), and only for a delta that passes moves it
  // into the blob store and records the result durably before reporting it
  // accepted; a refused delta is deleted. Before that: how far it got.
  [[nodiscard]] absl::StatusOr<v1::UploadDeltaResponse> FinishUpload(
      DeltaUpload* upload);
  // Stores a validation unit's signed report after checking the call, the
  // signature, the lease and every field against the round (its candidate,
  // parent, slice); rejections carry a RejectReason. A retry of a stored
  // report is acknowledged again.
  [[nodiscard]] absl::StatusOr<v1::SubmitValidationResponse> SubmitValidation(
      const v1::SubmitValidationRequest& request);
  // Removes partial uploads past their age: at most every ten seconds, or
  // now when `force` (at startup).
  [[nodiscard]] absl::Status SweepUploads(bool force);

 private:
  // Everything about an upload's header but the signature, against the
  // current state: unit, job, round, parent version, lease (or an
  // acknowledged retry).
  absl::StatusOr<DeltaUpload> CheckUnitForUpload(const v1::DeltaHeader& header);
  // The result record of `upload`, to store accepted or rejected.
  ResultRecord ResultOf(const DeltaUpload& upload, bool accepted) const;
  // Records a rejected result for `upload`'s unit (which goes back to
  // pending) and returns the rejection to send.
  absl::Status RejectDelta(const DeltaUpload& upload, v1::RejectReason reason,
                           absl::StatusCode code, const std::string& message);
  // Adaptive replication, after an accepted result: a trusted worker's result
  // stands alone (its shard's pending replicas are skipped), except for
  // random re-checks.
  absl::Status MaybeTrustResult(const JobRecord& job, const UnitRecord& unit,
                                const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_.decision_mu());

  CoordinatorCore& core_;
  // Serialises opening delta uploads (the per-worker cap and the
  // replacement of a unit's abandoned upload).
  absl::Mutex upload_slots_mu_;
  absl::Mutex sweep_mu_;
  int64_t last_upload_sweep_ms_ ABSL_GUARDED_BY(sweep_mu_) = 0;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_DELTA_INTAKE_H_
