// SQLite StateStore (internal/sqlite_store.h): delta results, validation
// candidates and reports, closing a round (publish, credit, next round) and
// published adapters.

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/internal/sqlite_store.h"
#include "coordinator/internal/state_rows.h"

namespace openforce::coordinator {
namespace internal {

using internal::state_rows::kReportColumns;
using internal::state_rows::kResultColumns;
using internal::state_rows::ReadReport;
using internal::state_rows::ReadResult;

absl::Status SqliteStateStore::RecordResult(const ResultRecord& result) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement insert,
        Prepare(absl::StrCat("INSERT INTO results (", kResultColumns,
                             ") VALUES (?,?,?,?,?,?,?,?,?,?,?)")));
    RETURN_IF_ERROR(insert.Bind(result.unit_id)
                        .Bind(result.worker_id)
                        .Bind(result.job_id)
                        .Bind(static_cast<int64_t>(result.round))
                        .Bind(static_cast<int64_t>(result.shard_index))
                        .Bind(result.accepted ? 1 : 0)
                        .Bind(static_cast<int64_t>(result.reject_reason))
                        .Bind(result.message)
                        .BindMessage(result.header)
                        .Bind(result.created_ms)
                        .BindDouble(result.l2_norm)
                        .Run());
    ASSIGN_OR_RETURN(
        Statement unit,
        Prepare("UPDATE units SET state=?, worker_id=?, lease_deadline_ms=0 "
                "WHERE unit_id=?"));
    RETURN_IF_ERROR(
        unit.Bind(static_cast<int64_t>(result.accepted ? v1::UNIT_ACCEPTED
                                                       : v1::UNIT_PENDING))
            .Bind(result.accepted ? result.worker_id : std::string())
            .Bind(result.unit_id)
            .Run());
    ASSIGN_OR_RETURN(
        Statement worker,
        Prepare(result.accepted
                    ? "UPDATE workers SET units_accepted=units_accepted+1, "
                      "current_unit_id='' WHERE worker_id=?"
                    : "UPDATE workers SET units_rejected=units_rejected+1, "
                      "current_unit_id='' WHERE worker_id=?"));
    return worker.Bind(result.worker_id).Run();
  });
}

absl::StatusOr<std::vector<ResultRecord>> SqliteStateStore::ListResults(
    const std::string& job_id, uint64_t round) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat("SELECT ", kResultColumns,
                           " FROM results WHERE job_id=? AND round=? "
                           "ORDER BY id")));
  statement.Bind(job_id).Bind(static_cast<int64_t>(round));
  std::vector<ResultRecord> results;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(ResultRecord result, ReadResult(statement));
    results.push_back(std::move(result));
  }
  return results;
}

absl::StatusOr<std::optional<ResultRecord>> SqliteStateStore::GetAcceptedResult(
    const std::string& unit_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat("SELECT ", kResultColumns,
                           " FROM results WHERE unit_id=? AND accepted=1")));
  statement.Bind(unit_id);
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  ASSIGN_OR_RETURN(ResultRecord result, ReadResult(statement));
  return result;
}

