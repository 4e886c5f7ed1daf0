// The coordinator's logic; see coordinator.h.
#include "coordinator/coordinator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/memory_estimate.h"
#include "common/model_manifest.h"
#include "common/secret_token.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "common/terminal_text.h"
#include "common/tier.h"
#include "coordinator/aggregator.h"
#include "coordinator/credit.h"
#include "lora/adapter_delta.h"
#include "lora/dataset.h"
#include "lora/llama_config.h"
#include "lora/lora_adapter.h"
#include "proto/call_signing.h"
#include "proto/channel.h"
#include "proto/lora_convert.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {
namespace {

constexpr size_t kMaxDisplayName = 128;
constexpr uint32_t kMaxRounds = 10'000;
constexpr uint32_t kMaxUnitsPerRound = 100'000;
constexpr uint32_t kDefaultPageSize = 50;
// Below this L2 norm a delta shows no training, unless the job sets a floor.
constexpr double kDefaultMinDeltaNorm = 1e-6;
// At aggregation, deltas below this fraction of the round's median norm are
// left out, unless the job sets its own fraction.
constexpr double kDefaultMinNormFraction = 0.1;
constexpr int64_t kUploadSweepIntervalMs = 10'000;

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string UnitId(const std::string& job_id, uint64_t round, uint32_t shard,
                   uint32_t replica) {
  return absl::StrCat(job_id, "-r", round, "-s", shard, "-p", replica);
}

std::vector<UnitRecord> MakeUnits(const JobRecord& job, uint64_t round) {
  std::vector<UnitRecord> units;
  for (uint32_t shard = 0; shard < job.spec.shards_per_round(); ++shard) {
    for (uint32_t replica = 0; replica < job.spec.replication(); ++replica) {
      UnitRecord unit;
      unit.unit_id = UnitId(job.job_id, round, shard, replica);
      unit.job_id = job.job_id;
      unit.round = round;
      unit.shard_index = shard;
      unit.replica = replica;
      units.push_back(unit);
    }
  }
  return units;
}

RoundRecord MakeRound(const JobRecord& job, uint64_t round,
                      uint64_t parent_version, int64_t now) {
  RoundRecord record;
  record.job_id = job.job_id;
  record.round = round;
  record.parent_version = parent_version;
  record.opened_ms = now;
  record.deadline_ms = job.spec.round_deadline_s() == 0
                           ? 0
                           : now + int64_t{1000} * job.spec.round_deadline_s();
  return record;
}

// Seeds differ per unit (so replicas and shards do not repeat each other's
// dropout and data order) but follow from the job's seed.
uint64_t UnitSeed(uint64_t job_seed, const UnitRecord& unit) {
  const Sha256Digest digest = [&] {
    Sha256 hasher;
    hasher.Update(absl::StrCat("openforce/unit-seed/v1\n", job_seed, "\n",
                               unit.round, "\n", unit.shard_index, "\n",
                               unit.replica));
    return hasher.Finish();
  }();
  uint64_t seed = 0;
  for (int i = 0; i < 8; ++i) seed = (seed << 8) | digest[i];
  return seed;
}

uint32_t MinResults(const v1::JobSpec& spec) {
  return spec.min_results_per_round() > 0
             ? spec.min_results_per_round()
             : spec.shards_per_round() * spec.replication();
}

// Where a worker's delta uploads accumulate: "d<worker>-" for everything the
// worker has open (to cap it), then the unit (so a new upload for a unit
// replaces an abandoned one), then the content. Stable across reconnects, so
// an upload resumes where it stopped. Worker ids are "w-" and hex digits.
std::string WorkerUploadPrefix(const std::string& worker_id) {
  return absl::StrCat("d", worker_id, "-");
}
std::string UnitUploadPrefix(const std::string& worker_id,
                             const std::string& unit_id) {
  return absl::StrCat(WorkerUploadPrefix(worker_id),
                      Sha256Hex(unit_id).substr(0, 16), "-");
}
std::string DeltaUploadId(const std::string& worker_id,
                          const std::string& unit_id,
                          const std::string& content_hash) {
  return absl::StrCat(UnitUploadPrefix(worker_id, unit_id),
                      content_hash.substr(0, 40));
}

// The samples a unit trains on by the job's own settings: what an honest
// worker reports, and all a worker's claim may say.
uint64_t ExpectedSamples(const v1::TrainingConfig& training) {
  return uint64_t(std::max(0, training.steps_per_shard())) *
         uint64_t(std::max(0, training.batch_size())) *
         uint64_t(std::max(1, training.gradient_accumulation()));
}

double MinDeltaNorm(const v1::JobSpec& spec) {
  return spec.min_delta_norm() > 0 ? spec.min_delta_norm()
                                   : kDefaultMinDeltaNorm;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_SUCCEEDED || state == v1::JOB_FAILED ||
         state == v1::JOB_CANCELLED;
}

absl::Status NotFoundJob(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
}

v1::BlobRef MakeRef(const std::string& sha256, uint64_t size,
                    const std::string& name) {
  v1::BlobRef ref;
  ref.set_sha256(sha256);
  ref.set_size_bytes(size);
  ref.set_name(name);
  return ref;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    CoordinatorOptions options, Ed25519PrivateKey identity,
    std::unique_ptr<StateStore> state, std::unique_ptr<BlobStore> blobs) {
  if (!options.now_ms) options.now_ms = SystemNowMs;
  if (options.heartbeat_interval_ms == 0 || options.lease_retry_ms == 0)
    return absl::InvalidArgumentError("intervals must be positive");
  RETURN_IF_ERROR(MakeDirectories(options.data_dir + "/tmp"));
  std::unique_ptr<Coordinator> coordinator(
      new Coordinator(std::move(options), std::move(identity), std::move(state),
                      std::move(blobs)));
  // Uploads abandoned before a restart go now, not an interval later.
  RETURN_IF_ERROR(coordinator->SweepUploads(/*force=*/true));
  return coordinator;
}

Coordinator::Coordinator(CoordinatorOptions options, Ed25519PrivateKey identity,
                         std::unique_ptr<StateStore> state,
                         std::unique_ptr<BlobStore> blobs)
    : options_(std::move(options)),
      identity_(std::move(identity)),
      public_key_(identity_.PublicKey()),
      state_(std::move(state)),
      blobs_(std::move(blobs)) {}

absl::StatusOr<RoundRecord> Coordinator::FindRound(const std::string& job_id,
                                                   uint64_t round) {
  ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds, state_->ListRounds(job_id));
  for (const RoundRecord& candidate : rounds) {
    if (candidate.round == round) return candidate;
  }
  return absl::InternalError(
      absl::StrCat("job ", job_id, " has no round ", round));
}

