// The coordinator's logic, independent of gRPC, as five parts over one shared
// core (internal/coordinator_core.h): Scheduler (registration, heartbeats,
// leases), DeltaIntake (uploads and validation reports), RoundCloser
// (aggregation and publishing), JobPlanner (admin blobs, submission,
// cancellation) and Reporter (status views). Coordinator owns them, runs the
// periodic work, and offers their calls in one place for the gRPC services
// (service.h). State lives in a StateStore and blobs in a BlobStore, both
// under the data directory.
#ifndef OPENFORCE_COORDINATOR_COORDINATOR_H_
#define OPENFORCE_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "coordinator/coordinator_options.h"
#include "coordinator/delta_intake.h"
#include "coordinator/internal/coordinator_core.h"
#include "coordinator/job_planner.h"
#include "coordinator/metrics.h"
#include "coordinator/reporter.h"
#include "coordinator/round_closer.h"
#include "coordinator/scheduler.h"
#include "coordinator/state_store.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

class Coordinator {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Coordinator>> Create(
      CoordinatorOptions options, Ed25519PrivateKey identity,
      std::unique_ptr<StateStore> state, std::unique_ptr<BlobStore> blobs);

  // Worker calls (each part's header says what it checks).
  [[nodiscard]] absl::StatusOr<v1::RegisterResponse> Register(
      const v1::RegisterRequest& request) {
    return scheduler_.Register(request);
  }
  [[nodiscard]] absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      const v1::HeartbeatRequest& request) {
    return scheduler_.Heartbeat(request);
  }
  [[nodiscard]] absl::StatusOr<v1::LeaseWorkUnitResponse> LeaseWorkUnit(
      const v1::LeaseWorkUnitRequest& request) {
    return scheduler_.LeaseWorkUnit(request);
  }
  [[nodiscard]] absl::Status ReleaseWorkUnit(
      const v1::ReleaseWorkUnitRequest& request) {
    return scheduler_.ReleaseWorkUnit(request);
  }
  [[nodiscard]] absl::Status CheckFetchAllowed(
      const v1::FetchBlobRequest& request) {
    return scheduler_.CheckFetchAllowed(request);
  }
  [[nodiscard]] absl::StatusOr<v1::GetUploadOffsetResponse> GetUploadOffset(
      const v1::GetUploadOffsetRequest& request) {
    return intake_.GetUploadOffset(request);
  }
  [[nodiscard]] absl::StatusOr<DeltaUpload> BeginUpload(
      const v1::UploadDeltaChunk& first) {
    return intake_.BeginUpload(first);
  }
  [[nodiscard]] absl::Status AppendUpload(DeltaUpload* upload, uint64_t offset,
                                          const std::string& data) {
    return intake_.AppendUpload(upload, offset, data);
  }
  [[nodiscard]] absl::StatusOr<v1::UploadDeltaResponse> FinishUpload(
      DeltaUpload* upload) {
    return intake_.FinishUpload(upload);
  }
  [[nodiscard]] absl::StatusOr<v1::SubmitValidationResponse> SubmitValidation(
      const v1::SubmitValidationRequest& request) {
    return intake_.SubmitValidation(request);
  }
  [[nodiscard]] absl::StatusOr<v1::GetLatestAdapterResponse> GetLatestAdapter(
      const v1::GetLatestAdapterRequest& request) {
    return reporter_.GetLatestAdapter(request);
  }
  const BlobStore& blobs() const { return core_.blobs(); }

  // Admin calls (the service checks the admin token first).
  [[nodiscard]] absl::StatusOr<BlobUpload> BeginBlobUpload(
      const v1::UploadBlobChunk& first) {
    return planner_.BeginBlobUpload(first);
  }
  [[nodiscard]] absl::Status AppendBlobChunk(BlobUpload* upload,
                                             const v1::UploadBlobChunk& chunk) {
    return planner_.AppendBlobChunk(upload, chunk);
  }
  [[nodiscard]] absl::StatusOr<v1::UploadBlobResponse> FinishBlobUpload(
      BlobUpload* upload) {
    return planner_.FinishBlobUpload(upload);
  }
  [[nodiscard]] absl::StatusOr<v1::SubmitJobResponse> SubmitJob(
      const v1::SubmitJobRequest& request) {
    return planner_.SubmitJob(request);
  }
  [[nodiscard]] absl::StatusOr<v1::CancelJobResponse> CancelJob(
      const v1::CancelJobRequest& request) {
    return planner_.CancelJob(request);
  }
  [[nodiscard]] absl::StatusOr<v1::JobStatus> GetJob(
      const std::string& job_id) {
    return reporter_.GetJob(job_id);
  }
  [[nodiscard]] absl::StatusOr<v1::ListJobsResponse> ListJobs(
      const v1::ListJobsRequest& request) {
    return reporter_.ListJobs(request);
  }
  [[nodiscard]] absl::StatusOr<v1::ListWorkersResponse> ListWorkers(
      const v1::ListWorkersRequest& request) {
    return reporter_.ListWorkers(request);
  }
  [[nodiscard]] absl::StatusOr<v1::GetStoreStatusResponse> GetStoreStatus() {
    return reporter_.GetStoreStatus();
  }
  [[nodiscard]] absl::StatusOr<MetricsSnapshot> CollectMetricsSnapshot() {
    return reporter_.CollectMetricsSnapshot();
  }

  // Periodic work: removes partial uploads past their age, writes the
  // liveness heard, expires leases (past their deadline, or held by a worker
  // that stopped heartbeating), and closes rounds that are complete or past
  // their deadline (aggregating, signing and publishing). Safe to call at any
  // time; the server calls it a few times a second.
  [[nodiscard]] absl::Status Tick();

  // Returns once everything the calls so far wrote is on disk. Services
  // call it before answering, so no acknowledgement precedes its fsync, and
  // concurrent calls share one.
  [[nodiscard]] absl::Status Sync() { return core_.state().Sync(); }

  const Ed25519PublicKey& public_key() const { return core_.public_key(); }
  CoordinatorMetrics& metrics() const { return core_.metrics(); }

 private:
  Coordinator(CoordinatorOptions options, Ed25519PrivateKey identity,
              std::unique_ptr<StateStore> state,
              std::unique_ptr<BlobStore> blobs);

  CoordinatorCore core_;
  Scheduler scheduler_{&core_};
  DeltaIntake intake_{&core_};
  RoundCloser closer_{&core_};
  JobPlanner planner_{&core_};
  Reporter reporter_{&core_};
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_COORDINATOR_H_
