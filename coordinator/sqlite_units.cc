// SQLite StateStore (internal/sqlite_store.h): units, leasing through the
// leasable index, lease expiry, round progress counters, added replicas.

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/internal/sqlite_store.h"
#include "coordinator/internal/state_rows.h"

namespace openforce::coordinator {
namespace internal {

using internal::state_rows::kUnitColumns;
using internal::state_rows::ReadUnit;

absl::StatusOr<std::optional<UnitRecord>> SqliteStateStore::GetUnit(
    const std::string& unit_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare(absl::StrCat("SELECT ", kUnitColumns,
                                        " FROM units WHERE unit_id=?")));
  statement.Bind(unit_id);
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  return ReadUnit(statement);
}

absl::StatusOr<std::vector<UnitRecord>> SqliteStateStore::ListUnits(
    const std::string& job_id, uint64_t round) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat("SELECT ", kUnitColumns,
                           " FROM units WHERE job_id=? AND round=? "
                           "ORDER BY kind, attempt, shard_index, replica")));
  statement.Bind(job_id).Bind(static_cast<int64_t>(round));
  return ReadUnits(statement);
}

absl::StatusOr<std::optional<UnitRecord>> SqliteStateStore::LeaseNextUnit(
    const std::string& job_id, uint64_t round, const std::string& worker_id,
    int64_t deadline_ms) {
  absl::MutexLock lock(&mu_);
  std::optional<UnitRecord> leased;
  RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement open,
        Prepare("SELECT r.candidate_attempt FROM rounds r JOIN jobs j ON "
                "j.job_id=r.job_id WHERE r.job_id=? AND r.round=? AND "
                "r.adapter_version=0 AND j.state=?"));
    open.Bind(job_id)
        .Bind(static_cast<int64_t>(round))
        .Bind(static_cast<int64_t>(v1::JOB_RUNNING));
    ASSIGN_OR_RETURN(bool is_open, open.Step());
    if (!is_open) return absl::OkStatus();
    // Once the round's deltas are aggregated into a candidate, what is
    // left of its training is not needed (and would change the result).
    const bool training = open.Int(0) == 0;
    // In index order (units_leasable): the first pending unit that passes
    // the checks ends the scan, whatever the round's size.
    ASSIGN_OR_RETURN(
        Statement find,
        Prepare(absl::StrCat(
            "SELECT ", kUnitColumns,
            " FROM units u WHERE job_id=?1 AND round=?2 AND state=?3 ",
            training ? "" : "AND kind=?7 ",
            "AND NOT EXISTS (SELECT 1 FROM units o WHERE "
            "o.job_id=u.job_id AND o.round=u.round AND "
            "o.shard_index=u.shard_index AND o.worker_id=?4 AND "
            "o.kind=u.kind AND o.attempt=u.attempt AND o.state IN (?5, ?6)) "
            "AND (u.kind<>0 OR NOT EXISTS (SELECT 1 FROM results r WHERE "
            "r.job_id=u.job_id AND r.round=u.round AND "
            "r.shard_index=u.shard_index AND r.worker_id=?4)) "
            "AND (u.kind=0 OR NOT EXISTS (SELECT 1 FROM validation_reports "
            "v WHERE v.job_id=u.job_id AND v.round=u.round AND "
            "v.slice=u.shard_index AND v.worker_id=?4 AND "
            "v.attempt=u.attempt)) "
            "ORDER BY kind DESC, replica, shard_index LIMIT 1")));
    find.Bind(job_id)
        .Bind(static_cast<int64_t>(round))
        .Bind(static_cast<int64_t>(v1::UNIT_PENDING))
        .Bind(worker_id)
        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
        .Bind(static_cast<int64_t>(v1::UNIT_ACCEPTED));
    if (!training) find.Bind(static_cast<int64_t>(v1::WORK_VALIDATE));
    ASSIGN_OR_RETURN(bool found, find.Step());
    if (!found) return absl::OkStatus();
    UnitRecord unit = ReadUnit(find);
    ASSIGN_OR_RETURN(
        Statement lease,
        Prepare("UPDATE units SET state=?, worker_id=?, lease_deadline_ms=? "
                "WHERE unit_id=? AND state=?"));
    RETURN_IF_ERROR(lease.Bind(static_cast<int64_t>(v1::UNIT_LEASED))
                        .Bind(worker_id)
                        .Bind(deadline_ms)
                        .Bind(unit.unit_id)
                        .Bind(static_cast<int64_t>(v1::UNIT_PENDING))
                        .Run());
    unit.state = v1::UNIT_LEASED;
    unit.worker_id = worker_id;
    unit.lease_deadline_ms = deadline_ms;
    leased = std::move(unit);
    return absl::OkStatus();
  }));
  return leased;
}

absl::StatusOr<RoundProgress> SqliteStateStore::GetRoundProgress(
    const std::string& job_id, uint64_t round) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare("SELECT kind, state, count FROM round_unit_counts "
                           "WHERE job_id=? AND round=?"));
  statement.Bind(job_id).Bind(static_cast<int64_t>(round));
  RoundProgress progress;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    progress.Add(static_cast<v1::WorkKind>(statement.Int(0)),
                 static_cast<v1::UnitState>(statement.Int(1)),
                 static_cast<uint64_t>(statement.Int(2)));
  }
  return progress;
}

