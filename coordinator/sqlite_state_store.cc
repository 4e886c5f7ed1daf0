// SQLite StateStore (internal/sqlite_store.h): opening and the schema,
// Sync, closing locks, workers, jobs, shards and rounds. Messages that only
// the coordinator reads back (job specs, hardware profiles, blob references,
// signed headers) are stored as serialized protobuf blobs next to the columns
// that queries filter on.
#include "coordinator/sqlite_state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "coordinator/internal/sqlite_schema.h"
#include "coordinator/internal/sqlite_store.h"
#include "coordinator/internal/state_rows.h"

namespace openforce::coordinator {
namespace {

// A job's closing lock: an open-file-description lock on one byte of the
// database's lock file, at an offset from the job id's hash. It is released
// when the descriptor closes, so with the process too; two descriptors
// conflict even within one process.
class SqliteClosingLock : public StateStore::ClosingLock {
 public:
  explicit SqliteClosingLock(ScopedFd fd) : fd_(std::move(fd)) {}

 private:
  ScopedFd fd_;
};

absl::StatusOr<std::unique_ptr<StateStore::ClosingLock>> TryLockFileByte(
    const std::string& lock_path, const std::string& job_id) {
  ScopedFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid())
    return ErrnoToStatus(errno, absl::StrCat("open ", lock_path));
  uint32_t offset = 0;
  if (!absl::SimpleHexAtoi(Sha256Hex(job_id).substr(0, 7), &offset)) {
    return absl::InternalError("hex digest did not parse");
  }
  struct flock range = {};
  range.l_type = F_WRLCK;
  range.l_whence = SEEK_SET;
  range.l_start = offset;
  range.l_len = 1;
  if (::fcntl(fd.get(), F_OFD_SETLK, &range) != 0) {
    if (errno == EAGAIN || errno == EACCES) return nullptr;
    return ErrnoToStatus(errno, absl::StrCat("lock ", lock_path));
  }
  return std::make_unique<SqliteClosingLock>(std::move(fd));
}

}  // namespace

namespace internal {

using internal::state_rows::kJobColumns;
using internal::state_rows::kRoundColumns;
using internal::state_rows::kUnitColumns;
using internal::state_rows::kWorkerColumns;
using internal::state_rows::ReadJob;
using internal::state_rows::ReadRound;
using internal::state_rows::ReadUnit;
using internal::state_rows::ReadWorker;

absl::Status SqliteStateStore::Init(const std::string& path) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
  // Commits are written to the log without an fsync of their own; Sync()
  // makes them durable in groups (group_commit.h), and nothing is
  // acknowledged before it returned.
  RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL"));
  RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
  RETURN_IF_ERROR(Exec(kSchema));
  // Databases from before credit existed gain the column; on newer ones
  // the column is there and SQLite says so, which is fine.
  for (const char* column :
       {"ALTER TABLE workers ADD COLUMN credit_flop REAL NOT NULL DEFAULT 0",
        "ALTER TABLE results ADD COLUMN l2_norm REAL NOT NULL DEFAULT 0",
        "ALTER TABLE workers ADD COLUMN validated_streak INTEGER NOT NULL "
        "DEFAULT 0",
        "ALTER TABLE workers ADD COLUMN units_invalid INTEGER NOT NULL "
        "DEFAULT 0",
        "ALTER TABLE units ADD COLUMN kind INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE units ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rounds ADD COLUMN candidate_sha256 TEXT NOT NULL "
        "DEFAULT ''",
        "ALTER TABLE rounds ADD COLUMN candidate_attempt INTEGER NOT NULL "
        "DEFAULT 0",
        "ALTER TABLE rounds ADD COLUMN candidate_rule TEXT NOT NULL "
        "DEFAULT ''"}) {
    absl::Status added = Exec(column);
    if (!added.ok() &&
        !absl::StrContains(added.message(), "duplicate column name")) {
      return added;
    }
  }
  // Indexes and counters that need the columns above.
  RETURN_IF_ERROR(Exec(kIndexesAndCounters));
  // The counters are recounted once per start, so a database from before
  // they existed (or one edited by hand) starts right; after that the
  // triggers keep them.
  RETURN_IF_ERROR(Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(Exec("DELETE FROM round_unit_counts"));
    return Exec(
        "INSERT INTO round_unit_counts (job_id, round, kind, state, count) "
        "SELECT job_id, round, kind, state, COUNT(*) FROM units "
        "GROUP BY job_id, round, kind, state");
  }));
  closing_lock_path_ = path + "-closing.lock";
  wal_fd_ = ScopedFd(::open((path + "-wal").c_str(), O_RDWR | O_CLOEXEC));
  if (!wal_fd_.valid()) {
    return ErrnoToStatus(errno, absl::StrCat("open ", path, "-wal"));
  }
  // The log may have just been created: its name must be durable too.
  const std::string dir = std::filesystem::path(path).parent_path().string();
  RETURN_IF_ERROR(SyncDirectory(dir.empty() ? "." : dir));
  return absl::OkStatus();
}