absl::Status SqliteStateStore::CloseRound(const std::string& job_id,
                                          uint64_t round,
                                          const RoundOutcome& outcome) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Statement close,
                     Prepare("UPDATE rounds SET adapter_version=? WHERE "
                             "job_id=? AND round=? AND adapter_version=0"));
    const uint64_t version = outcome.adapter.adapter.version();
    RETURN_IF_ERROR(close.Bind(static_cast<int64_t>(version))
                        .Bind(job_id)
                        .Bind(static_cast<int64_t>(round))
                        .Run());
    if (sqlite3_changes(db_.get()) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("round ", round, " of job ", job_id, " is not open"));
    }
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare("INSERT INTO adapters (job_id, version, "
                             "model_sha256, config_sha256, adapter) "
                             "VALUES (?,?,?,?,?)"));
    RETURN_IF_ERROR(insert.Bind(job_id)
                        .Bind(static_cast<int64_t>(version))
                        .Bind(outcome.adapter.adapter.adapter_model().sha256())
                        .Bind(outcome.adapter.adapter.adapter_config().sha256())
                        .BindMessage(outcome.adapter.adapter)
                        .Run());
    ASSIGN_OR_RETURN(Statement end_leases,
                     Prepare("UPDATE units SET state=?, worker_id='', "
                             "lease_deadline_ms=0 WHERE job_id=? AND "
                             "round=? AND state=?"));
    RETURN_IF_ERROR(end_leases.Bind(static_cast<int64_t>(v1::UNIT_PENDING))
                        .Bind(job_id)
                        .Bind(static_cast<int64_t>(round))
                        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
                        .Run());
    for (const ResultVerdict& credit : outcome.credited) {
      ASSIGN_OR_RETURN(Statement worker,
                       Prepare("UPDATE workers SET credit_flop=credit_flop+?, "
                               "validated_streak=validated_streak+? "
                               "WHERE worker_id=?"));
      RETURN_IF_ERROR(
          worker.BindDouble(credit.credit_flop)
              .Bind(int64_t{credit.replica == ResultVerdict::Replica::kAgreed})
              .Bind(credit.worker_id)
              .Run());
    }
    for (const ResultVerdict& excluded : outcome.excluded) {
      // The unit's accepted delta or validation report, whichever it has.
      for (const char* table : {"results", "validation_reports"}) {
        ASSIGN_OR_RETURN(
            Statement result,
            Prepare(absl::StrCat("UPDATE ", table,
                                 " SET accepted=0, reject_reason=?, "
                                 "message=? WHERE unit_id=? AND accepted=1")));
        RETURN_IF_ERROR(result.Bind(static_cast<int64_t>(excluded.reason))
                            .Bind(excluded.message)
                            .Bind(excluded.unit_id)
                            .Run());
      }
      ASSIGN_OR_RETURN(Statement unit,
                       Prepare("UPDATE units SET state=? WHERE unit_id=?"));
      RETURN_IF_ERROR(unit.Bind(static_cast<int64_t>(v1::UNIT_REJECTED))
                          .Bind(excluded.unit_id)
                          .Run());
      ASSIGN_OR_RETURN(
          Statement worker,
          Prepare("UPDATE workers SET units_accepted=units_accepted-1, "
                  "units_rejected=units_rejected+1 WHERE worker_id=?"));
      RETURN_IF_ERROR(worker.Bind(excluded.worker_id).Run());
      if (excluded.replica == ResultVerdict::Replica::kDisagreed) {
        ASSIGN_OR_RETURN(
            Statement reputation,
            Prepare("UPDATE workers SET validated_streak=0, "
                    "units_invalid=units_invalid+1 WHERE worker_id=?"));
        RETURN_IF_ERROR(reputation.Bind(excluded.worker_id).Run());
      }
    }
    if (outcome.next_round.has_value()) {
      RETURN_IF_ERROR(
          InsertRoundAndUnits(*outcome.next_round, outcome.next_units));
    }
    ASSIGN_OR_RETURN(Statement job,
                     Prepare("UPDATE jobs SET latest_version=?, "
                             "current_round=?, state=? WHERE job_id=?"));
    return job.Bind(static_cast<int64_t>(version))
        .Bind(static_cast<int64_t>(
            outcome.next_round.has_value() ? outcome.next_round->round : round))
        .Bind(static_cast<int64_t>(outcome.next_round.has_value()
                                       ? v1::JOB_RUNNING
                                       : v1::JOB_SUCCEEDED))
        .Bind(job_id)
        .Run();
  });
}

absl::StatusOr<std::optional<AdapterRecord>> SqliteStateStore::GetAdapter(
    const std::string& job_id, uint64_t version) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(version == 0
                  ? "SELECT adapter FROM adapters WHERE job_id=? ORDER BY "
                    "version DESC LIMIT 1"
                  : "SELECT adapter FROM adapters WHERE job_id=? AND "
                    "version=?"));
  statement.Bind(job_id);
  if (version != 0) statement.Bind(static_cast<int64_t>(version));
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  AdapterRecord record;
  RETURN_IF_ERROR(statement.Message(0, &record.adapter));
  return record;
}

absl::StatusOr<bool> SqliteStateStore::IsPublishedAdapterBlob(
    const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare("SELECT 1 FROM adapters WHERE model_sha256=?1 OR "
                           "config_sha256=?1 LIMIT 1"));
  statement.Bind(sha256);
  return statement.Step();
}

