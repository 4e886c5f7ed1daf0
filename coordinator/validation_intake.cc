// SubmitValidation (see delta_intake.h): a validation unit's signed report is
// checked against the call's signer, the lease and the round it scores (job,
// round, parent, candidate, slice length, base model) before it is stored.
// The losses themselves cannot be checked alone; replicas of the slice are
// compared when the round closes (validation_phase.cc).
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "coordinator/delta_intake.h"
#include "coordinator/internal/planning.h"
#include "proto/call_signing.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {
namespace {

// A mean next-token loss is at most log(vocabulary) for a model that guesses
// uniformly and rarely far above it; anything past this is not a loss.
constexpr double kMaxReportedLoss = 1e4;

bool IsPlausibleLoss(double loss) {
  return std::isfinite(loss) && loss >= 0 && loss <= kMaxReportedLoss;
}

}  // namespace

absl::StatusOr<v1::SubmitValidationResponse> DeltaIntake::SubmitValidation(
    const v1::SubmitValidationRequest& request) {
  const v1::ValidationReport& report = request.report();
  ASSIGN_OR_RETURN(
      WorkerRecord worker,
      core_.AuthenticateCall(kSubmitValidationMethod, report.worker_id(),
                             request.auth(), CallDigest(request)));
  if (!IsPlausibleLoss(report.candidate_loss()) ||
      !IsPlausibleLoss(report.parent_loss())) {
    return Rejection(absl::StatusCode::kInvalidArgument, v1::REJECT_NON_FINITE,
                     absl::StrCat("validation losses must be finite and in "
                                  "[0, ",
                                  kMaxReportedLoss, "]; got candidate ",
                                  report.candidate_loss(), ", parent ",
                                  report.parent_loss()));
  }
  ASSIGN_OR_RETURN(Ed25519PublicKey key,
                   Ed25519PublicKey::FromRaw(worker.public_key));
  absl::Status signed_by_worker = VerifyPayloadSignature(
      key, ValidationSigningPayload(report), report.signature());
  if (!signed_by_worker.ok()) {
    return Rejection(absl::StatusCode::kUnauthenticated,
                     v1::REJECT_BAD_SIGNATURE,
                     absl::StrCat("validation report signature: ",
                                  signed_by_worker.message()));
  }

  absl::MutexLock lock(&core_.decision_mu());
  ASSIGN_OR_RETURN(std::optional<UnitRecord> unit,
                   core_.state().GetUnit(report.unit_id()));
  if (!unit.has_value()) {
    return absl::NotFoundError(absl::StrCat("no unit ", report.unit_id()));
  }
  if (unit->kind != v1::WORK_VALIDATE) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit ", unit->unit_id,
                     " is a training unit: deliver its delta with "
                     "UploadDelta"));
  }
  if (report.job_id() != unit->job_id) {
    return Rejection(
        absl::StatusCode::kInvalidArgument, v1::REJECT_WRONG_JOB,
        absl::StrCat("unit ", unit->unit_id, " belongs to job ", unit->job_id,
                     ", the report names job ", report.job_id()));
  }
  ASSIGN_OR_RETURN(const JobRecord job, core_.RunningJob(unit->job_id));
  v1::SubmitValidationResponse response;
  if (unit->state == v1::UNIT_ACCEPTED && unit->worker_id == worker.worker_id) {
    // A retry after a lost acknowledgement: the same report again is fine.
    ASSIGN_OR_RETURN(
        std::vector<ValidationReportRecord> stored,
        core_.state().ListValidationReports(unit->job_id, unit->round));
    for (const ValidationReportRecord& earlier : stored) {
      if (earlier.unit_id == unit->unit_id &&
          earlier.report.signature() == report.signature()) {
        response.set_accepted(true);
        response.set_message("already recorded");
        return response;
      }
    }
  }
  if (unit->state != v1::UNIT_LEASED || unit->worker_id != worker.worker_id) {
    return Rejection(absl::StatusCode::kPermissionDenied,
                     v1::REJECT_LEASE_NOT_HELD,
                     absl::StrCat("worker ", worker.worker_id,
                                  " holds no lease on unit ", unit->unit_id));
  }
  if (report.base_model_hash() != job.spec.base_model_hash()) {
    return Rejection(absl::StatusCode::kFailedPrecondition,
                     v1::REJECT_WRONG_JOB,
                     "the report names another base model than the job's");
  }
  ASSIGN_OR_RETURN(RoundRecord round, core_.FindRound(job.job_id, unit->round));
  if (report.round() != unit->round || unit->round != job.current_round ||
      round.adapter_version != 0 || unit->attempt != round.candidate_attempt ||
      report.parent_adapter_version() != round.parent_version) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_WRONG_ROUND,
        absl::StrCat("the report is for round ", report.round(),
                     " from adapter version ", report.parent_adapter_version(),
                     "; the unit scores candidate ", unit->attempt,
                     " of round ", unit->round, " from version ",
                     round.parent_version));
  }
  if (report.candidate_sha256() != round.candidate_sha256) {
    return Rejection(
        absl::StatusCode::kFailedPrecondition, v1::REJECT_HASH_MISMATCH,
        absl::StrCat("the report scores adapter ", report.candidate_sha256(),
                     "; the round's candidate is ", round.candidate_sha256));
  }
  const auto [begin, end] = ValidationSliceRange(job.spec, unit->shard_index);
  if (report.records() != end - begin) {
    return Rejection(
        absl::StatusCode::kInvalidArgument, v1::REJECT_SAMPLE_COUNT_MISMATCH,
        absl::StrCat("the report scored ", report.records(),
                     " records; the unit's slice has ", end - begin));
  }
  ValidationReportRecord record;
  record.unit_id = unit->unit_id;
  record.worker_id = worker.worker_id;
  record.job_id = unit->job_id;
  record.round = unit->round;
  record.attempt = unit->attempt;
  record.slice = unit->shard_index;
  record.report = report;
  record.created_ms = core_.Now();
  RETURN_IF_ERROR(core_.state().RecordValidationReport(record));
  response.set_accepted(true);
  return response;
}

}  // namespace openforce::coordinator
