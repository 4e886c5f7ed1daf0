// What the coordinator's parts share (coordinator.h composes them): options
// and clock, identity, the state and blob stores, worker sessions and soft
// liveness, the lock for read-then-write decisions, and the lookups every part
// makes (a caller's worker, a running job, a round, a job's model config).
// The parts hold a pointer to one core; none owns another.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_COORDINATOR_CORE_H_
#define OPENFORCE_COORDINATOR_INTERNAL_COORDINATOR_CORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "coordinator/coordinator_options.h"
#include "coordinator/metrics.h"
#include "coordinator/state_store.h"
#include "coordinator/worker_liveness.h"
#include "coordinator/worker_sessions.h"
#include "lora/llama_config.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

class CoordinatorCore {
 public:
  // Fills the options' unset clock, random source and metrics.
  CoordinatorCore(CoordinatorOptions options, Ed25519PrivateKey identity,
                  std::unique_ptr<StateStore> state,
                  std::unique_ptr<BlobStore> blobs);
  CoordinatorCore(const CoordinatorCore&) = delete;
  CoordinatorCore& operator=(const CoordinatorCore&) = delete;

  const CoordinatorOptions& options() const { return options_; }
  int64_t Now() const { return options_.now_ms(); }
  const Ed25519PrivateKey& identity() const { return identity_; }
  const Ed25519PublicKey& public_key() const { return public_key_; }
  StateStore& state() const { return *state_; }
  BlobStore& blobs() const { return *blobs_; }
  CoordinatorMetrics& metrics() const { return *options_.metrics; }
  WorkerSessions& sessions() { return sessions_; }
  WorkerLiveness& liveness() { return liveness_; }
  // Serialises decisions that read then write state (accept a result for a
  // held lease, close a round, cancel a job), so two calls never both act on
  // what each read. Leasing does not take it: the store finds and leases a
  // unit in one transaction. Nothing slow (hashing, tensor checks, file
  // reads, fsyncs) runs under it.
  absl::Mutex& decision_mu() ABSL_LOCK_RETURNED(decision_mu_) {
    return decision_mu_;
  }

  // The registered worker (its liveness overlaid); REJECT_UNKNOWN_WORKER
  // when there is none.
  [[nodiscard]] absl::StatusOr<WorkerRecord> RequireWorker(
      const std::string& worker_id);
  // The registered worker `worker_id` when `auth` proves the call is its own
  // (worker_sessions.h); `digest` is the request's CallDigest.
  [[nodiscard]] absl::StatusOr<WorkerRecord> AuthenticateCall(
      absl::string_view method, const std::string& worker_id,
      const v1::CallAuth& auth, const std::string& digest);
  // AuthenticateCall for calls that need no WorkerRecord: checked against
  // the key the worker's session holds, without reading the store; without
  // a session here, the long way (which tells an unknown worker from an
  // unknown session).
  [[nodiscard]] absl::Status VerifyCall(absl::string_view method,
                                        const std::string& worker_id,
                                        const v1::CallAuth& auth,
                                        const std::string& digest);
  // The job, when it is running; REJECT_JOB_NOT_ACTIVE when it stopped.
  [[nodiscard]] absl::StatusOr<JobRecord> RunningJob(const std::string& job_id);
  // A round that must exist (Internal otherwise).
  [[nodiscard]] absl::StatusOr<RoundRecord> FindRound(const std::string& job_id,
                                                      uint64_t round);
  // The accepted delta results of a round.
  [[nodiscard]] absl::StatusOr<std::vector<ResultRecord>> AcceptedResults(
      const std::string& job_id, uint64_t round);
  // The job's parsed config.json, cached by hash: checking a delta needs the
  // model's shapes, and the file does not change.
  [[nodiscard]] absl::StatusOr<lora::LlamaConfig> LoadJobModelConfig(
      const JobRecord& job);

 private:
  const CoordinatorOptions options_;
  const Ed25519PrivateKey identity_;
  const Ed25519PublicKey public_key_;
  const std::unique_ptr<StateStore> state_;
  const std::unique_ptr<BlobStore> blobs_;
  WorkerSessions sessions_;
  WorkerLiveness liveness_;
  absl::Mutex decision_mu_;
  absl::Mutex model_configs_mu_;
  std::map<std::string, lora::LlamaConfig> model_configs_
      ABSL_GUARDED_BY(model_configs_mu_);
};

// What a call's CallAuth carries, for WorkerSessions.
CallCredentials CredentialsOf(const v1::CallAuth& auth);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_INTERNAL_COORDINATOR_CORE_H_
