// PostgreSQL StateStore (internal/postgres_store.h): delta results,
// validation candidates and reports, closing a round (publish, credit, next
// round) and published adapters.

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/internal/pg_session.h"
#include "coordinator/internal/postgres_store.h"
#include "coordinator/internal/state_rows.h"

namespace openforce::coordinator {
namespace internal {

using state_rows::kReportColumns;
using state_rows::kResultColumns;
using state_rows::ReadReport;
using state_rows::ReadResult;

absl::Status PostgresStateStore::BeginValidation(
    const RoundRecord& candidate,
    const std::vector<UnitRecord>& validation_units) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        PgResult round,
        session->Exec(
            "UPDATE rounds SET candidate_sha256=$1, candidate_attempt=$2, "
            "candidate_rule=$3, deadline_ms=$4 WHERE job_id=$5 AND "
            "round=$6 AND adapter_version=0",
            Params()
                .Add(candidate.candidate_sha256)
                .Add(static_cast<int64_t>(candidate.candidate_attempt))
                .Add(candidate.candidate_rule)
                .Add(candidate.deadline_ms)
                .Add(candidate.job_id)
                .Add(static_cast<int64_t>(candidate.round))));
    if (Changes(round.get()) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("round ", candidate.round, " of job ", candidate.job_id,
                       " is not open"));
    }
    RETURN_IF_ERROR(
        session
            ->Exec("UPDATE units SET state=$1, worker_id='', "
                   "lease_deadline_ms=0 "
                   "WHERE job_id=$2 AND round=$3 AND kind=$4 AND attempt<>$5 "
                   "AND "
                   "state IN ($6, $7)",
                   Params()
                       .Add(static_cast<int64_t>(v1::UNIT_SKIPPED))
                       .Add(candidate.job_id)
                       .Add(static_cast<int64_t>(candidate.round))
                       .Add(static_cast<int64_t>(v1::WORK_VALIDATE))
                       .Add(static_cast<int64_t>(candidate.candidate_attempt))
                       .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                       .Add(static_cast<int64_t>(v1::UNIT_LEASED)))
            .status());
    return InsertUnits(*session, validation_units);
  });
}

absl::Status PostgresStateStore::RecordResult(const ResultRecord& result) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(
        session
            ->Exec(
                absl::StrCat("INSERT INTO results (", kResultColumns,
                             ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"),
                Params()
                    .Add(result.unit_id)
                    .Add(result.worker_id)
                    .Add(result.job_id)
                    .Add(static_cast<int64_t>(result.round))
                    .Add(static_cast<int64_t>(result.shard_index))
                    .Add(int64_t{result.accepted ? 1 : 0})
                    .Add(static_cast<int64_t>(result.reject_reason))
                    .Add(result.message)
                    .AddMessage(result.header)
                    .Add(result.created_ms)
                    .AddDouble(result.l2_norm))
            .status());
    RETURN_IF_ERROR(
        session
            ->Exec(
                "UPDATE units SET state=$1, worker_id=$2, "
                "lease_deadline_ms=0 "
                "WHERE unit_id=$3",
                Params()
                    .Add(static_cast<int64_t>(
                        result.accepted ? v1::UNIT_ACCEPTED : v1::UNIT_PENDING))
                    .Add(result.accepted ? result.worker_id : std::string())
                    .Add(result.unit_id))
            .status());
    return session
        ->Exec(result.accepted
                   ? "UPDATE workers SET units_accepted=units_accepted+1, "
                     "current_unit_id='' WHERE worker_id=$1"
                   : "UPDATE workers SET units_rejected=units_rejected+1, "
                     "current_unit_id='' WHERE worker_id=$1",
               Params().Add(result.worker_id))
        .status();
  });
}

absl::StatusOr<std::vector<ResultRecord>> PostgresStateStore::ListResults(
    const std::string& job_id, uint64_t round) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(absl::StrCat("SELECT ", kResultColumns,
                                 " FROM results WHERE job_id=$1 AND round=$2 "
                                 "ORDER BY id"),
                    Params().Add(job_id).Add(static_cast<int64_t>(round))));
  return ReadAll<ResultRecord>(result.get(), ReadResult<PgRow>);
}

