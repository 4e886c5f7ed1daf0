// The coordinator's logic, independent of gRPC: registration, scheduling and
// leases, delta uploads and their checks, rounds and their aggregation into
// signed adapter versions, and the admin operations. The gRPC services
// (service.h) translate calls into these methods; state lives in a StateStore
// and blobs in a BlobStore, both under the data directory.
#ifndef OPENFORCE_COORDINATOR_COORDINATOR_H_
#define OPENFORCE_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "coordinator/metrics.h"
#include "coordinator/state_store.h"
#include "coordinator/worker_liveness.h"
#include "coordinator/worker_sessions.h"
#include "lora/aggregation_rule.h"
#include "lora/llama_config.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

struct CoordinatorOptions {
  std::string data_dir;
  // Empty: enrollment is open, anyone with a key may register.
  std::string enrollment_token;
  uint32_t heartbeat_interval_ms = 10'000;
  // A worker whose last heartbeat is older than this gets no new lease.
  uint32_t worker_timeout_ms = 60'000;
  // What LeaseWorkUnit tells a worker to wait when nothing fits.
  uint32_t lease_retry_ms = 5'000;
  uint64_t max_upload_bytes = 256ull << 20;  // one delta
  uint64_t max_blob_bytes = 64ull << 30;     // one admin-uploaded file
  // Concurrent leases one worker may hold in one job, unless the job sets
  // its own.
  uint32_t max_leases_per_worker = 1;
  // A lease whose holder sent no heartbeat for this long goes back to
  // pending (0: three heartbeat intervals, at least 5 s).
  uint32_t lease_heartbeat_grace_ms = 0;
  // Partial delta uploads one worker may have open at once.
  uint32_t max_open_uploads_per_worker = 4;
  // Partial uploads (deltas and admin blobs) that received nothing for this
  // long are removed, at startup too.
  int64_t upload_expiry_ms = 3'600'000;
  // Wall clock in Unix milliseconds; tests substitute their own.
  std::function<int64_t()> now_ms;
  // Uniform in [0, 1): adaptive replication's random re-checks of trusted
  // workers. Unset: a seeded-from-the-OS generator; tests substitute theirs.
  std::function<double()> random_fraction;
  // Where events are counted (metrics.h). Unset: counted, not exported.
  std::shared_ptr<CoordinatorMetrics> metrics;
};

// An upload in progress: what BeginUpload() checked, for the chunks after.
struct DeltaUpload {
  v1::DeltaHeader header;
  UnitRecord unit;
  std::string upload_id;
  uint64_t received = 0;
  bool already_accepted = false;  // a retry of an acknowledged upload
};

// An admin blob upload in progress.
struct BlobUpload {
  std::string sha256;
  uint64_t size = 0;
  std::string upload_id;
  uint64_t received = 0;
  bool complete = false;  // already in the store
};

class Coordinator {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Coordinator>> Create(
      CoordinatorOptions options, Ed25519PrivateKey identity,
      std::unique_ptr<StateStore> state, std::unique_ptr<BlobStore> blobs);