absl::StatusOr<WorkerRecord> Coordinator::RequireWorker(
    const std::string& worker_id) {
  ASSIGN_OR_RETURN(std::optional<WorkerRecord> worker,
                   state_->GetWorker(worker_id));
  if (!worker.has_value()) {
    return Rejection(absl::StatusCode::kUnauthenticated,
                     v1::REJECT_UNKNOWN_WORKER,
                     absl::StrCat("worker '", worker_id,
                                  "' is not registered; call Register first"));
  }
  return *std::move(worker);
}

absl::StatusOr<WorkerRecord> Coordinator::AuthenticateCall(
    absl::string_view method, const std::string& worker_id,
    const v1::CallAuth& auth, const std::string& digest) {
  ASSIGN_OR_RETURN(WorkerRecord worker, RequireWorker(worker_id));
  CallCredentials credentials;
  credentials.session_id = auth.session_id();
  credentials.counter = auth.counter();
  credentials.signature = auth.signature();
  RETURN_IF_ERROR(sessions_.Verify(method, worker.worker_id, worker.public_key,
                                   credentials, digest));
  return worker;
}

// ---------------------------------------------------------------------------
// Worker calls

absl::StatusOr<v1::RegisterResponse> Coordinator::Register(
    const v1::RegisterRequest& request) {
  if (!options_.enrollment_token.empty() &&
      !TokensEqual(request.enrollment_token(), options_.enrollment_token)) {
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
  worker.registered_ms = Now();
  worker.last_heartbeat_ms = Now();
  worker.availability = v1::AVAILABLE;
  RETURN_IF_ERROR(state_->UpsertWorker(worker));
  ASSIGN_OR_RETURN(std::string session, sessions_.Open(worker.worker_id));
  v1::RegisterResponse response;
  response.set_worker_id(worker.worker_id);
  response.set_session_id(session);
  response.set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
  response.set_coordinator_public_key(public_key_.Raw());
  response.set_max_upload_bytes(options_.max_upload_bytes);
  response.set_max_chunk_bytes(kMaxChunkBytes);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(
    const v1::HeartbeatRequest& request) {
  ASSIGN_OR_RETURN(WorkerRecord worker,
                   AuthenticateCall(kHeartbeatMethod, request.worker_id(),
                                    request.auth(), CallDigest(request)));
  RETURN_IF_ERROR(state_->RecordHeartbeat(worker.worker_id, Now(),
                                          request.availability(),
                                          request.current_unit_id()));
  v1::HeartbeatResponse response;
  response.set_next_heartbeat_ms(options_.heartbeat_interval_ms);
  if (!request.current_unit_id().empty()) {
    ASSIGN_OR_RETURN(std::optional<UnitRecord> unit,
                     state_->GetUnit(request.current_unit_id()));
    if (!unit.has_value() || unit->state != v1::UNIT_LEASED ||
        unit->worker_id != worker.worker_id) {
      response.add_revoked_unit_ids(request.current_unit_id());
    }
  }
  return response;
}

absl::StatusOr<v1::LeaseWorkUnitResponse> Coordinator::LeaseWorkUnit(
    const v1::LeaseWorkUnitRequest& request) {
  ASSIGN_OR_RETURN(WorkerRecord worker,
                   AuthenticateCall(kLeaseMethod, request.worker_id(),
                                    request.auth(), CallDigest(request)));
  v1::LeaseWorkUnitResponse response;
  response.set_retry_after_ms(options_.lease_retry_ms);
  const int64_t now = Now();
  if (now - worker.last_heartbeat_ms > options_.worker_timeout_ms) {
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
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, state_->ListJobs());
  ASSIGN_OR_RETURN(std::vector<UnitRecord> held,
                   state_->ListWorkerLeases(worker.worker_id));
  std::reverse(jobs.begin(), jobs.end());  // oldest job first
  std::string capped_job;
  for (const JobRecord& job : jobs) {
    if (job.state != v1::JOB_RUNNING) continue;
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
                     state_->FindLeasableUnit(job.job_id, job.current_round,
                                              worker.worker_id));
    if (!unit.has_value()) continue;
    unit->lease_deadline_ms = now + int64_t{1000} * job.spec.unit_deadline_s();
    RETURN_IF_ERROR(state_->LeaseUnit(unit->unit_id, worker.worker_id,
                                      unit->lease_deadline_ms));
    ASSIGN_OR_RETURN(*response.mutable_unit(), DescribeUnit(job, *unit));
    response.set_retry_after_ms(0);
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
  return response;
}

uint32_t Coordinator::LeaseCap(const JobRecord& job) const {
  return job.spec.max_leases_per_worker() > 0
             ? job.spec.max_leases_per_worker()
             : std::max<uint32_t>(1, options_.max_leases_per_worker);
}

absl::StatusOr<v1::WorkUnit> Coordinator::DescribeUnit(const JobRecord& job,
                                                       const UnitRecord& unit) {
  v1::WorkUnit out;
  out.set_unit_id(unit.unit_id);
  out.set_job_id(job.job_id);
  out.set_round(unit.round);
  out.set_shard_index(unit.shard_index);
  out.set_replica(unit.replica);
  out.set_base_model_hash(job.spec.base_model_hash());
  *out.mutable_base_model_files() = job.spec.base_model_files();
  ASSIGN_OR_RETURN(RoundRecord round, FindRound(job.job_id, unit.round));
  const uint64_t parent_version = round.parent_version;
  out.set_parent_adapter_version(parent_version);
  if (parent_version == 0) {
    *out.mutable_parent_adapter() = job.initial_adapter;
  } else {
    ASSIGN_OR_RETURN(std::optional<AdapterRecord> parent,
                     state_->GetAdapter(job.job_id, parent_version));
    if (!parent.has_value()) {
      return absl::InternalError(absl::StrCat(
          "adapter version ", parent_version, " of ", job.job_id, " missing"));
    }
    *out.mutable_parent_adapter() = parent->adapter.adapter_model();
  }
  ASSIGN_OR_RETURN(std::vector<ShardRecord> shards,
                   state_->ListShards(job.job_id));
  if (unit.shard_index >= shards.size())
    return absl::InternalError("shard missing for unit " + unit.unit_id);
  *out.mutable_shard() = shards[unit.shard_index].blob;
  *out.mutable_lora() = job.spec.lora();
  *out.mutable_training() = job.spec.training();
  out.mutable_training()->set_seed(UnitSeed(job.spec.training().seed(), unit));
  out.set_lease_deadline_ms(unit.lease_deadline_ms);
  out.set_estimated_memory_bytes(job.estimated_memory_bytes);
  return out;
}

absl::Status Coordinator::ReleaseWorkUnit(
    const v1::ReleaseWorkUnitRequest& request) {
  ASSIGN_OR_RETURN(WorkerRecord worker,
                   AuthenticateCall(kReleaseMethod, request.worker_id(),
                                    request.auth(), CallDigest(request)));
  absl::MutexLock lock(&mu_);
  absl::Status released =
      state_->ReleaseUnit(request.unit_id(), worker.worker_id);
  if (absl::IsFailedPrecondition(released)) {
    return Rejection(absl::StatusCode::kPermissionDenied,
                     v1::REJECT_LEASE_NOT_HELD, released.message());
  }
  return released;
}

absl::StatusOr<v1::GetUploadOffsetResponse> Coordinator::GetUploadOffset(
    const v1::GetUploadOffsetRequest& request) {
  ASSIGN_OR_RETURN(WorkerRecord worker,
                   AuthenticateCall(kUploadOffsetMethod, request.worker_id(),
                                    request.auth(), CallDigest(request)));
  if (!IsSha256Hex(request.content_hash())) {
    return absl::InvalidArgumentError(
        "content_hash is not 64 lowercase hex digits");
  }
  v1::GetUploadOffsetResponse response;
  ASSIGN_OR_RETURN(uint64_t offset, blobs_->UploadOffset(DeltaUploadId(
                                        worker.worker_id, request.unit_id(),
                                        request.content_hash())));
  response.set_offset(offset);
  return response;
}

absl::StatusOr<DeltaUpload> Coordinator::BeginUpload(
    const v1::UploadDeltaChunk& first) {
  const v1::DeltaHeader& header = first.header();
  ASSIGN_OR_RETURN(WorkerRecord worker,
                   AuthenticateCall(kUploadDeltaMethod, header.worker_id(),
                                    first.auth(), CallDigest(first)));
  ASSIGN_OR_RETURN(Ed25519PublicKey key,
                   Ed25519PublicKey::FromRaw(worker.public_key));
  absl::Status signature = VerifyPayloadSignature(
      key, DeltaSigningPayload(header), header.signature());
  if (!signature.ok()) {
    return Rejection(
        absl::IsInvalidArgument(signature) ? absl::StatusCode::kInvalidArgument
                                           : absl::StatusCode::kUnauthenticated,
        v1::REJECT_BAD_SIGNATURE,
        absl::StrCat("delta header signature: ", signature.message()));
  }
  ASSIGN_OR_RETURN(DeltaUpload upload, CheckUnitForUpload(header));
  if (upload.already_accepted) return upload;
  if (header.size_bytes() > options_.max_upload_bytes) {
    return Rejection(absl::StatusCode::kResourceExhausted, v1::REJECT_TOO_LARGE,
                     absl::StrCat("delta of ", header.size_bytes(),
                                  " bytes is over the limit of ",
                                  options_.max_upload_bytes));
  }
  if (header.size_bytes() == 0) {
    return absl::InvalidArgumentError("size_bytes must be positive");
  }
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   state_->GetJob(upload.unit.job_id));
  if (!job.has_value()) return NotFoundJob(upload.unit.job_id);
  const uint64_t expected_samples = ExpectedSamples(job->spec.training());
  if (header.sample_count() != expected_samples) {
    // A worker that misstates its work is refusing the job's terms: the
    // result is recorded as rejected and the shard goes to someone else.
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(DeltaUpload current, CheckUnitForUpload(header));
    return RejectDelta(
        current, v1::REJECT_SAMPLE_COUNT_MISMATCH,
        absl::StatusCode::kInvalidArgument,
        absl::StrCat("the delta claims ", header.sample_count(),
                     " samples; this unit trains exactly ", expected_samples,
                     " (", job->spec.training().steps_per_shard(), " steps x ",
                     job->spec.training().batch_size(), " sequences x ",
                     std::max(1, job->spec.training().gradient_accumulation()),
                     " micro-batches)"));
  }
  upload.upload_id = DeltaUploadId(worker.worker_id, upload.unit.unit_id,
                                   header.content_hash());
  ASSIGN_OR_RETURN(upload.received, blobs_->UploadOffset(upload.upload_id));
  if (upload.received == 0) {
    // A new upload: abandoned ones for the same unit go, and the worker's
    // other open uploads count against its cap. Serialised and made visible
    // (an empty file) at once, so concurrent streams cannot slip past the cap.
    absl::MutexLock slots(&upload_slots_mu_);
    ASSIGN_OR_RETURN(std::vector<UploadInfo> open,
                     blobs_->ListUploads(WorkerUploadPrefix(worker.worker_id)));
    const std::string unit_prefix =
        UnitUploadPrefix(worker.worker_id, upload.unit.unit_id);
    size_t others = 0;
    for (const UploadInfo& info : open) {
      if (info.upload_id == upload.upload_id) continue;
      if (absl::StartsWith(info.upload_id, unit_prefix)) {
        RETURN_IF_ERROR(blobs_->AbortUpload(info.upload_id));
      } else {
        ++others;
      }
    }
    if (others >= options_.max_open_uploads_per_worker) {
      return Rejection(
          absl::StatusCode::kResourceExhausted, v1::REJECT_TOO_MANY_UPLOADS,
          absl::StrCat("worker ", worker.worker_id, " has ", others,
                       " partial uploads open, the cap of ",
                       options_.max_open_uploads_per_worker,
                       "; finish them or let them expire"));
    }
    RETURN_IF_ERROR(blobs_->CreateUpload(upload.upload_id));
  }
  return upload;
}

absl::StatusOr<DeltaUpload> Coordinator::CheckUnitForUpload(
    const v1::DeltaHeader& header) {
  ASSIGN_OR_RETURN(std::optional<UnitRecord> unit,
                   state_->GetUnit(header.unit_id()));
  if (!unit.has_value()) {
    return Rejection(absl::StatusCode::kNotFound, v1::REJECT_LEASE_NOT_HELD,
                     absl::StrCat("no unit '", header.unit_id(), "'"));
  }
  if (unit->job_id != header.job_id()) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_WRONG_JOB,
        absl::StrCat("unit ", unit->unit_id, " belongs to job ", unit->job_id,
                     ", the delta names job ", header.job_id()));
  }
  ASSIGN_OR_RETURN(std::optional<JobRecord> job, state_->GetJob(unit->job_id));
  if (!job.has_value()) return NotFoundJob(unit->job_id);
  if (job->state != v1::JOB_RUNNING) {
    return Rejection(absl::StatusCode::kFailedPrecondition,
                     v1::REJECT_JOB_NOT_ACTIVE,
                     absl::StrCat("job ", job->job_id, " is ",
                                  v1::JobState_Name(job->state)));
  }
  if (header.base_model_hash() != job->spec.base_model_hash()) {
    return Rejection(absl::StatusCode::kFailedPrecondition,
                     v1::REJECT_WRONG_JOB,
                     "the delta names another base model than the job's");
  }
  ASSIGN_OR_RETURN(RoundRecord current,
                   FindRound(job->job_id, job->current_round));
  if (header.round() != unit->round || unit->round != job->current_round ||
      header.parent_adapter_version() != current.parent_version) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_WRONG_ROUND,
        absl::StrCat("the delta is for round ", header.round(),
                     " from adapter version ", header.parent_adapter_version(),
                     "; the job is in round ", job->current_round,
                     " from version ", current.parent_version));
  }
  DeltaUpload upload;
  upload.header = header;
  upload.unit = *unit;
  if (unit->state == v1::UNIT_ACCEPTED &&
      unit->worker_id == header.worker_id()) {
    ASSIGN_OR_RETURN(std::optional<ResultRecord> accepted,
                     state_->GetAcceptedResult(unit->unit_id));
    if (accepted.has_value() &&
        accepted->header.content_hash() == header.content_hash()) {
      upload.already_accepted = true;
      upload.received = header.size_bytes();
      return upload;
    }
  }
  if (unit->state != v1::UNIT_LEASED || unit->worker_id != header.worker_id()) {
    return Rejection(absl::StatusCode::kPermissionDenied,
                     v1::REJECT_LEASE_NOT_HELD,
                     absl::StrCat("worker ", header.worker_id(),
                                  " holds no lease on unit ", unit->unit_id));
  }
  return upload;
}

