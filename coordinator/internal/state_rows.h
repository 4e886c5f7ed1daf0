// The columns of each StateStore table, in the order both backends select
// them, and the readers that turn one selected row into a record. A Row has
// Text(i), Int(i), Double(i) and Message(i, out); SQLite's statement and
// PostgreSQL's result row both do.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_STATE_ROWS_H_
#define OPENFORCE_COORDINATOR_INTERNAL_STATE_ROWS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "coordinator/state_store.h"

namespace openforce::coordinator::internal::state_rows {

inline constexpr char kWorkerColumns[] =
    "worker_id, public_key, display_name, profile, registered_ms, "
    "last_heartbeat_ms, availability, current_unit_id, units_accepted, "
    "units_rejected, credit_flop, validated_streak, units_invalid";
inline constexpr char kJobColumns[] =
    "job_id, spec, state, current_round, latest_version, created_ms, message, "
    "initial_adapter, adapter_config, estimated_memory_bytes";
inline constexpr char kUnitColumns[] =
    "unit_id, job_id, round, shard_index, replica, state, worker_id, "
    "lease_deadline_ms, kind, attempt";
inline constexpr char kRoundColumns[] =
    "job_id, round, parent_version, opened_ms, deadline_ms, adapter_version, "
    "candidate_sha256, candidate_attempt, candidate_rule";
inline constexpr char kReportColumns[] =
    "unit_id, worker_id, job_id, round, attempt, slice, accepted, "
    "reject_reason, message, report, created_ms";
inline constexpr char kResultColumns[] =
    "unit_id, worker_id, job_id, round, shard_index, accepted, reject_reason, "
    "message, header, created_ms, l2_norm";

template <typename Row>
absl::StatusOr<WorkerRecord> ReadWorker(const Row& row) {
  WorkerRecord worker;
  worker.worker_id = row.Text(0);
  worker.public_key = row.Text(1);
  worker.display_name = row.Text(2);
  RETURN_IF_ERROR(row.Message(3, &worker.profile));
  worker.registered_ms = row.Int(4);
  worker.last_heartbeat_ms = row.Int(5);
  worker.availability = static_cast<v1::Availability>(row.Int(6));
  worker.current_unit_id = row.Text(7);
  worker.units_accepted = static_cast<uint32_t>(row.Int(8));
  worker.units_rejected = static_cast<uint32_t>(row.Int(9));
  worker.credit_flop = row.Double(10);
  worker.validated_streak = static_cast<uint32_t>(row.Int(11));
  worker.units_invalid = static_cast<uint32_t>(row.Int(12));
  return worker;
}

template <typename Row>
absl::StatusOr<JobRecord> ReadJob(const Row& row) {
  JobRecord job;
  job.job_id = row.Text(0);
  RETURN_IF_ERROR(row.Message(1, &job.spec));
  job.state = static_cast<v1::JobState>(row.Int(2));
  job.current_round = static_cast<uint64_t>(row.Int(3));
  job.latest_version = static_cast<uint64_t>(row.Int(4));
  job.created_ms = row.Int(5);
  job.message = row.Text(6);
  RETURN_IF_ERROR(row.Message(7, &job.initial_adapter));
  RETURN_IF_ERROR(row.Message(8, &job.adapter_config));
  job.estimated_memory_bytes = static_cast<uint64_t>(row.Int(9));
  return job;
}

template <typename Row>
UnitRecord ReadUnit(const Row& row) {
  UnitRecord unit;
  unit.unit_id = row.Text(0);
  unit.job_id = row.Text(1);
  unit.round = static_cast<uint64_t>(row.Int(2));
  unit.shard_index = static_cast<uint32_t>(row.Int(3));
  unit.replica = static_cast<uint32_t>(row.Int(4));
  unit.state = static_cast<v1::UnitState>(row.Int(5));
  unit.worker_id = row.Text(6);
  unit.lease_deadline_ms = row.Int(7);
  unit.kind = static_cast<v1::WorkKind>(row.Int(8));
  unit.attempt = static_cast<uint32_t>(row.Int(9));
  return unit;
}

template <typename Row>
RoundRecord ReadRound(const Row& row) {
  RoundRecord round;
  round.job_id = row.Text(0);
  round.round = static_cast<uint64_t>(row.Int(1));
  round.parent_version = static_cast<uint64_t>(row.Int(2));
  round.opened_ms = row.Int(3);
  round.deadline_ms = row.Int(4);
  round.adapter_version = static_cast<uint64_t>(row.Int(5));
  round.candidate_sha256 = row.Text(6);
  round.candidate_attempt = static_cast<uint32_t>(row.Int(7));
  round.candidate_rule = row.Text(8);
  return round;
}

template <typename Row>
absl::StatusOr<ValidationReportRecord> ReadReport(const Row& row) {
  ValidationReportRecord report;
  report.unit_id = row.Text(0);
  report.worker_id = row.Text(1);
  report.job_id = row.Text(2);
  report.round = static_cast<uint64_t>(row.Int(3));
  report.attempt = static_cast<uint32_t>(row.Int(4));
  report.slice = static_cast<uint32_t>(row.Int(5));
  report.accepted = row.Int(6) != 0;
  report.reject_reason = static_cast<v1::RejectReason>(row.Int(7));
  report.message = row.Text(8);
  RETURN_IF_ERROR(row.Message(9, &report.report));
  report.created_ms = row.Int(10);
  return report;
}

template <typename Row>
absl::StatusOr<ResultRecord> ReadResult(const Row& row) {
  ResultRecord result;
  result.unit_id = row.Text(0);
  result.worker_id = row.Text(1);
  result.job_id = row.Text(2);
  result.round = static_cast<uint64_t>(row.Int(3));
  result.shard_index = static_cast<uint32_t>(row.Int(4));
  result.accepted = row.Int(5) != 0;
  result.reject_reason = static_cast<v1::RejectReason>(row.Int(6));
  result.message = row.Text(7);
  RETURN_IF_ERROR(row.Message(8, &result.header));
  result.created_ms = row.Int(9);
  result.l2_norm = row.Double(10);
  return result;
}

}  // namespace openforce::coordinator::internal::state_rows

#endif  // OPENFORCE_COORDINATOR_INTERNAL_STATE_ROWS_H_