absl::Status SqliteStateStore::Sync() {
  return group_commit_.WaitDurable(group_commit_.LatestTicket());
}

absl::StatusOr<std::unique_ptr<StateStore::ClosingLock>>
SqliteStateStore::TryLockRoundClosing(const std::string& job_id) {
  return TryLockFileByte(closing_lock_path_, job_id);
}

absl::Status SqliteStateStore::UpsertWorker(const WorkerRecord& worker) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat(
          "INSERT INTO workers (", kWorkerColumns,
          ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(worker_id) DO "
          "UPDATE "
          "SET display_name=excluded.display_name, "
          "profile=excluded.profile, "
          "last_heartbeat_ms=excluded.last_heartbeat_ms, "
          "availability=excluded.availability")));
  return Transaction([&] {
    return statement.Bind(worker.worker_id)
        .BindBlob(worker.public_key)
        .Bind(worker.display_name)
        .BindMessage(worker.profile)
        .Bind(worker.registered_ms)
        .Bind(worker.last_heartbeat_ms)
        .Bind(static_cast<int64_t>(worker.availability))
        .Bind(worker.current_unit_id)
        .Bind(static_cast<int64_t>(worker.units_accepted))
        .Bind(static_cast<int64_t>(worker.units_rejected))
        .BindDouble(worker.credit_flop)
        .Bind(static_cast<int64_t>(worker.validated_streak))
        .Bind(static_cast<int64_t>(worker.units_invalid))
        .Run();
  });
}

absl::StatusOr<std::optional<WorkerRecord>> SqliteStateStore::GetWorker(
    const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare(absl::StrCat("SELECT ", kWorkerColumns,
                                        " FROM workers WHERE worker_id=?")));
  statement.Bind(worker_id);
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  ASSIGN_OR_RETURN(WorkerRecord worker, ReadWorker(statement));
  return worker;
}

absl::StatusOr<std::vector<WorkerRecord>> SqliteStateStore::ListWorkers() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare(absl::StrCat("SELECT ", kWorkerColumns,
                                        " FROM workers ORDER BY worker_id")));
  std::vector<WorkerRecord> workers;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(WorkerRecord worker, ReadWorker(statement));
    workers.push_back(std::move(worker));
  }
  return workers;
}

absl::Status SqliteStateStore::RecordHeartbeats(
    const std::vector<HeartbeatRecord>& heartbeats) {
  if (heartbeats.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    for (const HeartbeatRecord& heartbeat : heartbeats) {
      ASSIGN_OR_RETURN(Statement statement,
                       Prepare("UPDATE workers SET last_heartbeat_ms=MAX("
                               "last_heartbeat_ms, ?), availability=?, "
                               "current_unit_id=? WHERE worker_id=?"));
      RETURN_IF_ERROR(statement.Bind(heartbeat.heard_ms)
                          .Bind(static_cast<int64_t>(heartbeat.availability))
                          .Bind(heartbeat.current_unit_id)
                          .Bind(heartbeat.worker_id)
                          .Run());
    }
    return absl::OkStatus();
  });
}

