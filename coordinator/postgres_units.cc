// PostgreSQL StateStore (internal/postgres_store.h): units, leasing with
// FOR UPDATE SKIP LOCKED, lease expiry, round progress counters, added
// replicas.

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

using state_rows::kUnitColumns;
using state_rows::ReadUnit;

absl::StatusOr<RoundProgress> PostgresStateStore::GetRoundProgress(
    const std::string& job_id, uint64_t round) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec("SELECT kind, state, count FROM round_unit_counts WHERE "
                    "job_id=$1 AND round=$2",
                    Params().Add(job_id).Add(static_cast<int64_t>(round))));
  RoundProgress progress;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    const PgRow counts(result.get(), row);
    progress.Add(static_cast<v1::WorkKind>(counts.Int(0)),
                 static_cast<v1::UnitState>(counts.Int(1)),
                 static_cast<uint64_t>(counts.Int(2)));
  }
  return progress;
}

absl::StatusOr<std::optional<UnitRecord>> PostgresStateStore::GetUnit(
    const std::string& unit_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(PgResult result,
                   session->Exec(absl::StrCat("SELECT ", kUnitColumns,
                                              " FROM units WHERE unit_id=$1"),
                                 Params().Add(unit_id)));
  if (PQntuples(result.get()) == 0) return std::nullopt;
  return ReadUnit(PgRow(result.get(), 0));
}

absl::StatusOr<std::vector<UnitRecord>> PostgresStateStore::ListUnits(
    const std::string& job_id, uint64_t round) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(
          absl::StrCat("SELECT ", kUnitColumns,
                       " FROM units WHERE job_id=$1 AND round=$2 "
                       "ORDER BY kind, attempt, shard_index, replica"),
          Params().Add(job_id).Add(static_cast<int64_t>(round))));
  return ReadUnits(result.get());
}

absl::StatusOr<std::optional<UnitRecord>> PostgresStateStore::LeaseNextUnit(
    const std::string& job_id, uint64_t round, const std::string& worker_id,
    int64_t deadline_ms) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  std::optional<UnitRecord> leased;
  RETURN_IF_ERROR(session->Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        PgResult open,
        session->Exec("SELECT r.candidate_attempt FROM rounds r JOIN jobs j ON "
                      "j.job_id=r.job_id WHERE r.job_id=$1 AND r.round=$2 AND "
                      "r.adapter_version=0 AND j.state=$3",
                      Params()
                          .Add(job_id)
                          .Add(static_cast<int64_t>(round))
                          .Add(static_cast<int64_t>(v1::JOB_RUNNING))));
    if (PQntuples(open.get()) == 0) return absl::OkStatus();
    // Once the round's deltas are aggregated into a candidate, what is
    // left of its training is not needed (and would change the result).
    const bool training = PgRow(open.get(), 0).Int(0) == 0;
    // In index order (units_leasable); SKIP LOCKED passes over a unit
    // another replica is leasing right now instead of waiting for it.
    // The checks are scalar subqueries, not NOT EXISTS: PostgreSQL turns
    // NOT EXISTS into an anti-join over every pending unit of the round,
    // while a subquery runs per candidate and the scan stops at the first
    // that passes, whatever the round's size.
    Params params;
    params.Add(job_id)
        .Add(static_cast<int64_t>(round))
        .Add(static_cast<int64_t>(v1::UNIT_PENDING))
        .Add(worker_id)
        .Add(static_cast<int64_t>(v1::UNIT_LEASED))
        .Add(static_cast<int64_t>(v1::UNIT_ACCEPTED));
    if (!training) params.Add(static_cast<int64_t>(v1::WORK_VALIDATE));
    ASSIGN_OR_RETURN(
        PgResult found,
        session->Exec(
            absl::StrCat(
                "SELECT ", kUnitColumns,
                " FROM units u WHERE job_id=$1 AND round=$2 AND state=$3 ",
                training ? "" : "AND kind=$7 ",
                "AND (SELECT 1 FROM units o WHERE "
                "o.job_id=u.job_id AND o.round=u.round AND "
                "o.shard_index=u.shard_index AND o.worker_id=$4 AND "
                "o.kind=u.kind AND o.attempt=u.attempt AND "
                "o.state IN ($5, $6) LIMIT 1) IS NULL "
                "AND (u.kind<>0 OR (SELECT 1 FROM results r "
                "WHERE r.job_id=u.job_id AND r.round=u.round AND "
                "r.shard_index=u.shard_index AND r.worker_id=$4 LIMIT 1) "
                "IS NULL) "
                "AND (u.kind=0 OR (SELECT 1 FROM "
                "validation_reports v WHERE v.job_id=u.job_id AND "
                "v.round=u.round AND v.slice=u.shard_index AND "
                "v.worker_id=$4 AND v.attempt=u.attempt LIMIT 1) IS NULL) "
                "ORDER BY kind DESC, replica, shard_index LIMIT 1 "
                "FOR UPDATE SKIP LOCKED"),
            params));
    if (PQntuples(found.get()) == 0) return absl::OkStatus();
    UnitRecord unit = ReadUnit(PgRow(found.get(), 0));
    RETURN_IF_ERROR(
        session
            ->Exec("UPDATE units SET state=$1, worker_id=$2, "
                   "lease_deadline_ms=$3 WHERE unit_id=$4 AND state=$5",
                   Params()
                       .Add(static_cast<int64_t>(v1::UNIT_LEASED))
                       .Add(worker_id)
                       .Add(deadline_ms)
                       .Add(unit.unit_id)
                       .Add(static_cast<int64_t>(v1::UNIT_PENDING)))
            .status());
    unit.state = v1::UNIT_LEASED;
    unit.worker_id = worker_id;
    unit.lease_deadline_ms = deadline_ms;
    leased = std::move(unit);
    return absl::OkStatus();
  }));
  return leased;
}

