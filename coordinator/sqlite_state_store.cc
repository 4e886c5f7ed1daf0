// SQLite StateStore; see sqlite_state_store.h. Messages that only the
// coordinator reads back (job specs, hardware profiles, blob references,
// signed headers) are stored as serialized protobuf blobs next to the columns
// that queries filter on.
#include "coordinator/sqlite_state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "coordinator/internal/group_commit.h"
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

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* statement) const {
    sqlite3_finalize(statement);
  }
};
struct StatementResetter {
  void operator()(sqlite3_stmt* statement) const {
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
  }
};

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS workers (
  worker_id TEXT PRIMARY KEY,
  public_key BLOB NOT NULL,
  display_name TEXT NOT NULL,
  profile BLOB NOT NULL,
  registered_ms INTEGER NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  availability INTEGER NOT NULL,
  current_unit_id TEXT NOT NULL,
  units_accepted INTEGER NOT NULL DEFAULT 0,
  units_rejected INTEGER NOT NULL DEFAULT 0,
  credit_flop REAL NOT NULL DEFAULT 0,
  validated_streak INTEGER NOT NULL DEFAULT 0,
  units_invalid INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL UNIQUE,
  spec BLOB NOT NULL,
  state INTEGER NOT NULL,
  current_round INTEGER NOT NULL,
  latest_version INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  message TEXT NOT NULL,
  initial_adapter BLOB NOT NULL,
  adapter_config BLOB NOT NULL,
  estimated_memory_bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
  job_id TEXT NOT NULL,
  shard_index INTEGER NOT NULL,
  blob BLOB NOT NULL,
  records INTEGER NOT NULL,
  PRIMARY KEY (job_id, shard_index));
CREATE TABLE IF NOT EXISTS rounds (
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  parent_version INTEGER NOT NULL,
  opened_ms INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL,
  adapter_version INTEGER NOT NULL,
  candidate_sha256 TEXT NOT NULL DEFAULT '',
  candidate_attempt INTEGER NOT NULL DEFAULT 0,
  candidate_rule TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, round));