absl::StatusOr<std::optional<ResultRecord>>
PostgresStateStore::GetAcceptedResult(const std::string& unit_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(
          absl::StrCat("SELECT ", kResultColumns,
                       " FROM results WHERE unit_id=$1 AND accepted=1"),
          Params().Add(unit_id)));
  if (PQntuples(result.get()) == 0) return std::nullopt;
  ASSIGN_OR_RETURN(ResultRecord record, ReadResult(PgRow(result.get(), 0)));
  return record;
}

absl::Status PostgresStateStore::RecordValidationReport(
    const ValidationReportRecord& report) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(
        session
            ->Exec(
                absl::StrCat("INSERT INTO validation_reports (", kReportColumns,
                             ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"),
                Params()
                    .Add(report.unit_id)
                    .Add(report.worker_id)
                    .Add(report.job_id)
                    .Add(static_cast<int64_t>(report.round))
                    .Add(static_cast<int64_t>(report.attempt))
                    .Add(static_cast<int64_t>(report.slice))
                    .Add(int64_t{report.accepted})
                    .Add(static_cast<int64_t>(report.reject_reason))
                    .Add(report.message)
                    .AddMessage(report.report)
                    .Add(report.created_ms))
            .status());
    ASSIGN_OR_RETURN(
        PgResult unit,
        session->Exec("UPDATE units SET state=$1, lease_deadline_ms=0 WHERE "
                      "unit_id=$2 AND worker_id=$3 AND state=$4",
                      Params()
                          .Add(static_cast<int64_t>(v1::UNIT_ACCEPTED))
                          .Add(report.unit_id)
                          .Add(report.worker_id)
                          .Add(static_cast<int64_t>(v1::UNIT_LEASED))));
    if (Changes(unit.get()) != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "unit ", report.unit_id, " is not leased to ", report.worker_id));
    }
    return session
        ->Exec(
            "UPDATE workers SET units_accepted=units_accepted+1, "
            "current_unit_id='' WHERE worker_id=$1",
            Params().Add(report.worker_id))
        .status();
  });
}

absl::StatusOr<std::vector<ValidationReportRecord>>
PostgresStateStore::ListValidationReports(const std::string& job_id,
                                          uint64_t round) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(absl::StrCat("SELECT ", kReportColumns,
                                 " FROM validation_reports WHERE job_id=$1 AND "
                                 "round=$2 ORDER BY attempt, slice, unit_id"),
                    Params().Add(job_id).Add(static_cast<int64_t>(round))));
  return ReadAll<ValidationReportRecord>(result.get(), ReadReport<PgRow>);
}

