// The PostgreSQL StateStore's class (postgres_state_store.h opens it): a
// pool of sessions, asynchronous commits made durable by one synchronous
// commit per group, and the helpers its methods share. Its methods live in
// postgres_state_store.cc (opening, closing locks, workers, jobs, shards,
// rounds), postgres_units.cc (units and leases) and postgres_results.cc
// (results, validation reports, round closing, adapters).
#ifndef OPENFORCE_COORDINATOR_INTERNAL_POSTGRES_STORE_H_
#define OPENFORCE_COORDINATOR_INTERNAL_POSTGRES_STORE_H_

#include <libpq-fe.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "coordinator/internal/group_commit.h"
#include "coordinator/internal/pg_session.h"
#include "coordinator/internal/state_rows.h"
#include "coordinator/state_store.h"

namespace openforce::coordinator::internal {

// Commits on pool sessions do not wait for the WAL flush; the sync session's
// one small commit per group does, and flushes everything before it.
inline constexpr char kAsyncCommit[] =
    "SET synchronous_commit = off; SET client_min_messages = warning";
inline constexpr char kSyncCommit[] =
    "SET synchronous_commit = on; SET client_min_messages = warning";
// Connections per replica: enough for its call threads' reads to overlap on
// the server, few enough that many replicas fit in max_connections.
inline constexpr size_t kSessionsPerReplica = 8;

// Every row of `result`, read by `read` (PgRow -> StatusOr<Record>).
template <typename Record, typename Reader>
absl::StatusOr<std::vector<Record>> ReadAll(const PGresult* result,
                                            Reader read) {
  std::vector<Record> records;
  records.reserve(PQntuples(result));
  for (int row = 0; row < PQntuples(result); ++row) {
    ASSIGN_OR_RETURN(Record record, read(PgRow(result, row)));
    records.push_back(std::move(record));
  }
  return records;
}

inline std::vector<UnitRecord> ReadUnits(const PGresult* result) {
  std::vector<UnitRecord> units;
  for (int row = 0; row < PQntuples(result); ++row)
    units.push_back(state_rows::ReadUnit(PgRow(result, row)));
  return units;
}

class PostgresStateStore : public StateStore {
 public:
  PostgresStateStore(const std::string& conninfo, size_t sessions,
                     PgConnection sync_connection)
      : group_commit_([this] { return SyncWal(); }),
        pool_(conninfo, kAsyncCommit, sessions,
              [this] { group_commit_.NoteCommit(); }),
        sync_session_(std::make_unique<PgSession>(std::move(sync_connection),
                                                  kSyncCommit, nullptr)) {}

  absl::Status Init();

  absl::Status Sync() override;

  absl::StatusOr<std::unique_ptr<ClosingLock>> TryLockRoundClosing(
      const std::string& job_id) override;

  absl::Status UpsertWorker(const WorkerRecord& worker) override;

  absl::StatusOr<std::optional<WorkerRecord>> GetWorker(
      const std::string& worker_id) override;

  absl::StatusOr<std::vector<WorkerRecord>> ListWorkers() override;

  absl::Status RecordHeartbeats(
      const std::vector<HeartbeatRecord>& heartbeats) override;

  absl::Status CreateJob(const JobRecord& job,
                         const std::vector<ShardRecord>& shards,
                         const RoundRecord& first_round,
                         const std::vector<UnitRecord>& units) override;

  absl::StatusOr<std::optional<JobRecord>> GetJob(
      const std::string& job_id) override;

  absl::StatusOr<std::vector<JobRecord>> ListJobs() override;

  absl::StatusOr<std::vector<JobRecord>> ListRunningJobs() override;

  absl::Status SetJobState(const std::string& job_id, v1::JobState state,
                           const std::string& message) override;

  absl::StatusOr<std::vector<ShardRecord>> ListShards(
      const std::string& job_id) override;

  absl::StatusOr<std::optional<ShardRecord>> GetShard(
      const std::string& job_id, uint32_t shard_index) override;

  absl::StatusOr<std::vector<RoundRecord>> ListRounds(
      const std::string& job_id) override;

  absl::StatusOr<std::optional<RoundRecord>> GetRound(const std::string& job_id,
                                                      uint64_t round) override;

