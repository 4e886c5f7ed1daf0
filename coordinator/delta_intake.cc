// Delta intake (see delta_intake.h): upload offsets, the checks on an
// upload's first message, durable chunks, and the content checks that run
// on the partial upload before an accepted delta enters the blob store.
#include "coordinator/delta_intake.h"

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
#include "coordinator/internal/planning.h"
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

absl::StatusOr<v1::GetUploadOffsetResponse> DeltaIntake::GetUploadOffset(
    const v1::GetUploadOffsetRequest& request) {
  ASSIGN_OR_RETURN(
      WorkerRecord worker,
      core_.AuthenticateCall(kUploadOffsetMethod, request.worker_id(),
                             request.auth(), CallDigest(request)));
  if (!IsSha256Hex(request.content_hash())) {
    return absl::InvalidArgumentError(
        "content_hash is not 64 lowercase hex digits");
  }
  v1::GetUploadOffsetResponse response;
  ASSIGN_OR_RETURN(uint64_t offset, core_.blobs().UploadOffset(DeltaUploadId(
                                        worker.worker_id, request.unit_id(),
                                        request.content_hash())));
  response.set_offset(offset);
  return response;
}

absl::StatusOr<DeltaUpload> DeltaIntake::BeginUpload(
    const v1::UploadDeltaChunk& first) {
  const v1::DeltaHeader& header = first.header();
  ASSIGN_OR_RETURN(
      WorkerRecord worker,
      core_.AuthenticateCall(kUploadDeltaMethod, header.worker_id(),
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
  if (header.size_bytes() > core_.options().max_upload_bytes) {
    return Rejection(absl::StatusCode::kResourceExhausted, v1::REJECT_TOO_LARGE,
                     absl::StrCat("delta of ", header.size_bytes(),
                                  " bytes is over the limit of ",
                                  core_.options().max_upload_bytes));
  }
  if (header.size_bytes() == 0) {
    return absl::InvalidArgumentError("size_bytes must be positive");
  }
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   core_.state().GetJob(upload.unit.job_id));
  if (!job.has_value()) return NotFoundJob(upload.unit.job_id);
  const uint64_t expected_samples = ExpectedSamples(job->spec.training());
  if (header.sample_count() != expected_samples) {
    // A worker that misstates its work is refusing the job's terms: the
    // result is recorded as rejected and the shard goes to someone else.
    absl::MutexLock lock(&core_.decision_mu());
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
  ASSIGN_OR_RETURN(upload.received,
                   core_.blobs().UploadOffset(upload.upload_id));
  if (upload.received == 0) {
    // A new upload: abandoned ones for the same unit go, and the worker's
    // other open uploads count against its cap. Serialised and made visible
    // (an empty file) at once, so concurrent streams cannot slip past the cap.
    absl::MutexLock slots(&upload_slots_mu_);
    ASSIGN_OR_RETURN(
        std::vector<UploadInfo> open,
        core_.blobs().ListUploads(WorkerUploadPrefix(worker.worker_id)));
    const std::string unit_prefix =
        UnitUploadPrefix(worker.worker_id, upload.unit.unit_id);
    size_t others = 0;
    for (const UploadInfo& info : open) {
      if (info.upload_id == upload.upload_id) continue;
      if (absl::StartsWith(info.upload_id, unit_prefix)) {
        RETURN_IF_ERROR(core_.blobs().AbortUpload(info.upload_id));
      } else {
        ++others;
      }
    }
    if (others >= core_.options().max_open_uploads_per_worker) {
      return Rejection(
          absl::StatusCode::kResourceExhausted, v1::REJECT_TOO_MANY_UPLOADS,
          absl::StrCat("worker ", worker.worker_id, " has ", others,
                       " partial uploads open, the cap of ",
                       core_.options().max_open_uploads_per_worker,
                       "; finish them or let them expire"));
    }
    RETURN_IF_ERROR(core_.blobs().CreateUpload(upload.upload_id));
  }
  return upload;
}

absl::StatusOr<DeltaUpload> DeltaIntake::CheckUnitForUpload(
    const v1::DeltaHeader& header) {
  ASSIGN_OR_RETURN(std::optional<UnitRecord> unit,
                   core_.state().GetUnit(header.unit_id()));
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
  if (unit->kind != v1::WORK_TRAIN) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit ", unit->unit_id,
                     " is a validation unit: report its losses with "
                     "SubmitValidation"));
  }
  ASSIGN_OR_RETURN(const JobRecord job, core_.RunningJob(unit->job_id));
  if (header.base_model_hash() != job.spec.base_model_hash()) {
    return Rejection(absl::StatusCode::kFailedPrecondition,
                     v1::REJECT_WRONG_JOB,
                     "the delta names another base model than the job's");
  }
  ASSIGN_OR_RETURN(RoundRecord current,
                   core_.FindRound(job.job_id, job.current_round));
  if (current.candidate_attempt > 0 &&
      !(unit->state == v1::UNIT_ACCEPTED &&
        unit->worker_id == header.worker_id())) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_WRONG_ROUND,
        absl::StrCat("round ", current.round,
                     "'s deltas are already aggregated into the candidate "
                     "being validated; this delta came too late"));
  }
  if (header.round() != unit->round || unit->round != job.current_round ||
      header.parent_adapter_version() != current.parent_version) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_WRONG_ROUND,
        absl::StrCat("the delta is for round ", header.round(),
                     " from adapter version ", header.parent_adapter_version(),
                     "; the job is in round ", job.current_round,
                     " from version ", current.parent_version));
  }
  DeltaUpload upload;
  upload.header = header;
  upload.unit = *unit;
  if (unit->state == v1::UNIT_ACCEPTED &&
      unit->worker_id == header.worker_id()) {
    ASSIGN_OR_RETURN(std::optional<ResultRecord> accepted,
                     core_.state().GetAcceptedResult(unit->unit_id));
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

absl::Status DeltaIntake::AppendUpload(DeltaUpload* upload, uint64_t offset,
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
  absl::Status appended =
      core_.blobs().AppendUpload(upload->upload_id, offset, data,
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

ResultRecord DeltaIntake::ResultOf(const DeltaUpload& upload,
                                   bool accepted) const {
  ResultRecord result;
  result.unit_id = upload.unit.unit_id;
  result.worker_id = upload.header.worker_id();
  result.job_id = upload.unit.job_id;
  result.round = upload.unit.round;
  result.shard_index = upload.unit.shard_index;
  result.accepted = accepted;
  result.header = upload.header;
  result.created_ms = core_.Now();
  return result;
}

absl::Status DeltaIntake::RejectDelta(const DeltaUpload& upload,
                                      v1::RejectReason reason,
                                      absl::StatusCode code,
                                      const std::string& message) {
  ResultRecord result = ResultOf(upload, /*accepted=*/false);
  result.reject_reason = reason;
  result.message = message;
  RETURN_IF_ERROR(core_.state().RecordResult(result));
  return Rejection(code, reason, message);
}

absl::StatusOr<v1::UploadDeltaResponse> DeltaIntake::FinishUpload(
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
  ASSIGN_OR_RETURN(std::string hash,
                   core_.blobs().HashUpload(upload->upload_id));
  if (hash != upload->header.content_hash()) {
    RETURN_IF_ERROR(core_.blobs().AbortUpload(upload->upload_id));
    return Rejection(
        absl::StatusCode::kDataLoss, v1::REJECT_HASH_MISMATCH,
        absl::StrCat("the delta hashes to ", hash, ", the header says ",
                     upload->header.content_hash(),
                     "; the partial upload was discarded"));
  }
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   core_.state().GetJob(upload->unit.job_id));
  if (!job.has_value()) return NotFoundJob(upload->unit.job_id);
  ASSIGN_OR_RETURN(lora::LlamaConfig model, core_.LoadJobModelConfig(*job));
  ASSIGN_OR_RETURN(lora::LoraConfig lora_config,
                   LoraConfigFromProto(job->spec.lora()));
  ASSIGN_OR_RETURN(std::string path,
                   core_.blobs().UploadPath(upload->upload_id));
  lora::DeltaLimits limits;
  limits.max_norm = job->spec.max_delta_norm();
  limits.min_norm = MinDeltaNorm(job->spec);
  ASSIGN_OR_RETURN(lora::DeltaCheck check,
                   lora::CheckAdapterDelta(path, model, lora_config, limits,
                                           job->spec.training().freeze_lora_a()
                                               ? lora::DeltaLayout::kBOnly
                                               : lora::DeltaLayout::kFull));
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

  absl::MutexLock lock(&core_.decision_mu());
  // The lease or round may have moved on while bytes arrived or the checks
  // ran (the signature was checked when the upload began).
  absl::StatusOr<DeltaUpload> current = CheckUnitForUpload(upload->header);
  if (!current.ok() || reason != v1::REJECT_REASON_UNSPECIFIED) {
    // A refused delta never enters the blob store.
    RETURN_IF_ERROR(core_.blobs().AbortUpload(upload->upload_id));
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
  RETURN_IF_ERROR(core_.blobs().InstallVerifiedUpload(upload->upload_id, hash));
  ResultRecord result = ResultOf(*upload, /*accepted=*/true);
  result.l2_norm = check.l2_norm;
  RETURN_IF_ERROR(core_.state().RecordResult(result));
  RETURN_IF_ERROR(MaybeTrustResult(*job, current->unit, result.worker_id));
  response.set_accepted(true);
  response.set_message(
      absl::StrCat("accepted; L2 norm ", check.l2_norm,
                   "; credit comes when the round aggregates it"));
  return response;
}

absl::Status DeltaIntake::MaybeTrustResult(const JobRecord& job,
                                           const UnitRecord& unit,
                                           const std::string& worker_id) {
  if (job.spec.replication() < 2) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<WorkerRecord> worker,
                   core_.state().GetWorker(worker_id));
  if (!worker.has_value() || worker->validated_streak < kTrustedStreak)
    return absl::OkStatus();
  if (core_.options().random_fraction() < kTrustedRecheckFraction)
    return absl::OkStatus();  // re-checked like anyone's
  return core_.state()
      .SkipPendingReplicas(job.job_id, unit.round, unit.shard_index,
                           unit.unit_id)
      .status();
}

absl::Status DeltaIntake::SweepUploads(bool force) {
  absl::MutexLock sweep_lock(&sweep_mu_);
  const int64_t interval =
      std::min(kUploadSweepIntervalMs, core_.options().upload_expiry_ms / 2);
  if (!force && core_.Now() - last_upload_sweep_ms_ < interval)
    return absl::OkStatus();
  last_upload_sweep_ms_ = core_.Now();
  return core_.blobs().ExpireUploads(core_.options().upload_expiry_ms).status();
}

}  // namespace openforce::coordinator