absl::Status Coordinator::AppendUpload(DeltaUpload* upload, uint64_t offset,
                                       const std::string& data) {
  if (upload->already_accepted) return absl::OkStatus();
  if (offset != upload->received) {
    return Rejection(absl::StatusCode::kOutOfRange, v1::REJECT_BAD_OFFSET,
                     absl::StrCat("chunk at offset ", offset,
                                  " does not continue the upload, which has ",
                                  upload->received, " bytes"));
  }
  if (data.size() > upload->header.size_bytes() - offset) {
    return Rejection(absl::StatusCode::kResourceExhausted, v1::REJECT_TOO_LARGE,
                     absl::StrCat("upload goes past its declared size of ",
                                  upload->header.size_bytes(), " bytes"));
  }
  absl::Status appended = blobs_->AppendUpload(upload->upload_id, offset, data,
                                               /*create=*/false);
  if (absl::IsNotFound(appended)) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_BAD_OFFSET,
        absl::StrCat(appended.message(), "; start again from GetUploadOffset"));
  }
  if (absl::IsFailedPrecondition(appended)) {
    return Rejection(absl::StatusCode::kOutOfRange, v1::REJECT_BAD_OFFSET,
                     appended.message());
  }
  RETURN_IF_ERROR(appended);
  upload->received += data.size();
  return absl::OkStatus();
}

