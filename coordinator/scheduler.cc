// Scheduling (scheduler.h): registration and call authentication,
// heartbeats, leases and their expiry, and which blobs a caller may fetch.
#include "coordinator/scheduler.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/secret_token.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "common/terminal_text.h"
#include "coordinator/internal/planning.h"
#include "proto/call_signing.h"
#include "proto/channel.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {

absl::Mutex& Scheduler::LeaseLockFor(const std::string& worker_id) {
  return lease_locks_[std::hash<std::string>()(worker_id) % kLeaseLockStripes];
}

absl::Status Scheduler::PersistLiveness() {
  std::vector<HeartbeatRecord> batch = core_.liveness().TakeUnpersisted();
  if (batch.empty()) return absl::OkStatus();
  absl::Status written = core_.state().RecordHeartbeats(batch);
  if (!written.ok()) {
    core_.liveness().Restore(batch);
    return written;
  }
  core_.metrics().RecordLivenessBatch(batch.size());
  return absl::OkStatus();
}

absl::StatusOr<v1::RegisterResponse> Scheduler::Register(
    const v1::RegisterRequest& request) {
  if (!core_.options().enrollment_token.empty() &&
      !TokensEqual(request.enrollment_token(),
                   core_.options().enrollment_token)) {
    return absl::UnauthenticatedError(
        request.enrollment_token().empty()
            ? "this coordinator needs an enrollment token to register"
            : "the enrollment token is not valid");
  }
  absl::StatusOr<Ed25519PublicKey> key =
      Ed25519PublicKey::FromRaw(request.public_key());
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("public_key: ", key.status().message()));
  }
  if (request.nonce().size() < 16 || request.nonce().size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "nonce must be 16-64 bytes, got ", request.nonce().size()));
  }
  const std::string proof_message =
      RegistrationProofMessage(request.public_key(), request.nonce());
  if (!key->Verify(proof_message, request.proof_of_possession()).ok()) {
    return absl::UnauthenticatedError(
        "proof_of_possession does not verify: the caller does not hold the "
        "private key");
  }
  if (request.display_name().size() > kMaxDisplayName) {
    return absl::InvalidArgumentError(absl::StrCat(
        "display_name is longer than ", kMaxDisplayName, " bytes"));
  }
  if (!IsTerminalSafe(request.display_name())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "display_name \"", EscapeForTerminal(request.display_name()),
        "\" holds control characters or invalid UTF-8"));
  }
  if (!v1::Tier_IsValid(request.profile().tier()) ||
      request.profile().tier() == v1::TIER_UNSPECIFIED) {
    return absl::InvalidArgumentError("profile.tier is missing or unknown");
  }
  WorkerRecord worker;
  worker.worker_id = absl::StrCat("w-", key->Fingerprint().substr(0, 16));
  worker.public_key = request.public_key();
  worker.display_name = request.display_name();
  worker.profile = request.profile();
  worker.registered_ms = core_.Now();
  worker.last_heartbeat_ms = core_.Now();
  worker.availability = v1::AVAILABLE;
  RETURN_IF_ERROR(core_.state().UpsertWorker(worker));
  core_.liveness().Record(
      {worker.worker_id, worker.last_heartbeat_ms, worker.availability, ""});
  ASSIGN_OR_RETURN(std::string session,
                   core_.sessions().Open(worker.worker_id, worker.public_key));
  v1::RegisterResponse response;
  response.set_worker_id(worker.worker_id);
  response.set_session_id(session);
  response.set_heartbeat_interval_ms(core_.options().heartbeat_interval_ms);
  response.set_coordinator_public_key(core_.public_key().Raw());
  response.set_max_upload_bytes(core_.options().max_upload_bytes);
  response.set_max_chunk_bytes(kMaxChunkBytes);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Scheduler::Heartbeat(
    const v1::HeartbeatRequest& request) {
  // The most frequent call: no store read when the session is here.
  RETURN_IF_ERROR(core_.VerifyCall(kHeartbeatMethod, request.worker_id(),
                                   request.auth(), CallDigest(request)));
  WorkerRecord worker;
  worker.worker_id = request.worker_id();
  if (!v1::Availability_IsValid(request.availability())) {
    return absl::InvalidArgumentError("availability is unknown");
  }
  if (request.current_unit_id().size() > kMaxUnitIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "current_unit_id is longer than ", kMaxUnitIdBytes, " bytes"));
  }
  // Soft state: held in memory, written in batches by Tick.
  core_.liveness().Record({worker.worker_id, core_.Now(),
                           request.availability(), request.current_unit_id()});
  v1::HeartbeatResponse response;
  response.set_next_heartbeat_ms(core_.options().heartbeat_interval_ms);
  if (!request.current_unit_id().empty()) {
    ASSIGN_OR_RETURN(std::optional<UnitRecord> unit,
                     core_.state().GetUnit(request.current_unit_id()));
    if (!unit.has_value() || unit->state != v1::UNIT_LEASED ||
        unit->worker_id != worker.worker_id) {
      response.add_revoked_unit_ids(request.current_unit_id());
    }
  }
  return response;
}