absl::Status SqliteStateStore::CreateJob(const JobRecord& job,
                                         const std::vector<ShardRecord>& shards,
                                         const RoundRecord& first_round,
                                         const std::vector<UnitRecord>& units) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Statement insert_job,
                     Prepare(absl::StrCat("INSERT INTO jobs (", kJobColumns,
                                          ") VALUES (?,?,?,?,?,?,?,?,?,?)")));
    RETURN_IF_ERROR(insert_job.Bind(job.job_id)
                        .BindMessage(job.spec)
                        .Bind(static_cast<int64_t>(job.state))
                        .Bind(static_cast<int64_t>(job.current_round))
                        .Bind(static_cast<int64_t>(job.latest_version))
                        .Bind(job.created_ms)
                        .Bind(job.message)
                        .BindMessage(job.initial_adapter)
                        .BindMessage(job.adapter_config)
                        .Bind(static_cast<int64_t>(job.estimated_memory_bytes))
                        .Run());
    for (const ShardRecord& shard : shards) {
      ASSIGN_OR_RETURN(Statement insert,
                       Prepare("INSERT INTO shards (job_id, shard_index, "
                               "blob, records) VALUES (?,?,?,?)"));
      RETURN_IF_ERROR(insert.Bind(job.job_id)
                          .Bind(static_cast<int64_t>(shard.shard_index))
                          .BindMessage(shard.blob)
                          .Bind(static_cast<int64_t>(shard.records))
                          .Run());
    }
    return InsertRoundAndUnits(first_round, units);
  });
}

absl::StatusOr<std::optional<JobRecord>> SqliteStateStore::GetJob(
    const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare(absl::StrCat("SELECT ", kJobColumns,
                                        " FROM jobs WHERE job_id=?")));
  statement.Bind(job_id);
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  ASSIGN_OR_RETURN(JobRecord job, ReadJob(statement));
  return job;
}

absl::StatusOr<std::vector<JobRecord>> SqliteStateStore::ListJobs() {
  return ReadJobs(
      absl::StrCat("SELECT ", kJobColumns, " FROM jobs ORDER BY seq DESC"));
}

absl::StatusOr<std::vector<JobRecord>> SqliteStateStore::ListRunningJobs() {
  return ReadJobs(
      absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE state = ",
                   static_cast<int>(v1::JOB_RUNNING), " ORDER BY seq"));
}

absl::StatusOr<std::vector<JobRecord>> SqliteStateStore::ReadJobs(
    const std::string& sql) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement, Prepare(sql));
  std::vector<JobRecord> jobs;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(JobRecord job, ReadJob(statement));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

absl::Status SqliteStateStore::SetJobState(const std::string& job_id,
                                           v1::JobState state,
                                           const std::string& message) {
  absl::MutexLock lock(&mu_);
  return Transaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(
        Statement update,
        Prepare("UPDATE jobs SET state=?, message=? WHERE job_id=?"));
    RETURN_IF_ERROR(update.Bind(static_cast<int64_t>(state))
                        .Bind(message)
                        .Bind(job_id)
                        .Run());
    if (state == v1::JOB_RUNNING || state == v1::JOB_PENDING)
      return absl::OkStatus();
    ASSIGN_OR_RETURN(Statement end_leases,
                     Prepare("UPDATE units SET state=?, worker_id='', "
                             "lease_deadline_ms=0 WHERE job_id=? AND "
                             "state=?"));
    return end_leases.Bind(static_cast<int64_t>(v1::UNIT_PENDING))
        .Bind(job_id)
        .Bind(static_cast<int64_t>(v1::UNIT_LEASED))
        .Run();
  });
}

absl::StatusOr<std::vector<ShardRecord>> SqliteStateStore::ListShards(
    const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare("SELECT shard_index, blob, records FROM shards "
                           "WHERE job_id=? ORDER BY shard_index"));
  statement.Bind(job_id);
  std::vector<ShardRecord> shards;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    ShardRecord shard;
    shard.shard_index = static_cast<uint32_t>(statement.Int(0));
    RETURN_IF_ERROR(statement.Message(1, &shard.blob));
    shard.records = static_cast<uint64_t>(statement.Int(2));
    shards.push_back(std::move(shard));
  }
  return shards;
}