ResultRecord Coordinator::ResultOf(const DeltaUpload& upload,
                                   bool accepted) const {
  ResultRecord result;
  result.unit_id = upload.unit.unit_id;
  result.worker_id = upload.header.worker_id();
  result.job_id = upload.unit.job_id;
  result.round = upload.unit.round;
  result.shard_index = upload.unit.shard_index;
  result.accepted = accepted;
  result.header = upload.header;
  result.created_ms = Now();
  return result;
}

absl::Status Coordinator::RejectDelta(const DeltaUpload& upload,
                                      v1::RejectReason reason,
                                      absl::StatusCode code,
                                      const std::string& message) {
  ResultRecord result = ResultOf(upload, /*accepted=*/false);
  result.reject_reason = reason;
  result.message = message;
  RETURN_IF_ERROR(state_->RecordResult(result));
  return Rejection(code, reason, message);
}

absl::StatusOr<v1::UploadDeltaResponse> Coordinator::FinishUpload(
    DeltaUpload* upload) {
  v1::UploadDeltaResponse response;
  response.set_received_bytes(upload->received);
  if (upload->already_accepted) {
    response.set_accepted(true);
    response.set_message("already accepted");
    return response;
  }
  if (upload->received < upload->header.size_bytes()) {
    response.set_message(absl::StrCat("incomplete: ", upload->received, " of ",
                                      upload->header.size_bytes(),
                                      " bytes; resume at that offset"));
    return response;
  }
  // Every check reads the partial upload, outside mu_: a slow or hostile
  // delta holds up no lease, heartbeat or other upload. The upload cannot
  // grow any more (AppendUpload stops at the declared size).
  ASSIGN_OR_RETURN(std::string hash, blobs_->HashUpload(upload->upload_id));
  if (hash != upload->header.content_hash()) {
    RETURN_IF_ERROR(blobs_->AbortUpload(upload->upload_id));
    return Rejection(
        absl::StatusCode::kDataLoss, v1::REJECT_HASH_MISMATCH,
        absl::StrCat("the delta hashes to ", hash, ", the header says ",
                     upload->header.content_hash(),
                     "; the partial upload was discarded"));
  }
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   state_->GetJob(upload->unit.job_id));
  if (!job.has_value()) return NotFoundJob(upload->unit.job_id);
  ASSIGN_OR_RETURN(lora::LlamaConfig model, LoadJobModelConfig(*job));
  ASSIGN_OR_RETURN(lora::LoraConfig lora_config,
                   LoraConfigFromProto(job->spec.lora()));
  ASSIGN_OR_RETURN(std::string path, blobs_->UploadPath(upload->upload_id));
  lora::DeltaLimits limits;
  limits.max_norm = job->spec.max_delta_norm();
  limits.min_norm = MinDeltaNorm(job->spec);
  ASSIGN_OR_RETURN(lora::DeltaCheck check,
                   lora::CheckAdapterDelta(path, model, lora_config, limits));
  v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
  switch (check.problem) {
    case lora::DeltaCheck::Problem::kNone:
      break;
    case lora::DeltaCheck::Problem::kBadShape:
      reason = v1::REJECT_BAD_SHAPE;
      break;
    case lora::DeltaCheck::Problem::kNonFinite:
      reason = v1::REJECT_NON_FINITE;
      break;
    case lora::DeltaCheck::Problem::kNormTooLarge:
      reason = v1::REJECT_NORM_TOO_LARGE;
      break;
    case lora::DeltaCheck::Problem::kNormTooSmall:
      reason = v1::REJECT_NORM_TOO_SMALL;
      break;
  }

  absl::MutexLock lock(&mu_);
  // The lease or round may have moved on while bytes arrived or the checks
  // ran (the signature was checked when the upload began).
  absl::StatusOr<DeltaUpload> current = CheckUnitForUpload(upload->header);
  if (!current.ok() || reason != v1::REJECT_REASON_UNSPECIFIED) {
    // A refused delta never enters the blob store.
    RETURN_IF_ERROR(blobs_->AbortUpload(upload->upload_id));
  }
  if (!current.ok()) return current.status();
  if (current->already_accepted) {
    response.set_accepted(true);
    return response;
  }
  if (reason != v1::REJECT_REASON_UNSPECIFIED) {
    return RejectDelta(*upload, reason, absl::StatusCode::kInvalidArgument,
                       check.message);
  }
  RETURN_IF_ERROR(blobs_->InstallVerifiedUpload(upload->upload_id, hash));
  ResultRecord result = ResultOf(*upload, /*accepted=*/true);
  result.l2_norm = check.l2_norm;
  RETURN_IF_ERROR(state_->RecordResult(result));
  response.set_accepted(true);
  response.set_message(
      absl::StrCat("accepted; L2 norm ", check.l2_norm,
                   "; credit comes when the round aggregates it"));
  return response;
}