absl::StatusOr<v1::LeaseWorkUnitResponse> Scheduler::LeaseWorkUnit(
    const v1::LeaseWorkUnitRequest& request) {
  ASSIGN_OR_RETURN(WorkerRecord worker,
                   core_.AuthenticateCall(kLeaseMethod, request.worker_id(),
                                          request.auth(), CallDigest(request)));
  v1::LeaseWorkUnitResponse response;
  response.set_retry_after_ms(core_.options().lease_retry_ms);
  const int64_t now = core_.Now();
  if (now - worker.last_heartbeat_ms > core_.options().worker_timeout_ms) {
    return absl::FailedPreconditionError(
        "no heartbeat from this worker recently; send Heartbeat before "
        "leasing");
  }
  uint64_t free_memory = request.free_memory_bytes();
  if (free_memory == 0) {
    const uint64_t available = worker.profile.ram_available_bytes();
    free_memory = available > worker.profile.headroom_bytes()
                      ? available - worker.profile.headroom_bytes()
                      : 0;
  }
  // Only this worker's calls are serialised (its cap); the store finds and
  // leases a unit in one transaction.
  absl::MutexLock lock(&LeaseLockFor(worker.worker_id));
  // Oldest job first.
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs,
                   core_.state().ListRunningJobs());
  ASSIGN_OR_RETURN(std::vector<UnitRecord> held,
                   core_.state().ListWorkerLeases(worker.worker_id));
  std::string capped_job;
  for (const JobRecord& job : jobs) {
    const auto held_here = static_cast<uint32_t>(std::count_if(
        held.begin(), held.end(),
        [&](const UnitRecord& unit) { return unit.job_id == job.job_id; }));
    if (held_here >= LeaseCap(job)) {
      capped_job = job.job_id;
      continue;
    }
    const v1::Tier min_tier = job.spec.min_tier() == v1::TIER_UNSPECIFIED
                                  ? v1::TIER_CPU
                                  : job.spec.min_tier();
    if (worker.profile.tier() < min_tier) continue;
    if (free_memory < job.estimated_memory_bytes) continue;
    ASSIGN_OR_RETURN(std::optional<UnitRecord> unit,
                     core_.state().LeaseNextUnit(
                         job.job_id, job.current_round, worker.worker_id,
                         now + int64_t{1000} * job.spec.unit_deadline_s()));
    if (!unit.has_value()) continue;
    ASSIGN_OR_RETURN(*response.mutable_unit(), DescribeUnit(job, *unit));
    response.set_retry_after_ms(0);
    core_.metrics().RecordLease(unit->kind == v1::WORK_VALIDATE ? "validation"
                                                                : "training");
    return response;
  }
  if (!capped_job.empty()) {
    // Nothing else to offer, and the worker sits on its cap: say so rather
    // than "no work", so a confused client learns it holds leases.
    return Rejection(
        absl::StatusCode::kResourceExhausted, v1::REJECT_TOO_MANY_LEASES,
        absl::StrCat("worker ", worker.worker_id, " already holds ",
                     held.size(), " lease(s), the cap in job ", capped_job,
                     "; deliver or release before leasing more"));
  }
  core_.metrics().RecordNoWork();
  return response;
}

uint32_t Scheduler::LeaseCap(const JobRecord& job) const {
  return job.spec.max_leases_per_worker() > 0
             ? job.spec.max_leases_per_worker()
             : std::max<uint32_t>(1, core_.options().max_leases_per_worker);
}

absl::StatusOr<v1::WorkUnit> Scheduler::DescribeUnit(const JobRecord& job,
                                                     const UnitRecord& unit) {
  v1::WorkUnit out;
  out.set_unit_id(unit.unit_id);
  out.set_job_id(job.job_id);
  out.set_round(unit.round);
  out.set_shard_index(unit.shard_index);
  out.set_replica(unit.replica);
  out.set_base_model_hash(job.spec.base_model_hash());
  *out.mutable_base_model_files() = job.spec.base_model_files();
  ASSIGN_OR_RETURN(RoundRecord round, core_.FindRound(job.job_id, unit.round));
  const uint64_t parent_version = round.parent_version;
  out.set_parent_adapter_version(parent_version);
  if (parent_version == 0) {
    *out.mutable_parent_adapter() = job.initial_adapter;
  } else {
    ASSIGN_OR_RETURN(std::optional<AdapterRecord> parent,
                     core_.state().GetAdapter(job.job_id, parent_version));
    if (!parent.has_value()) {
      return absl::InternalError(absl::StrCat(
          "adapter version ", parent_version, " of ", job.job_id, " missing"));
    }
    *out.mutable_parent_adapter() = parent->adapter.adapter_model();
  }
  if (unit.kind == v1::WORK_VALIDATE) {
    // Scores the round's candidate against its parent on one slice of the
    // held-out records.
    if (round.candidate_sha256.empty() ||
        unit.attempt != round.candidate_attempt) {
      return absl::FailedPreconditionError(
          absl::StrCat("unit ", unit.unit_id, " scores no current candidate"));
    }
    out.set_kind(v1::WORK_VALIDATE);
    ASSIGN_OR_RETURN(uint64_t candidate_size,
                     core_.blobs().Size(round.candidate_sha256));
    *out.mutable_candidate_adapter() = MakeRef(
        round.candidate_sha256, candidate_size, "adapter_model.safetensors");
    *out.mutable_validation_set() = job.spec.validation_set();
    const auto [begin, end] = ValidationSliceRange(job.spec, unit.shard_index);
    out.set_validation_begin(begin);
    out.set_validation_end(end);
  } else {
    ASSIGN_OR_RETURN(std::optional<ShardRecord> shard,
                     core_.state().GetShard(job.job_id, unit.shard_index));
    if (!shard.has_value())
      return absl::InternalError("shard missing for unit " + unit.unit_id);
    *out.mutable_shard() = shard->blob;
  }
  *out.mutable_lora() = job.spec.lora();
  *out.mutable_training() = job.spec.training();
  out.mutable_training()->set_seed(UnitSeed(job.spec.training().seed(), unit));
  out.set_lease_deadline_ms(unit.lease_deadline_ms);
  out.set_estimated_memory_bytes(job.estimated_memory_bytes);
  return out;
}