absl::Status PostgresStateStore::CloseRound(const std::string& job_id,
                                            uint64_t round,
                                            const RoundOutcome& outcome) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() -> absl::Status {
    // The row lock this takes makes a second replica's close wait, then
    // find adapter_version set and change nothing: a round closes once.
    const uint64_t version = outcome.adapter.adapter.version();
    ASSIGN_OR_RETURN(
        PgResult close,
        session->Exec(
            "UPDATE rounds SET adapter_version=$1 WHERE job_id=$2 AND "
            "round=$3 AND adapter_version=0",
            Params()
                .Add(static_cast<int64_t>(version))
                .Add(job_id)
                .Add(static_cast<int64_t>(round))));
    if (Changes(close.get()) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("round ", round, " of job ", job_id, " is not open"));
    }
    RETURN_IF_ERROR(
        session
            ->Exec("INSERT INTO adapters (job_id, version, model_sha256, "
                   "config_sha256, adapter) VALUES ($1,$2,$3,$4,$5)",
                   Params()
                       .Add(job_id)
                       .Add(static_cast<int64_t>(version))
                       .Add(outcome.adapter.adapter.adapter_model().sha256())
                       .Add(outcome.adapter.adapter.adapter_config().sha256())
                       .AddMessage(outcome.adapter.adapter))
            .status());
    RETURN_IF_ERROR(session
                        ->Exec("UPDATE units SET state=$1, worker_id='', "
                               "lease_deadline_ms=0 "
                               "WHERE job_id=$2 AND round=$3 AND state=$4",
                               Params()
                                   .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                                   .Add(job_id)
                                   .Add(static_cast<int64_t>(round))
                                   .Add(static_cast<int64_t>(v1::UNIT_LEASED)))
                        .status());
    for (const ResultVerdict& credit : outcome.credited) {
      RETURN_IF_ERROR(
          session
              ->Exec("UPDATE workers SET credit_flop=credit_flop+$1, "
                     "validated_streak=validated_streak+$2 WHERE worker_id=$3",
                     Params()
                         .AddDouble(credit.credit_flop)
                         .Add(int64_t{credit.replica ==
                                      ResultVerdict::Replica::kAgreed})
                         .Add(credit.worker_id))
              .status());
    }
    for (const ResultVerdict& excluded : outcome.excluded) {
      // The unit's accepted delta or validation report, whichever it has.
      for (const char* table : {"results", "validation_reports"}) {
        RETURN_IF_ERROR(
            session
                ->Exec(
                    absl::StrCat("UPDATE ", table,
                                 " SET accepted=0, reject_reason=$1, "
                                 "message=$2 WHERE unit_id=$3 AND accepted=1"),
                    Params()
                        .Add(static_cast<int64_t>(excluded.reason))
                        .Add(excluded.message)
                        .Add(excluded.unit_id))
                .status());
      }
      RETURN_IF_ERROR(
          session
              ->Exec("UPDATE units SET state=$1 WHERE unit_id=$2",
                     Params()
                         .Add(static_cast<int64_t>(v1::UNIT_REJECTED))
                         .Add(excluded.unit_id))
              .status());
      RETURN_IF_ERROR(
          session
              ->Exec("UPDATE workers SET units_accepted=units_accepted-1, "
                     "units_rejected=units_rejected+1 WHERE worker_id=$1",
                     Params().Add(excluded.worker_id))
              .status());
      if (excluded.replica == ResultVerdict::Replica::kDisagreed) {
        RETURN_IF_ERROR(
            session
                ->Exec("UPDATE workers SET validated_streak=0, "
                       "units_invalid=units_invalid+1 WHERE worker_id=$1",
                       Params().Add(excluded.worker_id))
                .status());
      }
    }
    if (outcome.next_round.has_value()) {
      RETURN_IF_ERROR(InsertRoundAndUnits(*session, *outcome.next_round,
                                          outcome.next_units));
    }
    return session
        ->Exec(
            "UPDATE jobs SET latest_version=$1, current_round=$2, "
            "state=$3 WHERE job_id=$4",
            Params()
                .Add(static_cast<int64_t>(version))
                .Add(static_cast<int64_t>(outcome.next_round.has_value()
                                              ? outcome.next_round->round
                                              : round))
                .Add(static_cast<int64_t>(outcome.next_round.has_value()
                                              ? v1::JOB_RUNNING
                                              : v1::JOB_SUCCEEDED))
                .Add(job_id))
        .status();
  });
}

absl::StatusOr<std::optional<AdapterRecord>> PostgresStateStore::GetAdapter(
    const std::string& job_id, uint64_t version) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  Params params;
  params.Add(job_id);
  if (version != 0) params.Add(static_cast<int64_t>(version));
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(version == 0
                        ? "SELECT adapter FROM adapters WHERE job_id=$1 "
                          "ORDER BY version DESC LIMIT 1"
                        : "SELECT adapter FROM adapters WHERE job_id=$1 "
                          "AND version=$2",
                    params));
  if (PQntuples(result.get()) == 0) return std::nullopt;
  AdapterRecord record;
  RETURN_IF_ERROR(PgRow(result.get(), 0).Message(0, &record.adapter));
  return record;
}

absl::StatusOr<bool> PostgresStateStore::IsPublishedAdapterBlob(
    const std::string& sha256) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec("SELECT 1 FROM adapters WHERE model_sha256=$1 OR "
                    "config_sha256=$1 LIMIT 1",
                    Params().Add(sha256)));
  return PQntuples(result.get()) > 0;
}

}  // namespace internal
}  // namespace openforce::coordinator