absl::StatusOr<lora::LlamaConfig> Coordinator::LoadJobModelConfig(
    const JobRecord& job) {
  for (const v1::BlobRef& file : job.spec.base_model_files()) {
    if (file.name() == "config.json") {
      ASSIGN_OR_RETURN(std::string config_json, blobs_->Get(file.sha256()));
      return lora::ParseLlamaConfig(config_json, "config.json");
    }
  }
  return absl::InternalError(
      absl::StrCat("job ", job.job_id, " has no config.json"));
}

absl::StatusOr<std::vector<std::string>> Coordinator::BlobsNeededBy(
    const UnitRecord& unit) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job, state_->GetJob(unit.job_id));
  if (!job.has_value()) return std::vector<std::string>();
  ASSIGN_OR_RETURN(v1::WorkUnit described, DescribeUnit(*job, unit));
  std::vector<std::string> needed;
  for (const v1::BlobRef& file : described.base_model_files())
    needed.push_back(file.sha256());
  needed.push_back(described.parent_adapter().sha256());
  needed.push_back(described.shard().sha256());
  return needed;
}

absl::Status Coordinator::CheckFetchAllowed(
    const v1::FetchBlobRequest& request) {
  if (!IsSha256Hex(request.sha256()))
    return absl::InvalidArgumentError("sha256 is not 64 lowercase hex digits");
  ASSIGN_OR_RETURN(bool published,
                   state_->IsPublishedAdapterBlob(request.sha256()));
  if (!request.worker_id().empty()) {
    ASSIGN_OR_RETURN(WorkerRecord worker,
                     AuthenticateCall(kFetchBlobMethod, request.worker_id(),
                                      request.auth(), CallDigest(request)));
    bool needed = published;
    ASSIGN_OR_RETURN(std::vector<UnitRecord> leases,
                     state_->ListWorkerLeases(worker.worker_id));
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
  if (!blobs_->Contains(request.sha256())) {
    return absl::NotFoundError(absl::StrCat("no blob ", request.sha256()));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::GetLatestAdapterResponse> Coordinator::GetLatestAdapter(
    const v1::GetLatestAdapterRequest& request) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   state_->GetJob(request.job_id()));
  if (!job.has_value()) return NotFoundJob(request.job_id());
  ASSIGN_OR_RETURN(std::optional<AdapterRecord> adapter,
                   state_->GetAdapter(request.job_id(), request.version()));
  v1::GetLatestAdapterResponse response;
  if (adapter.has_value()) {
    *response.mutable_adapter() = adapter->adapter;
  } else if (request.version() != 0) {
    return absl::NotFoundError(absl::StrCat("job ", request.job_id(),
                                            " has no adapter version ",
                                            request.version()));
  }
  return response;
}

// ---------------------------------------------------------------------------
// Admin calls

absl::StatusOr<BlobUpload> Coordinator::BeginBlobUpload(
    const v1::UploadBlobChunk& first) {
  if (!IsSha256Hex(first.sha256())) {
    return absl::InvalidArgumentError(
        "the first chunk must carry the blob's sha256 (64 lowercase hex)");
  }
  if (first.size_bytes() > options_.max_blob_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("blob of ", first.size_bytes(),
                     " bytes is over the limit of ", options_.max_blob_bytes));
  }
  BlobUpload upload;
  upload.sha256 = first.sha256();
  upload.size = first.size_bytes();
  upload.upload_id = "b" + first.sha256();
  if (blobs_->Contains(first.sha256())) {
    upload.complete = true;
    upload.received = upload.size;
    return upload;
  }
  ASSIGN_OR_RETURN(upload.received, blobs_->UploadOffset(upload.upload_id));
  return upload;
}

absl::Status Coordinator::AppendBlobChunk(BlobUpload* upload,
                                          const v1::UploadBlobChunk& chunk) {
  if (upload->complete || chunk.data().empty()) return absl::OkStatus();
  if (chunk.offset() != upload->received) {
    return absl::OutOfRangeError(absl::StrCat(
        "chunk at offset ", chunk.offset(), " does not continue the upload of ",
        upload->sha256, ", which has ", upload->received, " bytes"));
  }
  if (chunk.data().size() > upload->size - upload->received) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "upload goes past its declared size of ", upload->size, " bytes"));
  }
  RETURN_IF_ERROR(
      blobs_->AppendUpload(upload->upload_id, chunk.offset(), chunk.data()));
  upload->received += chunk.data().size();
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadBlobResponse> Coordinator::FinishBlobUpload(
    BlobUpload* upload) {
  v1::UploadBlobResponse response;
  response.set_sha256(upload->sha256);
  if (!upload->complete && upload->received == upload->size) {
    RETURN_IF_ERROR(
        blobs_->CommitUpload(upload->upload_id, upload->sha256).status());
    upload->complete = true;
  }
  response.set_received_bytes(upload->received);
  response.set_complete(upload->complete);
  return response;
}