absl::Status Scheduler::ReleaseWorkUnit(
    const v1::ReleaseWorkUnitRequest& request) {
  RETURN_IF_ERROR(core_.VerifyCall(kReleaseMethod, request.worker_id(),
                                   request.auth(), CallDigest(request)));
  // The store releases only a lease the worker holds, in one statement.
  absl::Status released =
      core_.state().ReleaseUnit(request.unit_id(), request.worker_id());
  if (absl::IsFailedPrecondition(released)) {
    return Rejection(absl::StatusCode::kPermissionDenied,
                     v1::REJECT_LEASE_NOT_HELD, released.message());
  }
  return released;
}

absl::StatusOr<std::vector<std::string>> Scheduler::BlobsNeededBy(
    const UnitRecord& unit) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   core_.state().GetJob(unit.job_id));
  if (!job.has_value()) return std::vector<std::string>();
  ASSIGN_OR_RETURN(v1::WorkUnit described, DescribeUnit(*job, unit));
  std::vector<std::string> needed;
  for (const v1::BlobRef& file : described.base_model_files())
    needed.push_back(file.sha256());
  needed.push_back(described.parent_adapter().sha256());
  if (described.kind() == v1::WORK_VALIDATE) {
    needed.push_back(described.candidate_adapter().sha256());
    needed.push_back(described.validation_set().sha256());
  } else {
    needed.push_back(described.shard().sha256());
  }
  return needed;
}

absl::Status Scheduler::CheckFetchAllowed(const v1::FetchBlobRequest& request) {
  if (!IsSha256Hex(request.sha256()))
    return absl::InvalidArgumentError("sha256 is not 64 lowercase hex digits");
  ASSIGN_OR_RETURN(bool published,
                   core_.state().IsPublishedAdapterBlob(request.sha256()));
  if (!request.worker_id().empty()) {
    ASSIGN_OR_RETURN(
        WorkerRecord worker,
        core_.AuthenticateCall(kFetchBlobMethod, request.worker_id(),
                               request.auth(), CallDigest(request)));
    bool needed = published;
    ASSIGN_OR_RETURN(std::vector<UnitRecord> leases,
                     core_.state().ListWorkerLeases(worker.worker_id));
    for (const UnitRecord& unit : leases) {
      if (needed) break;
      ASSIGN_OR_RETURN(std::vector<std::string> blobs, BlobsNeededBy(unit));
      needed = std::find(blobs.begin(), blobs.end(), request.sha256()) !=
               blobs.end();
    }
    if (!needed) {
      return Rejection(
          absl::StatusCode::kPermissionDenied, v1::REJECT_NOT_LEASED_BLOB,
          absl::StrCat("blob ", request.sha256(),
                       " is not needed by any lease ", worker.worker_id,
                       " holds; models, datasets and shards are fetched only "
                       "for leased units"));
    }
  } else if (!published) {
    return absl::PermissionDeniedError(
        "without a worker id only published adapter files can be fetched");
  }
  if (!core_.blobs().Contains(request.sha256())) {
    return absl::NotFoundError(absl::StrCat("no blob ", request.sha256()));
  }
  return absl::OkStatus();
}

absl::Status Scheduler::ExpireLeases() {
  // Liveness first, so that the silent-worker check below reads what this
  // coordinator heard.
  RETURN_IF_ERROR(PersistLiveness());
  absl::MutexLock lock(&core_.decision_mu());
  const int64_t now = core_.Now();
  RETURN_IF_ERROR(core_.state().ExpireLeases(now).status());
  // Three missed intervals, and never under five seconds by default: a
  // busy volunteer machine may be late with one heartbeat.
  const CoordinatorOptions& options = core_.options();
  const int64_t grace =
      options.lease_heartbeat_grace_ms > 0
          ? options.lease_heartbeat_grace_ms
          : std::max<int64_t>(5'000,
                              int64_t{3} * options.heartbeat_interval_ms);
  return core_.state().ExpireLeasesOfSilentWorkers(now - grace).status();
}

}  // namespace openforce::coordinator
