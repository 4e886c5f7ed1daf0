// The SQLite StateStore's class (sqlite_state_store.h opens it): one
// connection behind one lock, statements prepared once, transactions that
// are visible when they return and durable after the next Sync() (group
// commit over the write-ahead log). Its methods live in
// sqlite_state_store.cc (opening, workers, jobs, shards, rounds),
// sqlite_units.cc (units and leases) and sqlite_results.cc (results,
// validation reports, round closing, adapters).
#ifndef OPENFORCE_COORDINATOR_INTERNAL_SQLITE_STORE_H_
#define OPENFORCE_COORDINATOR_INTERNAL_SQLITE_STORE_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "coordinator/internal/group_commit.h"
#include "coordinator/internal/sqlite_statement.h"
#include "coordinator/state_store.h"

namespace openforce::coordinator::internal {

class SqliteStateStore : public StateStore {
 public:
  explicit SqliteStateStore(std::unique_ptr<sqlite3, SqliteCloser> db)
      : db_(std::move(db)), group_commit_([this] { return SyncLog(); }) {}

  absl::Status Init(const std::string& path);

  absl::Status Sync() override;

  uint64_t log_syncs() { return group_commit_.syncs(); }

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

  absl::StatusOr<std::vector<RoundRecord>> ListRounds(
      const std::string& job_id) override;

  absl::StatusOr<std::optional<UnitRecord>> GetUnit(
      const std::string& unit_id) override;

  absl::StatusOr<std::vector<UnitRecord>> ListUnits(const std::string& job_id,
                                                    uint64_t round) override;

  absl::StatusOr<std::optional<UnitRecord>> LeaseNextUnit(
      const std::string& job_id, uint64_t round, const std::string& worker_id,
      int64_t deadline_ms) override;

  absl::StatusOr<RoundProgress> GetRoundProgress(const std::string& job_id,
                                                 uint64_t round) override;

  absl::StatusOr<std::optional<ShardRecord>> GetShard(
      const std::string& job_id, uint32_t shard_index) override;

  absl::StatusOr<std::optional<RoundRecord>> GetRound(const std::string& job_id,
                                                      uint64_t round) override;

  absl::Status ReleaseUnit(const std::string& unit_id,
                           const std::string& worker_id) override;

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeases(int64_t now_ms) override;

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeasesOfSilentWorkers(
      int64_t heard_before_ms) override;

  absl::StatusOr<std::vector<UnitRecord>> ListWorkerLeases(
      const std::string& worker_id) override;

  absl::Status RecordResult(const ResultRecord& result) override;

  absl::StatusOr<std::vector<ResultRecord>> ListResults(
      const std::string& job_id, uint64_t round) override;

  absl::StatusOr<std::optional<ResultRecord>> GetAcceptedResult(
      const std::string& unit_id) override;

  absl::Status CloseRound(const std::string& job_id, uint64_t round,
                          const RoundOutcome& outcome) override;

  absl::StatusOr<std::optional<AdapterRecord>> GetAdapter(
      const std::string& job_id, uint64_t version) override;

  absl::StatusOr<bool> IsPublishedAdapterBlob(
      const std::string& sha256) override;

 private:
  // The jobs `sql` selects (kJobColumns), in its order.
  absl::StatusOr<std::vector<JobRecord>> ReadJobs(const std::string& sql);

  // The statement for `sql`, prepared once per connection and reused.
  absl::StatusOr<Statement> Prepare(const std::string& sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Runs `body` as one transaction, committed (visible, and durable after
  // the next Sync()) when it succeeds and rolled back when it fails.
  template <typename Body>
  absl::Status Transaction(Body body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status status = body();
    if (!status.ok()) {
      (void)Exec("ROLLBACK");
      return status;
    }
    RETURN_IF_ERROR(Exec("COMMIT"));
    group_commit_.NoteCommit();
    return absl::OkStatus();
  }

  // fdatasync of the write-ahead log: every commit written before it is on
  // disk after it. Runs without mu_.
  absl::Status SyncLog();

  absl::StatusOr<std::vector<UnitRecord>> ReadUnits(Statement& statement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status AddUnits(const std::vector<UnitRecord>& units) override;

  absl::StatusOr<int> SkipPendingReplicas(
      const std::string& job_id, uint64_t round, uint32_t shard_index,
      const std::string& except_unit_id) override;

  absl::Status InsertUnits(const std::vector<UnitRecord>& units)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status BeginValidation(
      const RoundRecord& candidate,
      const std::vector<UnitRecord>& validation_units) override;

  absl::Status RecordValidationReport(
      const ValidationReportRecord& report) override;

  absl::StatusOr<std::vector<ValidationReportRecord>> ListValidationReports(
      const std::string& job_id, uint64_t round) override;

  absl::Status InsertRoundAndUnits(const RoundRecord& round,
                                   const std::vector<UnitRecord>& units)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<sqlite3, SqliteCloser> db_ ABSL_GUARDED_BY(mu_);
  // Finalized before the connection closes (declared after it).
  absl::flat_hash_map<std::string,
                      std::unique_ptr<sqlite3_stmt, StatementFinalizer>>
      statements_ ABSL_GUARDED_BY(mu_);
  // The write-ahead log, opened a second time so that a group commit can
  // fdatasync it without the connection (and its lock).
  ScopedFd wal_fd_;
  std::string closing_lock_path_;
  internal::GroupCommit group_commit_;
};

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_SQLITE_STORE_H_