CREATE TABLE IF NOT EXISTS units (
  unit_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  shard_index INTEGER NOT NULL,
  replica INTEGER NOT NULL,
  state INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  lease_deadline_ms INTEGER NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0,
  attempt INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS units_by_round ON units (job_id, round, state);
CREATE INDEX IF NOT EXISTS units_by_worker ON units (worker_id, state);
CREATE TABLE IF NOT EXISTS results (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  unit_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  shard_index INTEGER NOT NULL,
  accepted INTEGER NOT NULL,
  reject_reason INTEGER NOT NULL,
  message TEXT NOT NULL,
  header BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  l2_norm REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS results_by_round ON results (job_id, round);
CREATE UNIQUE INDEX IF NOT EXISTS one_accepted_result_per_unit
  ON results (unit_id) WHERE accepted = 1;
CREATE TABLE IF NOT EXISTS adapters (
  job_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  model_sha256 TEXT NOT NULL,
  config_sha256 TEXT NOT NULL,
  adapter BLOB NOT NULL,
  PRIMARY KEY (job_id, version));
CREATE INDEX IF NOT EXISTS adapters_by_model ON adapters (model_sha256);
CREATE INDEX IF NOT EXISTS adapters_by_config ON adapters (config_sha256);
CREATE TABLE IF NOT EXISTS validation_reports (
  unit_id TEXT PRIMARY KEY,
  worker_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  slice INTEGER NOT NULL,
  accepted INTEGER NOT NULL,
  reject_reason INTEGER NOT NULL,
  message TEXT NOT NULL,
  report BLOB NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS validation_reports_by_round
  ON validation_reports (job_id, round);
)sql";

// Indexes that keep leasing and its checks O(log n) in the units of a
// round, and per-round unit counts by kind and state that triggers keep
// current, so that watching a round never rescans its units.
constexpr char kIndexesAndCounters[] = R"sql(
CREATE INDEX IF NOT EXISTS units_leasable
  ON units (job_id, round, state, kind DESC, replica, shard_index);
CREATE INDEX IF NOT EXISTS units_by_shard
  ON units (job_id, round, shard_index, worker_id);
CREATE INDEX IF NOT EXISTS results_by_shard
  ON results (job_id, round, shard_index, worker_id);
CREATE INDEX IF NOT EXISTS validation_reports_by_slice
  ON validation_reports (job_id, round, slice, worker_id);
CREATE INDEX IF NOT EXISTS units_by_lease_deadline
  ON units (state, lease_deadline_ms);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS round_unit_counts (
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  state INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (job_id, round, kind, state)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS units_counted_on_insert AFTER INSERT ON units
BEGIN
  INSERT INTO round_unit_counts (job_id, round, kind, state, count)
    VALUES (new.job_id, new.round, new.kind, new.state, 1)
    ON CONFLICT (job_id, round, kind, state) DO UPDATE SET count=count+1;
END;
CREATE TRIGGER IF NOT EXISTS units_counted_on_update
  AFTER UPDATE OF state ON units WHEN old.state<>new.state
BEGIN
  UPDATE round_unit_counts SET count=count-1 WHERE job_id=old.job_id
    AND round=old.round AND kind=old.kind AND state=old.state;
  INSERT INTO round_unit_counts (job_id, round, kind, state, count)
    VALUES (new.job_id, new.round, new.kind, new.state, 1)
    ON CONFLICT (job_id, round, kind, state) DO UPDATE SET count=count+1;
END;
)sql";

// A prepared statement from the connection's cache, bound and stepped by one
// caller under the store's lock; reset (bindings cleared) when it goes out of
// scope, so the next caller of the same SQL reuses it without re-preparing.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* statement)
      : db_(db), statement_(statement) {}
  Statement(Statement&&) = default;
  Statement& operator=(Statement&&) = default;

  Statement& Bind(int64_t value) {
    sqlite3_bind_int64(statement_.get(), ++index_, value);
    return *this;
  }
  Statement& Bind(const std::string& value) {
    sqlite3_bind_text(statement_.get(), ++index_, value.data(),
                      static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(const std::string& value) {
    sqlite3_bind_blob(statement_.get(), ++index_, value.data(),
                      static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindMessage(const google::protobuf::MessageLite& message) {
    return BindBlob(message.SerializeAsString());
  }

  // True when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    const int rc = sqlite3_step(statement_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    if (rc == SQLITE_CONSTRAINT) {
      return absl::AlreadyExistsError(
          absl::StrCat("constraint: ", sqlite3_errmsg(db_)));
    }
    return absl::InternalError(absl::StrCat("sqlite: ", sqlite3_errmsg(db_)));
  }
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }

  double Double(int column) const {
    return sqlite3_column_double(statement_.get(), column);
  }
  Statement& BindDouble(double value) {
    sqlite3_bind_double(statement_.get(), ++index_, value);
    return *this;
  }
  int64_t Int(int column) const {
    return sqlite3_column_int64(statement_.get(), column);
  }
  std::string Text(int column) const {
    const void* data = sqlite3_column_blob(statement_.get(), column);
    const int size = sqlite3_column_bytes(statement_.get(), column);
    return data ? std::string(static_cast<const char*>(data), size)
                : std::string();
  }
  absl::Status Message(int column, google::protobuf::MessageLite* out) const {
    if (!out->ParseFromString(Text(column))) {
      return absl::DataLossError(
          absl::StrCat("stored ", out->GetTypeName(), " does not parse"));
    }
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StatementResetter> statement_;
  int index_ = 0;
};

using internal::state_rows::kJobColumns;
using internal::state_rows::kReportColumns;
using internal::state_rows::kResultColumns;
using internal::state_rows::kRoundColumns;
using internal::state_rows::kUnitColumns;
using internal::state_rows::kWorkerColumns;
using internal::state_rows::ReadJob;
using internal::state_rows::ReadReport;
using internal::state_rows::ReadResult;
using internal::state_rows::ReadRound;
using internal::state_rows::ReadUnit;
using internal::state_rows::ReadWorker;

class SqliteStateStore : public StateStore {
 public:
  explicit SqliteStateStore(std::unique_ptr<sqlite3, SqliteCloser> db)
      : db_(std::move(db)), group_commit_([this] { return SyncLog(); }) {}

  absl::Status Init(const std::string& path) {
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

  absl::Status Sync() override {
    return group_commit_.WaitDurable(group_commit_.LatestTicket());
  }

  uint64_t log_syncs() { return group_commit_.syncs(); }

  absl::StatusOr<std::unique_ptr<ClosingLock>> TryLockRoundClosing(
      const std::string& job_id) override {
    return TryLockFileByte(closing_lock_path_, job_id);
  }

  absl::Status UpsertWorker(const WorkerRecord& worker) override {
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

  absl::StatusOr<std::optional<WorkerRecord>> GetWorker(
      const std::string& worker_id) override {
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

  absl::StatusOr<std::vector<WorkerRecord>> ListWorkers() override {
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

  absl::Status RecordHeartbeats(
      const std::vector<HeartbeatRecord>& heartbeats) override {
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

  absl::Status CreateJob(const JobRecord& job,
                         const std::vector<ShardRecord>& shards,
                         const RoundRecord& first_round,
                         const std::vector<UnitRecord>& units) override {
    absl::MutexLock lock(&mu_);
    return Transaction([&]() -> absl::Status {
      ASSIGN_OR_RETURN(Statement insert_job,
                       Prepare(absl::StrCat("INSERT INTO jobs (", kJobColumns,
                                            ") VALUES (?,?,?,?,?,?,?,?,?,?)")));
      RETURN_IF_ERROR(
          insert_job.Bind(job.job_id)
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

  absl::StatusOr<std::optional<JobRecord>> GetJob(
      const std::string& job_id) override {
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

  absl::StatusOr<std::vector<JobRecord>> ListJobs() override {
    return ReadJobs(
        absl::StrCat("SELECT ", kJobColumns, " FROM jobs ORDER BY seq DESC"));
  }

  absl::StatusOr<std::vector<JobRecord>> ListRunningJobs() override {
    return ReadJobs(
        absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE state = ",
                     static_cast<int>(v1::JOB_RUNNING), " ORDER BY seq"));
  }

  absl::StatusOr<std::vector<JobRecord>> ReadJobs(const std::string& sql) {
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

  absl::Status SetJobState(const std::string& job_id, v1::JobState state,
                           const std::string& message) override {
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

  absl::StatusOr<std::vector<ShardRecord>> ListShards(
      const std::string& job_id) override {
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

  absl::StatusOr<std::vector<RoundRecord>> ListRounds(
      const std::string& job_id) override {
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

  absl::StatusOr<std::optional<UnitRecord>> GetUnit(
      const std::string& unit_id) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Statement statement,
                     Prepare(absl::StrCat("SELECT ", kUnitColumns,
                                          " FROM units WHERE unit_id=?")));
    statement.Bind(unit_id);
    ASSIGN_OR_RETURN(bool row, statement.Step());
    if (!row) return std::nullopt;
    return ReadUnit(statement);
  }

  absl::StatusOr<std::vector<UnitRecord>> ListUnits(const std::string& job_id,
                                                    uint64_t round) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(
        Statement statement,
        Prepare(absl::StrCat("SELECT ", kUnitColumns,
                             " FROM units WHERE job_id=? AND round=? "
                             "ORDER BY kind, attempt, shard_index, replica")));
    statement.Bind(job_id).Bind(static_cast<int64_t>(round));
    return ReadUnits(statement);
  }

  absl::StatusOr<std::optional<UnitRecord>> LeaseNextUnit(
      const std::string& job_id, uint64_t round, const std::string& worker_id,
      int64_t deadline_ms) override {
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

  absl::StatusOr<RoundProgress> GetRoundProgress(const std::string& job_id,
                                                 uint64_t round) override {
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

  absl::StatusOr<std::optional<ShardRecord>> GetShard(
      const std::string& job_id, uint32_t shard_index) override {
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

  absl::StatusOr<std::optional<RoundRecord>> GetRound(const std::string& job_id,
                                                      uint64_t round) override {
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

  absl::Status ReleaseUnit(const std::string& unit_id,
                           const std::string& worker_id) override {
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

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeases(
      int64_t now_ms) override {
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

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeasesOfSilentWorkers(
      int64_t heard_before_ms) override {
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

  absl::StatusOr<std::vector<UnitRecord>> ListWorkerLeases(
      const std::string& worker_id) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Statement statement,
                     Prepare(absl::StrCat("SELECT ", kUnitColumns,
                                          " FROM units WHERE worker_id=? AND "
                                          "state=? ORDER BY unit_id")));
    statement.Bind(worker_id).Bind(static_cast<int64_t>(v1::UNIT_LEASED));
    return ReadUnits(statement);
  }

  absl::Status RecordResult(const ResultRecord& result) override {
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

  absl::StatusOr<std::vector<ResultRecord>> ListResults(
      const std::string& job_id, uint64_t round) override {
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

  absl::StatusOr<std::optional<ResultRecord>> GetAcceptedResult(
      const std::string& unit_id) override {
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

  absl::Status CloseRound(const std::string& job_id, uint64_t round,
                          const RoundOutcome& outcome) override {
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
      RETURN_IF_ERROR(
          insert.Bind(job_id)
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
        ASSIGN_OR_RETURN(
            Statement worker,
            Prepare("UPDATE workers SET credit_flop=credit_flop+?, "
                    "validated_streak=validated_streak+? "
                    "WHERE worker_id=?"));
        RETURN_IF_ERROR(worker.BindDouble(credit.credit_flop)
                            .Bind(int64_t{credit.replica ==
                                          ResultVerdict::Replica::kAgreed})
                            .Bind(credit.worker_id)
                            .Run());
      }
      for (const ResultVerdict& excluded : outcome.excluded) {
        // The unit's accepted delta or validation report, whichever it has.
        for (const char* table : {"results", "validation_reports"}) {
          ASSIGN_OR_RETURN(Statement result,
                           Prepare(absl::StrCat(
                               "UPDATE ", table,
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
          .Bind(static_cast<int64_t>(outcome.next_round.has_value()
                                         ? outcome.next_round->round
                                         : round))
          .Bind(static_cast<int64_t>(outcome.next_round.has_value()
                                         ? v1::JOB_RUNNING
                                         : v1::JOB_SUCCEEDED))
          .Bind(job_id)
          .Run();
    });
  }

  absl::StatusOr<std::optional<AdapterRecord>> GetAdapter(
      const std::string& job_id, uint64_t version) override {
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

  absl::StatusOr<bool> IsPublishedAdapterBlob(
      const std::string& sha256) override {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(Statement statement,
                     Prepare("SELECT 1 FROM adapters WHERE model_sha256=?1 OR "
                             "config_sha256=?1 LIMIT 1"));
    statement.Bind(sha256);
    return statement.Step();
  }

 private:
  // The statement for `sql`, prepared once per connection and reused.
  absl::StatusOr<Statement> Prepare(const std::string& sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    char* error = nullptr;
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error ? error : sqlite3_errmsg(db_.get());
      sqlite3_free(error);
      return absl::InternalError(absl::StrCat("sqlite: ", message));
    }
    return absl::OkStatus();
  }

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
  absl::Status SyncLog() {
    if (::fdatasync(wal_fd_.get()) != 0) {
      return ErrnoToStatus(errno, "fdatasync of the state database's log");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<UnitRecord>> ReadUnits(Statement& statement)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<UnitRecord> units;
    while (true) {
      ASSIGN_OR_RETURN(bool row, statement.Step());
      if (!row) break;
      units.push_back(ReadUnit(statement));
    }
    return units;
  }

  absl::Status AddUnits(const std::vector<UnitRecord>& units) override {
    absl::MutexLock lock(&mu_);
    return Transaction([&]() { return InsertUnits(units); });
  }

  absl::StatusOr<int> SkipPendingReplicas(
      const std::string& job_id, uint64_t round, uint32_t shard_index,
      const std::string& except_unit_id) override {
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

  absl::Status InsertUnits(const std::vector<UnitRecord>& units)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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

  absl::Status BeginValidation(
      const RoundRecord& candidate,
      const std::vector<UnitRecord>& validation_units) override {
    absl::MutexLock lock(&mu_);
    return Transaction([&]() -> absl::Status {
      ASSIGN_OR_RETURN(
          Statement round,
          Prepare("UPDATE rounds SET candidate_sha256=?, candidate_attempt=?, "
                  "candidate_rule=?, deadline_ms=? WHERE job_id=? AND "
                  "round=? AND adapter_version=0"));
      RETURN_IF_ERROR(
          round.Bind(candidate.candidate_sha256)
              .Bind(static_cast<int64_t>(candidate.candidate_attempt))
              .Bind(candidate.candidate_rule)
              .Bind(candidate.deadline_ms)
              .Bind(candidate.job_id)
              .Bind(static_cast<int64_t>(candidate.round))
              .Run());
      if (sqlite3_changes(db_.get()) != 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("round ", candidate.round, " of job ",
                         candidate.job_id, " is not open"));
      }
      ASSIGN_OR_RETURN(Statement skip,
                       Prepare("UPDATE units SET state=?, worker_id='', "
                               "lease_deadline_ms=0 WHERE job_id=? AND "
                               "round=? AND kind=? AND attempt<>? AND "
                               "state IN (?, ?)"));
      RETURN_IF_ERROR(
          skip.Bind(static_cast<int64_t>(v1::UNIT_SKIPPED))
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

  absl::Status RecordValidationReport(
      const ValidationReportRecord& report) override {
    absl::MutexLock lock(&mu_);
    return Transaction([&]() -> absl::Status {
      ASSIGN_OR_RETURN(Statement insert,
                       Prepare(absl::StrCat(
                           "INSERT INTO validation_reports (", kReportColumns,
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

  absl::StatusOr<std::vector<ValidationReportRecord>> ListValidationReports(
      const std::string& job_id, uint64_t round) override {
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

  absl::Status InsertRoundAndUnits(const RoundRecord& round,
                                   const std::vector<UnitRecord>& units)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ASSIGN_OR_RETURN(
        Statement insert_round,
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

}  // namespace

absl::StatusOr<std::unique_ptr<StateStore>> OpenSqliteStateStore(
    const std::string& path) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
      nullptr);
  std::unique_ptr<sqlite3, SqliteCloser> db(raw);
  if (rc != SQLITE_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot open database ", path, ": ",
                     raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  sqlite3_busy_timeout(db.get(), 5000);
  auto store = std::make_unique<SqliteStateStore>(std::move(db));
  if (absl::Status init = store->Init(path); !init.ok()) {
    return absl::Status(init.code(), absl::StrCat(path, ": ", init.message()));
  }
  return store;
}

}  // namespace openforce::coordinator