absl::StatusOr<std::vector<RoundRecord>> SqliteStateStore::ListRounds(
    const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat("SELECT ", kRoundColumns,
                           " FROM rounds WHERE job_id=? ORDER BY round")));
  statement.Bind(job_id);
  std::vector<RoundRecord> rounds;
  while (true) {
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) break;
    rounds.push_back(ReadRound(statement));
  }
  return rounds;
}

absl::StatusOr<std::optional<ShardRecord>> SqliteStateStore::GetShard(
    const std::string& job_id, uint32_t shard_index) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Statement statement,
                   Prepare("SELECT shard_index, blob, records FROM shards "
                           "WHERE job_id=? AND shard_index=?"));
  statement.Bind(job_id).Bind(static_cast<int64_t>(shard_index));
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  ShardRecord shard;
  shard.shard_index = static_cast<uint32_t>(statement.Int(0));
  RETURN_IF_ERROR(statement.Message(1, &shard.blob));
  shard.records = static_cast<uint64_t>(statement.Int(2));
  return shard;
}

absl::StatusOr<std::optional<RoundRecord>> SqliteStateStore::GetRound(
    const std::string& job_id, uint64_t round) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      Statement statement,
      Prepare(absl::StrCat("SELECT ", kRoundColumns,
                           " FROM rounds WHERE job_id=? AND round=?")));
  statement.Bind(job_id).Bind(static_cast<int64_t>(round));
  ASSIGN_OR_RETURN(bool row, statement.Step());
  if (!row) return std::nullopt;
  return ReadRound(statement);
}

// The statement for `sql`, prepared once per connection and reused.
absl::StatusOr<Statement> SqliteStateStore::Prepare(const std::string& sql) {
  auto cached = statements_.find(sql);
  if (cached == statements_.end()) {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v3(db_.get(), sql.c_str(), -1,
                           SQLITE_PREPARE_PERSISTENT, &statement,
                           nullptr) != SQLITE_OK) {
      return absl::InternalError(absl::StrCat(
          "sqlite prepare: ", sqlite3_errmsg(db_.get()), " in: ", sql));
    }
    cached = statements_.emplace(sql, statement).first;
  }
  return Statement(db_.get(), cached->second.get());
}

absl::Status SqliteStateStore::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error ? error : sqlite3_errmsg(db_.get());
    sqlite3_free(error);
    return absl::InternalError(absl::StrCat("sqlite: ", message));
  }
  return absl::OkStatus();
}

// fdatasync of the write-ahead log: every commit written before it is on
// disk after it. Runs without mu_.
absl::Status SqliteStateStore::SyncLog() {
  if (::fdatasync(wal_fd_.get()) != 0) {
    return ErrnoToStatus(errno, "fdatasync of the state database's log");
  }
  return absl::OkStatus();
}

absl::Status SqliteStateStore::InsertRoundAndUnits(
    const RoundRecord& round, const std::vector<UnitRecord>& units) {
  ASSIGN_OR_RETURN(Statement insert_round,
                   Prepare("INSERT INTO rounds (job_id, round, parent_version, "
                           "opened_ms, deadline_ms, adapter_version) VALUES "
                           "(?,?,?,?,?,0)"));
  RETURN_IF_ERROR(insert_round.Bind(round.job_id)
                      .Bind(static_cast<int64_t>(round.round))
                      .Bind(static_cast<int64_t>(round.parent_version))
                      .Bind(round.opened_ms)
                      .Bind(round.deadline_ms)
                      .Run());
  return InsertUnits(units);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<StateStore>> OpenSqliteStateStore(
    const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
      nullptr);
  std::unique_ptr<sqlite3, internal::SqliteCloser> db(raw);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot open database ", path, ": ",
                     raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  auto store = std::make_unique<internal::SqliteStateStore>(std::move(db));
  if (absl::Status init = store->Init(path); !init.ok()) {
    return absl::Status(init.code(), absl::StrCat(path, ": ", init.message()));
  }
  return store;
}

}  // namespace openforce::coordinator