absl::Status PostgresStateStore::ReleaseUnit(const std::string& unit_id,
                                             const std::string& worker_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            "UPDATE units SET state=$1, worker_id='', lease_deadline_ms=0 "
            "WHERE unit_id=$2 AND state=$3 AND worker_id=$4",
            Params()
                .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                .Add(unit_id)
                .Add(static_cast<int64_t>(v1::UNIT_LEASED))
                .Add(worker_id)));
    if (Changes(result.get()) != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " holds no lease on unit ", unit_id));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<UnitRecord>> PostgresStateStore::ExpireLeases(
    int64_t now_ms) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  std::vector<UnitRecord> expired;
  RETURN_IF_ERROR(session->Transaction([&]() -> absl::Status {
    // The old values, from the rows this update changed (and locked).
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(absl::StrCat("UPDATE units u SET state=$1, worker_id='', "
                                   "lease_deadline_ms=0 FROM units o WHERE "
                                   "u.unit_id=o.unit_id AND u.state=$2 AND "
                                   "u.lease_deadline_ms<=$3 RETURNING ",
                                   Prefixed("o.", kUnitColumns)),
                      Params()
                          .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                          .Add(static_cast<int64_t>(v1::UNIT_LEASED))
                          .Add(now_ms)));
    expired = ReadUnits(result.get());
    return absl::OkStatus();
  }));
  return expired;
}

absl::StatusOr<std::vector<UnitRecord>>
PostgresStateStore::ExpireLeasesOfSilentWorkers(int64_t heard_before_ms) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  std::vector<UnitRecord> expired;
  RETURN_IF_ERROR(session->Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            absl::StrCat("UPDATE units u SET state=$1, worker_id='', "
                         "lease_deadline_ms=0 FROM units o WHERE "
                         "u.unit_id=o.unit_id AND u.state=$2 AND "
                         "u.worker_id IN (SELECT worker_id FROM workers "
                         "WHERE last_heartbeat_ms<$3) RETURNING ",
                         Prefixed("o.", kUnitColumns)),
            Params()
                .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                .Add(static_cast<int64_t>(v1::UNIT_LEASED))
                .Add(heard_before_ms)));
    expired = ReadUnits(result.get());
    return absl::OkStatus();
  }));
  return expired;
}

absl::StatusOr<std::vector<UnitRecord>> PostgresStateStore::ListWorkerLeases(
    const std::string& worker_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(
          absl::StrCat("SELECT ", kUnitColumns,
                       " FROM units WHERE worker_id=$1 AND state=$2 "
                       "ORDER BY unit_id"),
          Params().Add(worker_id).Add(static_cast<int64_t>(v1::UNIT_LEASED))));
  return ReadUnits(result.get());
}

absl::Status PostgresStateStore::AddUnits(
    const std::vector<UnitRecord>& units) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() { return InsertUnits(*session, units); });
}

absl::StatusOr<int> PostgresStateStore::SkipPendingReplicas(
    const std::string& job_id, uint64_t round, uint32_t shard_index,
    const std::string& except_unit_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  int skipped = 0;
  RETURN_IF_ERROR(session->Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            "UPDATE units SET state=$1 WHERE job_id=$2 AND round=$3 AND "
            "kind=0 AND shard_index=$4 AND state=$5 AND unit_id<>$6",
            Params()
                .Add(static_cast<int64_t>(v1::UNIT_SKIPPED))
                .Add(job_id)
                .Add(static_cast<int64_t>(round))
                .Add(static_cast<int64_t>(shard_index))
                .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                .Add(except_unit_id)));
    skipped = Changes(result.get());
    return absl::OkStatus();
  }));
  return skipped;
}

absl::Status PostgresStateStore::InsertUnits(
    PgSession& session, const std::vector<UnitRecord>& units) {
  return InsertRows(session, absl::StrCat("units (", kUnitColumns, ")"), 10,
                    units, [](const UnitRecord& unit, Params& params) {
                      params.Add(unit.unit_id)
                          .Add(unit.job_id)
                          .Add(static_cast<int64_t>(unit.round))
                          .Add(static_cast<int64_t>(unit.shard_index))
                          .Add(static_cast<int64_t>(unit.replica))
                          .Add(static_cast<int64_t>(unit.state))
                          .Add(unit.worker_id)
                          .Add(unit.lease_deadline_ms)
                          .Add(static_cast<int64_t>(unit.kind))
                          .Add(static_cast<int64_t>(unit.attempt));
                    });
}

}  // namespace internal
}  // namespace openforce::coordinator
