// The coordinator's shared state and lookups (coordinator_core.h).
#include "coordinator/internal/coordinator_core.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/internal/planning.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {
namespace {

CoordinatorOptions WithDefaults(CoordinatorOptions options) {
  if (!options.now_ms) options.now_ms = SystemNowMs;
  if (options.metrics == nullptr)
    options.metrics = std::make_shared<CoordinatorMetrics>();
  if (!options.random_fraction) {
    // Callers may hold any lock, so the generator keeps its own.
    struct Source {
      absl::Mutex mu;
      std::mt19937_64 rng ABSL_GUARDED_BY(mu){std::random_device()()};
    };
    auto source = std::make_shared<Source>();
    options.random_fraction = [source] {
      absl::MutexLock lock(&source->mu);
      return std::uniform_real_distribution<double>(0, 1)(source->rng);
    };
  }
  return options;
}

}  // namespace

CallCredentials CredentialsOf(const v1::CallAuth& auth) {
  CallCredentials credentials;
  credentials.session_id = auth.session_id();
  credentials.counter = auth.counter();
  credentials.signature = auth.signature();
  return credentials;
}

CoordinatorCore::CoordinatorCore(CoordinatorOptions options,
                                 Ed25519PrivateKey identity,
                                 std::unique_ptr<StateStore> state,
                                 std::unique_ptr<BlobStore> blobs)
    : options_(WithDefaults(std::move(options))),
      identity_(std::move(identity)),
      public_key_(identity_.PublicKey()),
      state_(std::move(state)),
      blobs_(std::move(blobs)) {}

absl::StatusOr<WorkerRecord> CoordinatorCore::RequireWorker(
    const std::string& worker_id) {
  ASSIGN_OR_RETURN(std::optional<WorkerRecord> worker,
                   state_->GetWorker(worker_id));
  if (!worker.has_value()) {
    return Rejection(absl::StatusCode::kUnauthenticated,
                     v1::REJECT_UNKNOWN_WORKER,
                     absl::StrCat("worker '", worker_id,
                                  "' is not registered; call Register first"));
  }
  liveness_.Overlay(&*worker);
  return *std::move(worker);
}

absl::StatusOr<WorkerRecord> CoordinatorCore::AuthenticateCall(
    absl::string_view method, const std::string& worker_id,
    const v1::CallAuth& auth, const std::string& digest) {
  ASSIGN_OR_RETURN(WorkerRecord worker, RequireWorker(worker_id));
  RETURN_IF_ERROR(sessions_.Verify(method, worker.worker_id, worker.public_key,
                                   CredentialsOf(auth), digest));
  return worker;
}

absl::Status CoordinatorCore::VerifyCall(absl::string_view method,
                                         const std::string& worker_id,
                                         const v1::CallAuth& auth,
                                         const std::string& digest) {
  ASSIGN_OR_RETURN(bool verified,
                   sessions_.VerifyWithSessionKey(method, worker_id,
                                                  CredentialsOf(auth), digest));
  if (verified) return absl::OkStatus();
  return AuthenticateCall(method, worker_id, auth, digest).status();
}

absl::StatusOr<JobRecord> CoordinatorCore::RunningJob(
    const std::string& job_id) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job, state_->GetJob(job_id));
  if (!job.has_value()) return NotFoundJob(job_id);
  if (job->state != v1::JOB_RUNNING) {
    return Rejection(absl::StatusCode::kFailedPrecondition,
                     v1::REJECT_JOB_NOT_ACTIVE,
                     absl::StrCat("job ", job->job_id, " is ",
                                  v1::JobState_Name(job->state)));
  }
  return *std::move(job);
}

absl::StatusOr<RoundRecord> CoordinatorCore::FindRound(
    const std::string& job_id, uint64_t round) {
  ASSIGN_OR_RETURN(std::optional<RoundRecord> found,
                   state_->GetRound(job_id, round));
  if (!found.has_value()) {
    return absl::InternalError(
        absl::StrCat("job ", job_id, " has no round ", round));
  }
  return *std::move(found);
}

absl::StatusOr<std::vector<ResultRecord>> CoordinatorCore::AcceptedResults(
    const std::string& job_id, uint64_t round) {
  ASSIGN_OR_RETURN(std::vector<ResultRecord> results,
                   state_->ListResults(job_id, round));
  std::vector<ResultRecord> accepted;
  for (ResultRecord& result : results) {
    if (result.accepted) accepted.push_back(std::move(result));
  }
  return accepted;
}

absl::StatusOr<lora::LlamaConfig> CoordinatorCore::LoadJobModelConfig(
    const JobRecord& job) {
  for (const v1::BlobRef& file : job.spec.base_model_files()) {
    if (file.name() != "config.json") continue;
    {
      absl::MutexLock lock(&model_configs_mu_);
      auto cached = model_configs_.find(file.sha256());
      if (cached != model_configs_.end()) return cached->second;
    }
    ASSIGN_OR_RETURN(std::string config_json, blobs_->Get(file.sha256()));
    ASSIGN_OR_RETURN(lora::LlamaConfig config,
                     lora::ParseLlamaConfig(config_json, "config.json"));
    absl::MutexLock lock(&model_configs_mu_);
    // Jobs are few; a bound keeps a flood of jobs from growing it forever.
    if (model_configs_.size() >= 256) model_configs_.clear();
    model_configs_.emplace(file.sha256(), config);
    return config;
  }
  return absl::InternalError(
      absl::StrCat("job ", job.job_id, " has no config.json"));
}

}  // namespace openforce::coordinator