absl::StatusOr<v1::SubmitJobResponse> Coordinator::SubmitJob(
    const v1::SubmitJobRequest& request) {
  v1::JobSpec spec = request.spec();
  // Everything a worker would trip over later is refused now, by name.
  if (spec.name().empty() || spec.name().size() > kMaxDisplayName) {
    return absl::InvalidArgumentError("name must be 1-128 bytes");
  }
  if (spec.rounds() == 0 || spec.rounds() > kMaxRounds) {
    return absl::InvalidArgumentError(
        absl::StrCat("rounds must be in 1..", kMaxRounds));
  }
  if (spec.replication() == 0) spec.set_replication(1);
  if (spec.shards_per_round() == 0 ||
      uint64_t{spec.shards_per_round()} * spec.replication() >
          kMaxUnitsPerRound) {
    return absl::InvalidArgumentError(
        "shards_per_round must be >= 1 and shards x replication at most "
        "100000");
  }
  if (spec.unit_deadline_s() == 0)
    return absl::InvalidArgumentError("unit_deadline_s must be > 0");
  if (MinResults(spec) > spec.shards_per_round() * spec.replication()) {
    return absl::InvalidArgumentError(
        "min_results_per_round is larger than the units of a round");
  }
  if (!(spec.max_delta_norm() > 0) || !std::isfinite(spec.max_delta_norm())) {
    return absl::InvalidArgumentError("max_delta_norm must be > 0");
  }
  if (!(spec.min_delta_norm() >= 0) ||
      !(spec.min_delta_norm() < spec.max_delta_norm())) {
    return absl::InvalidArgumentError(
        "min_delta_norm must be >= 0 and below max_delta_norm");
  }
  if (!(spec.min_norm_fraction() >= 0) || !(spec.min_norm_fraction() < 1)) {
    return absl::InvalidArgumentError("min_norm_fraction must be in [0, 1)");
  }
  if (spec.min_tier() != v1::TIER_UNSPECIFIED &&
      !v1::Tier_IsValid(spec.min_tier())) {
    return absl::InvalidArgumentError("min_tier is unknown");
  }
  RETURN_IF_ERROR(MakeAggregator(spec.aggregation()).status());
  ASSIGN_OR_RETURN(lora::LoraConfig lora_config,
                   LoraConfigFromProto(spec.lora()));
  ASSIGN_OR_RETURN(lora::TrainingOptions training,
                   TrainingOptionsFromProto(spec.training()));
  (void)training;

  std::vector<ManifestFile> manifest;
  std::string config_json;
  bool has_tokenizer = false;
  for (const v1::BlobRef& file : spec.base_model_files()) {
    RETURN_IF_ERROR(CheckPortableFileName(file.name()));
    if (!blobs_->Contains(file.sha256())) {
      return absl::FailedPreconditionError(
          absl::StrCat("model file ", file.name(), " (", file.sha256(),
                       ") was not uploaded; UploadBlob it first"));
    }
    ASSIGN_OR_RETURN(uint64_t size, blobs_->Size(file.sha256()));
    if (size != file.size_bytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model file ", file.name(), " is ", size,
                       " bytes, spec says ", file.size_bytes()));
    }
    if (file.name() == "config.json") {
      ASSIGN_OR_RETURN(config_json, blobs_->Get(file.sha256()));
    }
    has_tokenizer |= file.name() == "tokenizer.model" ||
                     file.name() == "openforce_tokenizer.json";
    manifest.push_back({file.name(), file.sha256()});
  }
  ASSIGN_OR_RETURN(std::string model_hash, ModelContentHash(manifest));
  if (model_hash != spec.base_model_hash()) {
    return absl::InvalidArgumentError(
        absl::StrCat("base_model_hash ", spec.base_model_hash(),
                     " does not match the files, which hash to ", model_hash));
  }
  if (config_json.empty())
    return absl::InvalidArgumentError("the model files have no config.json");
  if (!has_tokenizer) {
    return absl::InvalidArgumentError(
        "the model files have no tokenizer a worker can read "
        "(tokenizer.model or openforce_tokenizer.json)");
  }
  ASSIGN_OR_RETURN(lora::LlamaConfig model,
                   lora::ParseLlamaConfig(config_json, "config.json"));

  // Split the dataset: record i goes to shard i mod shards_per_round.
  if (!blobs_->Contains(spec.dataset().sha256())) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset ", spec.dataset().sha256(), " was not uploaded"));
  }
  ASSIGN_OR_RETURN(std::string dataset, blobs_->Get(spec.dataset().sha256()));
  RETURN_IF_ERROR(lora::ParseJsonl(dataset, "dataset").status());
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(dataset, '\n')) {
    if (!absl::StripAsciiWhitespace(line).empty()) lines.emplace_back(line);
  }
  if (lines.size() < spec.shards_per_round()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the dataset has ", lines.size(), " records, fewer than ",
                     spec.shards_per_round(), " shards"));
  }
  std::vector<std::string> shard_texts(spec.shards_per_round());
  for (size_t i = 0; i < lines.size(); ++i)
    absl::StrAppend(&shard_texts[i % shard_texts.size()], lines[i], "\n");

  JobRecord job;
  job.job_id = absl::StrCat("job-", RandomHex(6));
  job.spec = spec;
  job.state = v1::JOB_RUNNING;
  job.current_round = 1;
  job.created_ms = Now();
  std::vector<ShardRecord> shards;
  for (size_t i = 0; i < shard_texts.size(); ++i) {
    ASSIGN_OR_RETURN(std::string sha, blobs_->Put(shard_texts[i]));
    ShardRecord shard;
    shard.shard_index = static_cast<uint32_t>(i);
    shard.blob = MakeRef(sha, shard_texts[i].size(),
                         absl::StrCat("shard-", i, ".jsonl"));
    shard.records =
        (lines.size() - i + shard_texts.size() - 1) / shard_texts.size();
    shards.push_back(shard);
  }

  // Version 0, the common starting point of round 1.
  lora_config.base_model_name_or_path = spec.name();
  ASSIGN_OR_RETURN(
      lora::LoraAdapter initial,
      lora::LoraAdapter::Create(model, lora_config, spec.training().seed()));
  const std::string temp_dir =
      absl::StrCat(options_.data_dir, "/tmp/", job.job_id);
  RETURN_IF_ERROR(initial.Save(temp_dir));
  absl::StatusOr<std::string> initial_sha =
      blobs_->PutFile(temp_dir + "/adapter_model.safetensors");
  std::error_code ignored;
  std::filesystem::remove_all(temp_dir, ignored);
  RETURN_IF_ERROR(initial_sha.status());
  ASSIGN_OR_RETURN(uint64_t initial_size, blobs_->Size(*initial_sha));
  job.initial_adapter =
      MakeRef(*initial_sha, initial_size, "adapter_model.safetensors");
  const std::string adapter_config = lora::AdapterConfigToJson(lora_config);
  ASSIGN_OR_RETURN(std::string config_sha, blobs_->Put(adapter_config));
  job.adapter_config =
      MakeRef(config_sha, adapter_config.size(), "adapter_config.json");

  ModelShape shape = model.Shape();
  LoraShape lora_shape;
  lora_shape.rank = lora_config.rank;
  lora_shape.target_modules.clear();
  for (lora::Projection p : lora_config.targets)
    lora_shape.target_modules.push_back(lora::ProjectionName(p));
  const DType dtype =
      spec.training().compute_dtype() == v1::DTYPE_BFLOAT16  ? DType::kBFloat16
      : spec.training().compute_dtype() == v1::DTYPE_FLOAT16 ? DType::kFloat16
                                                             : DType::kFloat32;
  ASSIGN_OR_RETURN(MemoryEstimate estimate,
                   EstimateTrainingMemory(shape, dtype, lora_shape,
                                          spec.training().batch_size(),
                                          spec.training().sequence_length()));
  job.estimated_memory_bytes = estimate.total_bytes();

  RETURN_IF_ERROR(state_->CreateJob(job, shards, MakeRound(job, 1, 0, Now()),
                                    MakeUnits(job, 1)));
  v1::SubmitJobResponse response;
  response.set_job_id(job.job_id);
  return response;
}