  // Worker calls.
  [[nodiscard]] absl::StatusOr<v1::RegisterResponse> Register(
      const v1::RegisterRequest& request);
  [[nodiscard]] absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      const v1::HeartbeatRequest& request);
  [[nodiscard]] absl::StatusOr<v1::LeaseWorkUnitResponse> LeaseWorkUnit(
      const v1::LeaseWorkUnitRequest& request);
  [[nodiscard]] absl::Status ReleaseWorkUnit(
      const v1::ReleaseWorkUnitRequest& request);
  [[nodiscard]] absl::StatusOr<v1::GetUploadOffsetResponse> GetUploadOffset(
      const v1::GetUploadOffsetRequest& request);
  // Checks the first message of an upload (call signature, header
  // signature, job, round, parent, lease, size, sample count, the worker's
  // open uploads) before any byte is stored. Rejections carry a
  // RejectReason.
  [[nodiscard]] absl::StatusOr<DeltaUpload> BeginUpload(
      const v1::UploadDeltaChunk& first);
  // Appends a chunk durably; the offset must continue the upload.
  [[nodiscard]] absl::Status AppendUpload(DeltaUpload* upload, uint64_t offset,
                                          const std::string& data);
  // When every byte arrived: verifies hash and content on the partial upload
  // (outside the global lock), and only for a delta that passes moves it into
  // the blob store and records the result durably before reporting it
  // accepted; a refused delta is deleted. Before that: how far it got.
  [[nodiscard]] absl::StatusOr<v1::UploadDeltaResponse> FinishUpload(
      DeltaUpload* upload);
  // Blobs a caller may fetch: for an authenticated worker, what a lease it
  // holds needs (base model files, parent adapter, shard); published adapter
  // files for anyone.
  [[nodiscard]] absl::Status CheckFetchAllowed(
      const v1::FetchBlobRequest& request);
  const BlobStore& blobs() const { return *blobs_; }
  [[nodiscard]] absl::StatusOr<v1::GetLatestAdapterResponse> GetLatestAdapter(
      const v1::GetLatestAdapterRequest& request);
  // Stores a validation unit's signed report after checking the call, the
  // signature, the lease and every field against the round (its candidate,
  // parent, slice); rejections carry a RejectReason. A retry of a stored
  // report is acknowledged again (validation_intake.cc).
  [[nodiscard]] absl::StatusOr<v1::SubmitValidationResponse> SubmitValidation(
      const v1::SubmitValidationRequest& request);

  // Admin calls (the service checks the admin token first). A blob upload
  // starts with the first chunk's declared hash and size; a first chunk with
  // no data only asks how far an earlier upload got.
  [[nodiscard]] absl::StatusOr<BlobUpload> BeginBlobUpload(
      const v1::UploadBlobChunk& first);
  [[nodiscard]] absl::Status AppendBlobChunk(BlobUpload* upload,
                                             const v1::UploadBlobChunk& chunk);
  [[nodiscard]] absl::StatusOr<v1::UploadBlobResponse> FinishBlobUpload(
      BlobUpload* upload);
  [[nodiscard]] absl::StatusOr<v1::SubmitJobResponse> SubmitJob(
      const v1::SubmitJobRequest& request);
  [[nodiscard]] absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id);
  [[nodiscard]] absl::StatusOr<v1::ListJobsResponse> ListJobs(
      const v1::ListJobsRequest& request);
  [[nodiscard]] absl::StatusOr<v1::CancelJobResponse> CancelJob(
      const v1::CancelJobRequest& request);
  [[nodiscard]] absl::StatusOr<v1::ListWorkersResponse> ListWorkers(
      const v1::ListWorkersRequest& request);
  [[nodiscard]] absl::StatusOr<v1::GetStoreStatusResponse> GetStoreStatus();

  // Periodic work: expires leases (past their deadline, or held by a worker
  // that stopped heartbeating), removes partial uploads past their age, and
  // closes rounds that are complete or past their deadline (aggregating,
  // signing and publishing). Safe to call at any time; the server calls it a
  // few times a second.
  [[nodiscard]] absl::Status Tick();

  // Returns once everything the calls so far wrote is on disk. Services
  // call it before answering, so no acknowledgement precedes its fsync, and
  // concurrent calls share one.
  [[nodiscard]] absl::Status Sync() { return state_->Sync(); }

  const Ed25519PublicKey& public_key() const { return public_key_; }
  CoordinatorMetrics& metrics() const { return *options_.metrics; }
  // The levels a scrape reports (metrics.h): units of open rounds by kind
  // and state, workers by tier and state, jobs by state, blob store bytes.
  [[nodiscard]] absl::StatusOr<MetricsSnapshot> CollectMetricsSnapshot();

 private:
  Coordinator(CoordinatorOptions options, Ed25519PrivateKey identity,
              std::unique_ptr<StateStore> state,
              std::unique_ptr<BlobStore> blobs);

  int64_t Now() const { return options_.now_ms(); }
  absl::StatusOr<WorkerRecord> RequireWorker(const std::string& worker_id);
  // The registered worker `worker_id` when `auth` proves the call is its own
  // (worker_sessions.h); `digest` is the request's CallDigest.
  absl::StatusOr<WorkerRecord> AuthenticateCall(absl::string_view method,
                                                const std::string& worker_id,
                                                const v1::CallAuth& auth,
                                                const std::string& digest);
  // The job, when it is running; REJECT_JOB_NOT_ACTIVE when it stopped.
  absl::StatusOr<JobRecord> RunningJob(const std::string& job_id);
  // The accepted delta results of a round.
  absl::StatusOr<std::vector<ResultRecord>> AcceptedResults(
      const std::string& job_id, uint64_t round);
  // Leases `worker` may still take in `job` under its cap.
  uint32_t LeaseCap(const JobRecord& job) const;
  // Removes partial uploads past their age (at most every ten seconds).
  absl::Status SweepUploads(bool force);
  // The job's parsed config.json.
  absl::StatusOr<lora::LlamaConfig> LoadJobModelConfig(const JobRecord& job);
  // The blobs a unit's worker needs: base model files, parent adapter, shard.
  absl::StatusOr<std::vector<std::string>> BlobsNeededBy(
      const UnitRecord& unit);
  absl::StatusOr<v1::WorkUnit> DescribeUnit(const JobRecord& job,
                                            const UnitRecord& unit);
  absl::StatusOr<v1::JobStatus> DescribeJob(const JobRecord& job);
  // Records a rejected result for `upload`'s unit (which goes back to
  // pending) and returns the rejection to send.
  absl::Status RejectDelta(const DeltaUpload& upload, v1::RejectReason reason,
                           absl::StatusCode code, const std::string& message);
  absl::Status MaybeCloseRound(const JobRecord& job);
  // Replica validation of a finished (or past-deadline) round: which result
  // of each shard is aggregated, which agree with it, which are invalid, and
  // the shards that need another replica (replica_validation.cc).
  struct ReplicaVerdicts {
    std::vector<ResultRecord> canonical;
    // canonical unit id -> results that agreed with it
    std::map<std::string, std::vector<ResultRecord>> duplicates;
    std::vector<ResultVerdict> excluded;
    std::vector<uint32_t> shards_needing_replica;
  };
  absl::StatusOr<ReplicaVerdicts> ValidateReplicas(
      const JobRecord& job, const std::vector<UnitRecord>& units,
      const std::vector<ResultRecord>& accepted, bool may_add_replicas);
  // Adaptive replication, after an accepted result: a trusted worker's result
  // stands alone (its shard's pending replicas are skipped), except for
  // random re-checks.
  absl::Status MaybeTrustResult(const JobRecord& job, const UnitRecord& unit,
                                const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A round's deltas aggregated under one rule, not yet published: the
  // file (removed with this), what each result earns or why it is left out,
  // and the numbers the adapter carries.
  struct RoundAggregate {
    RoundAggregate() = default;
    RoundAggregate(RoundAggregate&&) = default;
    RoundAggregate& operator=(RoundAggregate&&) = default;
    ~RoundAggregate();
    std::string path;
    lora::AggregationRule rule;
    std::vector<ResultVerdict> credited;
    std::vector<ResultVerdict> excluded;
    size_t inputs = 0;  // deltas offered to the rule
    size_t used = 0;    // deltas it kept
    uint64_t samples = 0;
    double train_loss = 0;  // sample-weighted; NaN without reports
    double truncation_error = 0;
  };
  // nullopt when every delta was left out (round_closing.cc).
  absl::StatusOr<std::optional<RoundAggregate>> BuildAggregate(
      const JobRecord& job, const RoundRecord& round,
      const ReplicaVerdicts& verdicts, const lora::AggregationRule& rule);
  // The round's deltas are in: aggregate, then publish or, with a validation
  // split, hand the candidate to validation units.
  absl::Status AggregateRound(const JobRecord& job, const RoundRecord& round,
                              const ReplicaVerdicts& verdicts);
  // Scores from a round's validation reports, and what each report earns.
  struct ValidationScore {
    double parent_loss = 0;
    double candidate_loss = 0;
    uint32_t slices_scored = 0;  // slices with an agreed (or lone) report
    std::vector<ResultVerdict> credited;
    std::vector<ResultVerdict> excluded;
    std::vector<uint32_t> slices_needing_replica;
  };
  // Validation phase (validation_phase.cc): stores `aggregate` as the
  // round's candidate of `attempt` and opens its validation units; then,
  // once they reported (or the deadline passed), judges the reports by
  // replica quorum, retries a worse candidate once without outliers, and
  // publishes.
  absl::Status BeginCandidate(const JobRecord& job, const RoundRecord& round,
                              RoundAggregate aggregate, uint32_t attempt);
  absl::Status AdvanceValidation(
      const JobRecord& job, const RoundRecord& round,
      const std::vector<UnitRecord>& training_units,
      const std::vector<UnitRecord>& validation_units);
  absl::StatusOr<ValidationScore> JudgeValidationReports(
      const JobRecord& job, const std::vector<UnitRecord>& units,
      const std::vector<ValidationReportRecord>& reports,
      bool may_add_replicas);
  // Signs and publishes `aggregate` (its file, or the stored candidate
  // `model_sha` when set) as the round's version, credits, and opens the
  // next round.
  absl::Status PublishRound(const JobRecord& job, const RoundRecord& round,
                            RoundAggregate aggregate,
                            const std::string& model_sha,
                            const std::optional<ValidationScore>& score,
                            uint32_t validation_retries);
  absl::Status FailJob(const JobRecord& job, const std::string& message);
  absl::StatusOr<RoundRecord> FindRound(const std::string& job_id,
                                        uint64_t round);
  // Everything about an upload's header but the signature, against the
  // current state: unit, job, round, parent version, lease (or an
  // acknowledged retry).
  absl::StatusOr<DeltaUpload> CheckUnitForUpload(const v1::DeltaHeader& header);
  // The result record of `upload`, to store accepted or rejected.
  ResultRecord ResultOf(const DeltaUpload& upload, bool accepted) const;

  const CoordinatorOptions options_;
  const Ed25519PrivateKey identity_;
  const Ed25519PublicKey public_key_;
  const std::unique_ptr<StateStore> state_;
  const std::unique_ptr<BlobStore> blobs_;
  WorkerSessions sessions_;
  // Writes the liveness heard since the last batch (Tick does, before
  // expiring leases of silent workers).
  absl::Status PersistLiveness();
  // The lock that serialises one worker's leasing (its lease cap).
  absl::Mutex& LeaseLockFor(const std::string& worker_id);

  WorkerLiveness liveness_;
  // Serialises decisions that read then write state (accept a result for a
  // held lease, close a round), so two calls never both act on what each
  // read. Leasing does not take it: the store finds and leases a unit in
  // one transaction. Nothing slow (hashing, tensor checks, file reads,
  // fsyncs) runs under it.
  absl::Mutex mu_;
  // Striped by worker id: a worker's concurrent lease calls cannot both
  // pass its cap, while different workers lease in parallel.
  static constexpr size_t kLeaseLockStripes = 64;
  absl::Mutex lease_locks_[kLeaseLockStripes];
  // Parsed config.json by blob hash: checking a delta needs the model's
  // shapes, and the file does not change.
  absl::Mutex model_configs_mu_;
  std::map<std::string, lora::LlamaConfig> model_configs_
      ABSL_GUARDED_BY(model_configs_mu_);
  // Aggregation runs outside mu_; this keeps two ticks from running it at
  // once.
  absl::Mutex tick_mu_;
  int64_t last_upload_sweep_ms_ ABSL_GUARDED_BY(tick_mu_) = 0;
  // Serialises opening delta uploads (the per-worker cap and the
  // replacement of a unit's abandoned upload).
  absl::Mutex upload_slots_mu_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_COORDINATOR_H_