absl::Status SqliteStateStore::BeginValidation(
    const RoundRecord& candidate,
    const std::vector<UnitRecord>& validation_units) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement round,
        Prepare("UPDATE rounds SET candidate_sha256=?, candidate_attempt=?, "
                "candidate_rule=?, deadline_ms=? WHERE job_id=? AND "
                "round=? AND adapter_version=0"));
    RETURN_IF_ERROR(round.Bind(candidate.candidate_sha256)
                        .Bind(static_cast<int64_t>(candidate.candidate_attempt))
                        .Bind(candidate.candidate_rule)
                        .Bind(candidate.deadline_ms)
                        .Bind(candidate.job_id)
                        .Bind(static_cast<int64_t>(candidate.round))
                        .Run());
    if (sqlite3_changes(db_.get()) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("round ", candidate.round, " of job ", candidate.job_id,
                       " is not open"));
    }
    ASSIGN_OR_RETURN(Statement skip,
                     Prepare("UPDATE units SET state=?, worker_id='', "
                             "lease_deadline_ms=0 WHERE job_id=? AND "
                             "round=? AND kind=? AND attempt<>? AND "
                             "state IN (?, ?)"));
    RETURN_IF_ERROR(skip.Bind(static_cast<int64_t>(v1::UNIT_SKIPPED))
                        .Bind(candidate.job_id)
                        .Bind(static_cast<int64_t>(candidate.round))
                        .Bind(static_cast<int64_t>(v1::WORK_VALIDATE))
                        .Bind(static_cast<int64_t>(candidate.candidate_attempt))
                        .Bind(static_cast<int64_t>(v1::UNIT_PENDING))
                        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
                        .Run());
    return InsertUnits(validation_units);
  });
}

absl::Status SqliteStateStore::RecordValidationReport(
    const ValidationReportRecord& report) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement insert,
        Prepare(absl::StrCat("INSERT INTO validation_reports (", kReportColumns,
                             ") VALUES (?,?,?,?,?,?,?,?,?,?,?)")));
    RETURN_IF_ERROR(insert.Bind(report.unit_id)
                        .Bind(report.worker_id)
                        .Bind(report.job_id)
                        .Bind(static_cast<int64_t>(report.round))
                        .Bind(static_cast<int64_t>(report.attempt))
                        .Bind(static_cast<int64_t>(report.slice))
                        .Bind(int64_t{report.accepted})
                        .Bind(static_cast<int64_t>(report.reject_reason))
                        .Bind(report.message)
                        .BindMessage(report.report)
                        .Bind(report.created_ms)
                        .Run());
    ASSIGN_OR_RETURN(Statement unit,
                     Prepare("UPDATE units SET state=?, lease_deadline_ms=0 "
                             "WHERE unit_id=? AND worker_id=? AND state=?"));
    RETURN_IF_ERROR(unit.Bind(static_cast<int64_t>(v1::UNIT_ACCEPTED))
                        .Bind(report.unit_id)
                        .Bind(report.worker_id)
                        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
                        .Run());
    if (sqlite3_changes(db_.get()) != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "unit ", report.unit_id, " is not leased to ", report.worker_id));
    }
    ASSIGN_OR_RETURN(
        Statement worker,
        Prepare("UPDATE workers SET units_accepted=units_accepted+1, "
                "current_unit_id='' WHERE worker_id=?"));
    return worker.Bind(report.worker_id).Run();
  });
}

absl::StatusOr<std::vector<ValidationReportRecord>>
SqliteStateStore::ListValidationReports(const std::string& job_id,
                                        uint64_t round) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat("SELECT ", kReportColumns,
                           " FROM validation_reports WHERE job_id=? AND "
                           "round=? ORDER BY attempt, slice, unit_id")));
  statement.Bind(job_id).Bind(static_cast<int64_t>(round));
  std::vector<ValidationReportRecord> reports;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(ValidationReportRecord report, ReadReport(statement));
    reports.push_back(std::move(report));
  }
  return reports;
}

}  // namespace internal
}  // namespace openforce::coordinator