absl::StatusOr<v1::JobStatus> Coordinator::DescribeJob(const JobRecord& job) {
  v1::JobStatus status;
  status.set_job_id(job.job_id);
  *status.mutable_spec() = job.spec;
  status.set_state(job.state);
  status.set_current_round(job.current_round);
  status.set_latest_adapter_version(job.latest_version);
  status.set_created_at_ms(job.created_ms);
  status.set_message(job.message);
  ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds,
                   state_->ListRounds(job.job_id));
  ASSIGN_OR_RETURN(std::vector<ShardRecord> shards,
                   state_->ListShards(job.job_id));
  for (const RoundRecord& round : rounds) {
    v1::RoundStatus* out = status.add_rounds();
    out->set_round(round.round);
    out->set_adapter_version(round.adapter_version);
    out->set_opened_at_ms(round.opened_ms);
    out->set_deadline_ms(round.deadline_ms);
    ASSIGN_OR_RETURN(std::vector<UnitRecord> units,
                     state_->ListUnits(job.job_id, round.round));
    for (const UnitRecord& unit : units) {
      if (unit.state == v1::UNIT_PENDING)
        out->set_units_pending(out->units_pending() + 1);
      if (unit.state == v1::UNIT_LEASED)
        out->set_units_leased(out->units_leased() + 1);
      if (unit.state == v1::UNIT_ACCEPTED)
        out->set_units_accepted(out->units_accepted() + 1);
    }
    ASSIGN_OR_RETURN(std::vector<ResultRecord> results,
                     state_->ListResults(job.job_id, round.round));
    double loss_sum = 0, weight_sum = 0;
    for (const ResultRecord& result : results) {
      if (!result.accepted) {
        out->set_units_rejected(out->units_rejected() + 1);
        continue;
      }
      auto loss = result.header.metrics().find("train_loss");
      if (loss == result.header.metrics().end()) continue;
      // Weighted as aggregation weighs it: by the shard's records.
      const double weight =
          result.shard_index < shards.size()
              ? static_cast<double>(shards[result.shard_index].records)
              : 1.0;
      loss_sum += loss->second * weight;
      weight_sum += weight;
    }
    out->set_mean_train_loss(weight_sum > 0 ? loss_sum / weight_sum : 0);
  }
  return status;
}

absl::StatusOr<v1::JobStatus> Coordinator::GetJob(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job, state_->GetJob(job_id));
  if (!job.has_value()) return NotFoundJob(job_id);
  return DescribeJob(*job);
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(
    const v1::ListJobsRequest& request) {
  size_t start = 0;
  if (!request.page_token().empty() &&
      !absl::SimpleAtoi(request.page_token(), &start)) {
    return absl::InvalidArgumentError("page_token is not one this server gave");
  }
  const size_t page_size = request.page_size() == 0
                               ? kDefaultPageSize
                               : std::min<size_t>(request.page_size(), 1000);
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, state_->ListJobs());
  v1::ListJobsResponse response;
  for (size_t i = start; i < jobs.size() && i < start + page_size; ++i) {
    ASSIGN_OR_RETURN(*response.add_jobs(), DescribeJob(jobs[i]));
  }
  if (start + page_size < jobs.size())
    response.set_next_page_token(absl::StrCat(start + page_size));
  return response;
}

absl::StatusOr<v1::CancelJobResponse> Coordinator::CancelJob(
    const v1::CancelJobRequest& request) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   state_->GetJob(request.job_id()));
  if (!job.has_value()) return NotFoundJob(request.job_id());
  if (IsTerminal(job->state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job->job_id, " is already ", v1::JobState_Name(job->state)));
  }
  RETURN_IF_ERROR(state_->SetJobState(
      job->job_id, v1::JOB_CANCELLED,
      absl::StrCat("cancelled by an operator",
                   request.reason().empty() ? "" : ": ", request.reason())));
  v1::CancelJobResponse response;
  response.set_state(v1::JOB_CANCELLED);
  return response;
}

absl::StatusOr<v1::ListWorkersResponse> Coordinator::ListWorkers(
    const v1::ListWorkersRequest& request) {
  ASSIGN_OR_RETURN(std::vector<WorkerRecord> workers, state_->ListWorkers());
  v1::ListWorkersResponse response;
  const int64_t now = Now();
  for (const WorkerRecord& worker : workers) {
    if (!request.include_inactive() &&
        now - worker.last_heartbeat_ms > options_.worker_timeout_ms) {
      continue;
    }
    v1::WorkerStatus* out = response.add_workers();
    out->set_worker_id(worker.worker_id);
    out->set_display_name(worker.display_name);
    out->set_public_key_fingerprint(Sha256Hex(worker.public_key));
    *out->mutable_profile() = worker.profile;
    out->set_availability(worker.availability);
    out->set_last_heartbeat_ms(worker.last_heartbeat_ms);
    out->set_current_unit_id(worker.current_unit_id);
    out->set_units_accepted(worker.units_accepted);
    out->set_units_rejected(worker.units_rejected);
    out->set_credit_flop(worker.credit_flop);
  }
  return response;
}

// ---------------------------------------------------------------------------
// Rounds

absl::Status Coordinator::SweepUploads(bool force) {
  absl::MutexLock tick_lock(&tick_mu_);
  const int64_t interval =
      std::min(kUploadSweepIntervalMs, options_.upload_expiry_ms / 2);
  if (!force && Now() - last_upload_sweep_ms_ < interval)
    return absl::OkStatus();
  last_upload_sweep_ms_ = Now();
  return blobs_->ExpireUploads(options_.upload_expiry_ms).status();
}

absl::StatusOr<v1::GetStoreStatusResponse> Coordinator::GetStoreStatus() {
  ASSIGN_OR_RETURN(BlobStoreStats stats, blobs_->Stats());
  v1::GetStoreStatusResponse response;
  response.set_blob_count(stats.blob_count);
  response.set_blob_bytes(stats.blob_bytes);
  response.set_partial_upload_count(stats.upload_count);
  response.set_partial_upload_bytes(stats.upload_bytes);
  return response;
}

absl::Status Coordinator::Tick() {
  RETURN_IF_ERROR(SweepUploads(/*force=*/false));
  absl::MutexLock tick_lock(&tick_mu_);
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(state_->ExpireLeases(Now()).status());
    // Three missed intervals, and never under five seconds by default: a
    // busy volunteer machine may be late with one heartbeat.
    const int64_t grace =
        options_.lease_heartbeat_grace_ms > 0
            ? options_.lease_heartbeat_grace_ms
            : std::max<int64_t>(5'000,
                                int64_t{3} * options_.heartbeat_interval_ms);
    RETURN_IF_ERROR(
        state_->ExpireLeasesOfSilentWorkers(Now() - grace).status());
  }
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, state_->ListJobs());
  absl::Status first_error;
  for (const JobRecord& job : jobs) {
    if (job.state != v1::JOB_RUNNING) continue;
    absl::Status closed = MaybeCloseRound(job);
    if (!closed.ok() && first_error.ok()) {
      first_error = absl::Status(
          closed.code(), absl::StrCat(job.job_id, ": ", closed.message()));
    }
  }
  return first_error;
}