  absl::StatusOr<RoundProgress> GetRoundProgress(const std::string& job_id,
                                                 uint64_t round) override;

  absl::StatusOr<std::optional<UnitRecord>> GetUnit(
      const std::string& unit_id) override;

  absl::StatusOr<std::vector<UnitRecord>> ListUnits(const std::string& job_id,
                                                    uint64_t round) override;

  absl::StatusOr<std::optional<UnitRecord>> LeaseNextUnit(
      const std::string& job_id, uint64_t round, const std::string& worker_id,
      int64_t deadline_ms) override;

  absl::Status ReleaseUnit(const std::string& unit_id,
                           const std::string& worker_id) override;

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeases(int64_t now_ms) override;

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeasesOfSilentWorkers(
      int64_t heard_before_ms) override;

  absl::StatusOr<std::vector<UnitRecord>> ListWorkerLeases(
      const std::string& worker_id) override;

  absl::Status AddUnits(const std::vector<UnitRecord>& units) override;

  absl::StatusOr<int> SkipPendingReplicas(
      const std::string& job_id, uint64_t round, uint32_t shard_index,
      const std::string& except_unit_id) override;

  absl::Status BeginValidation(
      const RoundRecord& candidate,
      const std::vector<UnitRecord>& validation_units) override;

  absl::Status RecordResult(const ResultRecord& result) override;

  absl::StatusOr<std::vector<ResultRecord>> ListResults(
      const std::string& job_id, uint64_t round) override;

  absl::StatusOr<std::optional<ResultRecord>> GetAcceptedResult(
      const std::string& unit_id) override;

  absl::Status RecordValidationReport(
      const ValidationReportRecord& report) override;

  absl::StatusOr<std::vector<ValidationReportRecord>> ListValidationReports(
      const std::string& job_id, uint64_t round) override;

  absl::Status CloseRound(const std::string& job_id, uint64_t round,
                          const RoundOutcome& outcome) override;

  absl::StatusOr<std::optional<AdapterRecord>> GetAdapter(
      const std::string& job_id, uint64_t version) override;

  absl::StatusOr<bool> IsPublishedAdapterBlob(
      const std::string& sha256) override;

 private:
  static absl::StatusOr<ShardRecord> ReadShard(const PgRow& row);

  // "a, b" -> "o.a, o.b".
  static std::string Prefixed(absl::string_view prefix,
                              absl::string_view columns);

  // Inserts `rows` into `table` ("name (columns)") in statements of up to
  // kRowsPerInsert rows each, `columns` values per row added by `add`: a
  // 50,000-shard job is a hundred round trips, not a hundred thousand.
  template <typename Row, typename AddRow>
  static absl::Status InsertRows(PgSession& session, absl::string_view table,
                                 int columns, const std::vector<Row>& rows,
                                 AddRow add) {
    constexpr size_t kRowsPerInsert = 500;
    for (size_t begin = 0; begin < rows.size(); begin += kRowsPerInsert) {
      const size_t end = std::min(rows.size(), begin + kRowsPerInsert);
      std::string sql = absl::StrCat("INSERT INTO ", table, " VALUES ");
      Params params;
      int next = 1;
      for (size_t row = begin; row < end; ++row) {
        absl::StrAppend(&sql, row == begin ? "(" : ",(");
        for (int column = 0; column < columns; ++column)
          absl::StrAppend(&sql, column == 0 ? "$" : ",$", next++);
        absl::StrAppend(&sql, ")");
        add(rows[row], params);
      }
      RETURN_IF_ERROR(session.Exec(sql, params).status());
    }
    return absl::OkStatus();
  }

  static absl::Status InsertUnits(PgSession& session,
                                  const std::vector<UnitRecord>& units);

  static absl::Status InsertRoundAndUnits(PgSession& session,
                                          const RoundRecord& round,
                                          const std::vector<UnitRecord>& units);

  // One synchronous commit on its own session: the server flushes its WAL
  // up to it, which covers every commit made before it began. Runs without
  // holding a pool session, so calls go on while it waits for the disk.
  absl::Status SyncWal();

  internal::GroupCommit group_commit_;
  PgSessionPool pool_;
  absl::Mutex sync_mu_;
  std::unique_ptr<PgSession> sync_session_ ABSL_GUARDED_BY(sync_mu_);
};

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_POSTGRES_STORE_H_