absl::Status SqliteStateStore::ReleaseUnit(const std::string& unit_id,
                                           const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare("UPDATE units SET state=?, worker_id='', lease_deadline_ms=0 "
              "WHERE unit_id=? AND state=? AND worker_id=?"));
  return Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(statement.Bind(static_cast<int64_t>(v1::UNIT_PENDING))
                        .Bind(unit_id)
                        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
                        .Bind(worker_id)
                        .Run());
    if (sqlite3_changes(db_.get()) != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker ", worker_id, " holds no lease on unit ", unit_id));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<UnitRecord>> SqliteStateStore::ExpireLeases(
    int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  std::vector<UnitRecord> expired;
  RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Statement select,
                     Prepare(absl::StrCat("SELECT ", kUnitColumns,
                                          " FROM units WHERE state=? AND "
                                          "lease_deadline_ms<=?")));
    select.Bind(static_cast<int64_t>(v1::UNIT_LEASED)).Bind(now_ms);
    ASSIGN_OR_RETURN(expired, ReadUnits(select));
    ASSIGN_OR_RETURN(Statement update,
                     Prepare("UPDATE units SET state=?, worker_id='', "
                             "lease_deadline_ms=0 WHERE state=? AND "
                             "lease_deadline_ms<=?"));
    return update.Bind(static_cast<int64_t>(v1::UNIT_PENDING))
        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
        .Bind(now_ms)
        .Run();
  }));
  return expired;
}

absl::StatusOr<std::vector<UnitRecord>>
SqliteStateStore::ExpireLeasesOfSilentWorkers(int64_t heard_before_ms) {
  absl::MutexLock lock(&mu_);
  std::vector<UnitRecord> expired;
  constexpr char kSilent[] =
      "state=?1 AND worker_id IN (SELECT worker_id FROM workers WHERE "
      "last_heartbeat_ms<?2)";
  RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Statement select,
                     Prepare(absl::StrCat("SELECT ", kUnitColumns,
                                          " FROM units WHERE ", kSilent)));
    select.Bind(static_cast<int64_t>(v1::UNIT_LEASED)).Bind(heard_before_ms);
    ASSIGN_OR_RETURN(expired, ReadUnits(select));
    if (expired.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(Statement update,
                     Prepare(absl::StrCat("UPDATE units SET state=?3, "
                                          "worker_id='', lease_deadline_ms=0 "
                                          "WHERE ",
                                          kSilent)));
    return update.Bind(static_cast<int64_t>(v1::UNIT_LEASED))
        .Bind(heard_before_ms)
        .Bind(static_cast<int64_t>(v1::UNIT_PENDING))
        .Run();
  }));
  return expired;
}

absl::StatusOr<std::vector<UnitRecord>> SqliteStateStore::ListWorkerLeases(
    const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare(absl::StrCat("SELECT ", kUnitColumns,
                                        " FROM units WHERE worker_id=? AND "
                                        "state=? ORDER BY unit_id")));
  statement.Bind(worker_id).Bind(static_cast<int64_t>(v1::UNIT_LEASED));
  return ReadUnits(statement);
}

absl::StatusOr<std::vector<UnitRecord>> SqliteStateStore::ReadUnits(
    Statement& statement) {
  std::vector<UnitRecord> units;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    units.push_back(ReadUnit(statement));
  }
  return units;
}

absl::Status SqliteStateStore::AddUnits(const std::vector<UnitRecord>& units) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() { return InsertUnits(units); });
}

absl::StatusOr<int> SqliteStateStore::SkipPendingReplicas(
    const std::string& job_id, uint64_t round, uint32_t shard_index,
    const std::string& except_unit_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare("UPDATE units SET state=? WHERE job_id=? AND "
                           "round=? AND kind=0 AND shard_index=? AND "
                           "state=? AND unit_id<>?"));
  int skipped = 0;
  RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(statement.Bind(static_cast<int64_t>(v1::UNIT_SKIPPED))
                        .Bind(job_id)
                        .Bind(static_cast<int64_t>(round))
                        .Bind(static_cast<int64_t>(shard_index))
                        .Bind(static_cast<int64_t>(v1::UNIT_PENDING))
                        .Bind(except_unit_id)
                        .Run());
    skipped = sqlite3_changes(db_.get());
    return absl::OkStatus();
  }));
  return skipped;
}

absl::Status SqliteStateStore::InsertUnits(
    const std::vector<UnitRecord>& units) {
  for (const UnitRecord& unit : units) {
    ASSIGN_OR_RETURN(Statement insert,
                     Prepare(absl::StrCat("INSERT INTO units (", kUnitColumns,
                                          ") VALUES (?,?,?,?,?,?,?,?,?,?)")));
    RETURN_IF_ERROR(insert.Bind(unit.unit_id)
                        .Bind(unit.job_id)
                        .Bind(static_cast<int64_t>(unit.round))
                        .Bind(static_cast<int64_t>(unit.shard_index))
                        .Bind(static_cast<int64_t>(unit.replica))
                        .Bind(static_cast<int64_t>(unit.state))
                        .Bind(unit.worker_id)
                        .Bind(unit.lease_deadline_ms)
                        .Bind(static_cast<int64_t>(unit.kind))
                        .Bind(static_cast<int64_t>(unit.attempt))
                        .Run());
  }
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace openforce::coordinator