absl::Status Coordinator::MaybeCloseRound(const JobRecord& job) {
  ASSIGN_OR_RETURN(const RoundRecord current,
                   FindRound(job.job_id, job.current_round));
  if (current.adapter_version != 0) return absl::OkStatus();
  const RoundRecord* round = &current;
  ASSIGN_OR_RETURN(std::vector<UnitRecord> units,
                   state_->ListUnits(job.job_id, round->round));
  ASSIGN_OR_RETURN(std::vector<ResultRecord> results,
                   state_->ListResults(job.job_id, round->round));
  std::vector<ResultRecord> accepted;
  for (ResultRecord& result : results) {
    if (result.accepted) accepted.push_back(std::move(result));
  }
  const bool all_accepted =
      !units.empty() &&
      std::all_of(units.begin(), units.end(), [](const UnitRecord& unit) {
        return unit.state == v1::UNIT_ACCEPTED;
      });
  const bool past_deadline =
      round->deadline_ms != 0 && Now() >= round->deadline_ms;
  if (all_accepted ||
      (past_deadline && accepted.size() >= MinResults(job.spec))) {
    return CloseRound(job, *round, accepted);
  }
  if (past_deadline) {
    absl::MutexLock lock(&mu_);
    return state_->SetJobState(
        job.job_id, v1::JOB_FAILED,
        absl::StrCat("round ", round->round, " reached its deadline with ",
                     accepted.size(), " accepted results, fewer than the ",
                     MinResults(job.spec), " it needs"));
  }
  return absl::OkStatus();
}

absl::Status Coordinator::CloseRound(
    const JobRecord& job, const RoundRecord& round,
    const std::vector<ResultRecord>& accepted) {
  std::string parent_sha = job.initial_adapter.sha256();
  if (round.parent_version != 0) {
    ASSIGN_OR_RETURN(std::optional<AdapterRecord> parent,
                     state_->GetAdapter(job.job_id, round.parent_version));
    if (!parent.has_value())
      return absl::InternalError("parent adapter version is missing");
    parent_sha = parent->adapter.adapter_model().sha256();
  }
  ASSIGN_OR_RETURN(std::string parent_path, blobs_->ObjectPath(parent_sha));
  RoundOutcome outcome;
  // A delta far below its peers' median norm did (almost) no training: it is
  // left out of the aggregate and earns nothing.
  std::vector<double> norms;
  for (const ResultRecord& result : accepted) norms.push_back(result.l2_norm);
  double floor = 0;
  if (norms.size() >= 2) {
    std::sort(norms.begin(), norms.end());
    const size_t mid = norms.size() / 2;
    const double median = norms.size() % 2 == 1
                              ? norms[mid]
                              : 0.5 * (norms[mid - 1] + norms[mid]);
    floor = median * (job.spec.min_norm_fraction() > 0
                          ? job.spec.min_norm_fraction()
                          : kDefaultMinNormFraction);
  }
  // Weights and credit come from what the coordinator knows: the shard's
  // record count and the job's own settings, never the worker's claims.
  ASSIGN_OR_RETURN(std::vector<ShardRecord> shards,
                   state_->ListShards(job.job_id));
  ASSIGN_OR_RETURN(lora::LlamaConfig model, LoadJobModelConfig(job));
  ASSIGN_OR_RETURN(
      const double unit_credit,
      UnitCreditFlop(model.Shape(), job.spec.lora(), job.spec.training()));
  std::vector<AggregationInput> inputs;
  uint64_t samples = 0;
  double loss_sum = 0, loss_weight = 0;
  for (const ResultRecord& result : accepted) {
    ResultVerdict verdict;
    verdict.unit_id = result.unit_id;
    verdict.worker_id = result.worker_id;
    if (result.l2_norm < floor) {
      verdict.reason = v1::REJECT_NORM_TOO_SMALL;
      verdict.message = absl::StrCat(
          "L2 norm ", result.l2_norm, " is below ", floor,
          ", the round's floor from its median: left out of the aggregate");
      outcome.excluded.push_back(verdict);
      continue;
    }
    if (result.shard_index >= shards.size())
      return absl::InternalError("result for a shard the job does not have");
    AggregationInput input;
    ASSIGN_OR_RETURN(input.delta_path,
                     blobs_->ObjectPath(result.header.content_hash()));
    input.sample_count =
        std::max<uint64_t>(1, shards[result.shard_index].records);
    input.worker_id = result.worker_id;
    input.shard_index = result.shard_index;
    inputs.push_back(input);
    samples += ExpectedSamples(job.spec.training());
    verdict.credit_flop = unit_credit;
    outcome.credited.push_back(verdict);
    auto loss = result.header.metrics().find("train_loss");
    if (loss != result.header.metrics().end() && std::isfinite(loss->second)) {
      loss_sum += loss->second * static_cast<double>(input.sample_count);
      loss_weight += static_cast<double>(input.sample_count);
    }
  }
  if (inputs.empty()) {
    // Everything was left out: publish nothing, the round stays open (its
    // units with excluded results are done; the deadline decides).
    absl::MutexLock lock(&mu_);
    return state_->SetJobState(
        job.job_id, v1::JOB_FAILED,
        absl::StrCat("round ", round.round,
                     " has no delta above the norm floor to aggregate"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Aggregator> aggregator,
                   MakeAggregator(job.spec.aggregation()));
  const std::string out_path =
      absl::StrCat(options_.data_dir, "/tmp/aggregate-", job.job_id, "-r",
                   round.round, ".safetensors");
  RETURN_IF_ERROR(aggregator->Aggregate(parent_path, inputs, out_path));
  absl::StatusOr<std::string> model_sha = blobs_->PutFile(out_path);
  std::error_code ignored;
  std::filesystem::remove(out_path, ignored);
  RETURN_IF_ERROR(model_sha.status());
  ASSIGN_OR_RETURN(uint64_t model_size, blobs_->Size(*model_sha));

  v1::SignedAdapter& adapter = outcome.adapter.adapter;
  adapter.set_job_id(job.job_id);
  adapter.set_version(round.round);
  adapter.set_parent_version(round.parent_version);
  adapter.set_base_model_hash(job.spec.base_model_hash());
  *adapter.mutable_adapter_model() =
      MakeRef(*model_sha, model_size, "adapter_model.safetensors");
  *adapter.mutable_adapter_config() = job.adapter_config;
  adapter.set_sample_count(samples);
  if (loss_weight > 0)
    (*adapter.mutable_metrics())["train_loss"] = loss_sum / loss_weight;
  (*adapter.mutable_metrics())["deltas"] = static_cast<double>(inputs.size());
  adapter.set_published_at_ms(Now());
  adapter.set_content_hash(
      AdapterContentHash(*model_sha, job.adapter_config.sha256()));
  ASSIGN_OR_RETURN(std::string signature,
                   SignPayload(identity_, AdapterSigningPayload(adapter)));
  adapter.set_signature(signature);
  if (round.round < job.spec.rounds()) {
    outcome.next_round =
        MakeRound(job, round.round + 1, adapter.version(), Now());
    outcome.next_units = MakeUnits(job, round.round + 1);
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<JobRecord> current,
                   state_->GetJob(job.job_id));
  if (!current.has_value() || current->state != v1::JOB_RUNNING)
    return absl::OkStatus();  // cancelled while aggregating
  absl::Status closed = state_->CloseRound(job.job_id, round.round, outcome);
  if (absl::IsFailedPrecondition(closed)) return absl::OkStatus();
  return closed;
}

}  // namespace openforce::coordinator
