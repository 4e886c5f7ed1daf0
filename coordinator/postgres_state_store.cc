// PostgreSQL StateStore; see postgres_state_store.h. The schema mirrors the
// SQLite one (internal/state_rows.h has the shared column lists and
// readers): serialized protobuf messages in BYTEA next to the columns that
// queries filter on, the same indexes, and per-round unit counters kept by
// a trigger.
#include "coordinator/postgres_state_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "coordinator/internal/group_commit.h"
#include "coordinator/internal/pg_session.h"
#include "coordinator/internal/postgres_schema.h"
#include "coordinator/internal/state_rows.h"

namespace openforce::coordinator {
namespace {

using internal::Changes;
using internal::kPostgresSchema;
using internal::Params;
using internal::PgConnection;
using internal::PgResult;
using internal::PgRow;
using internal::PgSession;
using internal::PgSessionPool;
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

// Commits on pool sessions do not wait for the WAL flush; the sync session's
// one small commit per group does, and flushes everything before it.
constexpr char kAsyncCommit[] =
    "SET synchronous_commit = off; SET client_min_messages = warning";
constexpr char kSyncCommit[] =
    "SET synchronous_commit = on; SET client_min_messages = warning";
// Connections per replica: enough for its call threads' reads to overlap on
// the server, few enough that many replicas fit in max_connections.
constexpr size_t kSessionsPerReplica = 8;

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

std::vector<UnitRecord> ReadUnits(const PGresult* result) {
  std::vector<UnitRecord> units;
  for (int row = 0; row < PQntuples(result); ++row)
    units.push_back(ReadUnit(PgRow(result, row)));
  return units;
}

// Held while one replica creates or upgrades the schema, so that replicas
// starting together do not race each other's CREATE statements.
constexpr int64_t kSchemaLockKey = 0x6f70656e666f7263;  // "openforc"

// The first key of the two-key advisory locks that guard round closing (one
// per job, the second key is hashtext(job_id)); two-key locks never collide
// with the one-key schema lock.
constexpr int64_t kClosingLockClass = 0x6f66;  // "of"

// A job's closing lock: a session-level advisory lock, so it stays with the
// session (kept out of the pool until this is destroyed) and goes with the
// connection if the replica dies.
class PgClosingLock : public StateStore::ClosingLock {
 public:
  PgClosingLock(PgSessionPool::Handle session, std::string job_id)
      : session_(std::move(session)), job_id_(std::move(job_id)) {}
  ~PgClosingLock() override {
    // A lost connection has released it already.
    (void)session_->Exec("SELECT pg_advisory_unlock($1, hashtext($2))",
                         Params().Add(kClosingLockClass).Add(job_id_));
  }

 private:
  PgSessionPool::Handle session_;
  const std::string job_id_;
};

class PostgresStateStore : public StateStore {
 public:
  PostgresStateStore(const std::string& conninfo, size_t sessions,
                     PgConnection sync_connection)
      : group_commit_([this] { return SyncWal(); }),
        pool_(conninfo, kAsyncCommit, sessions,
              [this] { group_commit_.NoteCommit(); }),
        sync_session_(std::make_unique<PgSession>(std::move(sync_connection),
                                                  kSyncCommit, nullptr)) {}

  absl::Status Init() {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&]() -> absl::Status {
      RETURN_IF_ERROR(session
                          ->Exec("SELECT pg_advisory_xact_lock($1)",
                                 Params().Add(kSchemaLockKey))
                          .status());
      return session->ExecPlain(kPostgresSchema);
    });
  }

  absl::Status Sync() override {
    return group_commit_.WaitDurable(group_commit_.LatestTicket());
  }

  absl::StatusOr<std::unique_ptr<ClosingLock>> TryLockRoundClosing(
      const std::string& job_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult locked,
        session->Exec("SELECT pg_try_advisory_lock($1, hashtext($2))",
                      Params().Add(kClosingLockClass).Add(job_id)));
    if (PQntuples(locked.get()) != 1 || PgRow(locked.get(), 0).Text(0) != "t")
      return nullptr;
    return std::make_unique<PgClosingLock>(std::move(session), job_id);
  }

  absl::Status UpsertWorker(const WorkerRecord& worker) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&] {
      return session
          ->Exec(absl::StrCat(
                     "INSERT INTO workers (", kWorkerColumns,
                     ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) "
                     "ON CONFLICT (worker_id) DO UPDATE SET "
                     "display_name=excluded.display_name, "
                     "profile=excluded.profile, "
                     "last_heartbeat_ms=excluded.last_heartbeat_ms, "
                     "availability=excluded.availability"),
                 Params()
                     .Add(worker.worker_id)
                     .AddBytes(worker.public_key)
                     .Add(worker.display_name)
                     .AddMessage(worker.profile)
                     .Add(worker.registered_ms)
                     .Add(worker.last_heartbeat_ms)
                     .Add(static_cast<int64_t>(worker.availability))
                     .Add(worker.current_unit_id)
                     .Add(static_cast<int64_t>(worker.units_accepted))
                     .Add(static_cast<int64_t>(worker.units_rejected))
                     .AddDouble(worker.credit_flop)
                     .Add(static_cast<int64_t>(worker.validated_streak))
                     .Add(static_cast<int64_t>(worker.units_invalid)))
          .status();
    });
  }

  absl::StatusOr<std::optional<WorkerRecord>> GetWorker(
      const std::string& worker_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(absl::StrCat("SELECT ", kWorkerColumns,
                                   " FROM workers WHERE worker_id=$1"),
                      Params().Add(worker_id)));
    if (PQntuples(result.get()) == 0) return std::nullopt;
    ASSIGN_OR_RETURN(WorkerRecord worker, ReadWorker(PgRow(result.get(), 0)));
    return worker;
  }

  absl::StatusOr<std::vector<WorkerRecord>> ListWorkers() override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(absl::StrCat("SELECT ", kWorkerColumns,
                                   " FROM workers ORDER BY worker_id"),
                      Params()));
    return ReadAll<WorkerRecord>(result.get(), ReadWorker<PgRow>);
  }

  absl::Status RecordHeartbeats(
      const std::vector<HeartbeatRecord>& heartbeats) override {
    if (heartbeats.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&]() -> absl::Status {
      for (const HeartbeatRecord& heartbeat : heartbeats) {
        RETURN_IF_ERROR(
            session
                ->Exec("UPDATE workers SET last_heartbeat_ms=GREATEST("
                       "last_heartbeat_ms, $1), availability=$2, "
                       "current_unit_id=$3 WHERE worker_id=$4",
                       Params()
                           .Add(heartbeat.heard_ms)
                           .Add(static_cast<int64_t>(heartbeat.availability))
                           .Add(heartbeat.current_unit_id)
                           .Add(heartbeat.worker_id))
                .status());
      }
      return absl::OkStatus();
    });
  }

  absl::Status CreateJob(const JobRecord& job,
                         const std::vector<ShardRecord>& shards,
                         const RoundRecord& first_round,
                         const std::vector<UnitRecord>& units) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&]() -> absl::Status {
      RETURN_IF_ERROR(
          session
              ->Exec(absl::StrCat("INSERT INTO jobs (", kJobColumns,
                                  ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"),
                     Params()
                         .Add(job.job_id)
                         .AddMessage(job.spec)
                         .Add(static_cast<int64_t>(job.state))
                         .Add(static_cast<int64_t>(job.current_round))
                         .Add(static_cast<int64_t>(job.latest_version))
                         .Add(job.created_ms)
                         .Add(job.message)
                         .AddMessage(job.initial_adapter)
                         .AddMessage(job.adapter_config)
                         .Add(static_cast<int64_t>(job.estimated_memory_bytes)))
              .status());
      RETURN_IF_ERROR(
          InsertRows(*session, "shards (job_id, shard_index, blob, records)", 4,
                     shards, [&](const ShardRecord& shard, Params& params) {
                       params.Add(job.job_id)
                           .Add(static_cast<int64_t>(shard.shard_index))
                           .AddMessage(shard.blob)
                           .Add(static_cast<int64_t>(shard.records));
                     }));
      return InsertRoundAndUnits(*session, first_round, units);
    });
  }

  absl::StatusOr<std::optional<JobRecord>> GetJob(
      const std::string& job_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(PgResult result,
                     session->Exec(absl::StrCat("SELECT ", kJobColumns,
                                                " FROM jobs WHERE job_id=$1"),
                                   Params().Add(job_id)));
    if (PQntuples(result.get()) == 0) return std::nullopt;
    ASSIGN_OR_RETURN(JobRecord job, ReadJob(PgRow(result.get(), 0)));
    return job;
  }

  absl::StatusOr<std::vector<JobRecord>> ListJobs() override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(PgResult result,
                     session->Exec(absl::StrCat("SELECT ", kJobColumns,
                                                " FROM jobs ORDER BY seq DESC"),
                                   Params()));
    return ReadAll<JobRecord>(result.get(), ReadJob<PgRow>);
  }

  absl::StatusOr<std::vector<JobRecord>> ListRunningJobs() override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(absl::StrCat("SELECT ", kJobColumns,
                                   " FROM jobs WHERE state = $1 ORDER BY seq"),
                      Params().Add(int64_t{v1::JOB_RUNNING})));
    return ReadAll<JobRecord>(result.get(), ReadJob<PgRow>);
  }

  absl::Status SetJobState(const std::string& job_id, v1::JobState state,
                           const std::string& message) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&]() -> absl::Status {
      RETURN_IF_ERROR(session
                          ->Exec("UPDATE jobs SET state=$1, message=$2 WHERE "
                                 "job_id=$3",
                                 Params()
                                     .Add(static_cast<int64_t>(state))
                                     .Add(message)
                                     .Add(job_id))
                          .status());
      if (state == v1::JOB_RUNNING || state == v1::JOB_PENDING)
        return absl::OkStatus();
      return session
          ->Exec(
              "UPDATE units SET state=$1, worker_id='', "
              "lease_deadline_ms=0 WHERE job_id=$2 AND state=$3",
              Params()
                  .Add(static_cast<int64_t>(v1::UNIT_PENDING))
                  .Add(job_id)
                  .Add(static_cast<int64_t>(v1::UNIT_LEASED)))
          .status();
    });
  }

  absl::StatusOr<std::vector<ShardRecord>> ListShards(
      const std::string& job_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec("SELECT shard_index, blob, records FROM shards "
                      "WHERE job_id=$1 ORDER BY shard_index",
                      Params().Add(job_id)));
    return ReadAll<ShardRecord>(result.get(), ReadShard);
  }

  absl::StatusOr<std::optional<ShardRecord>> GetShard(
      const std::string& job_id, uint32_t shard_index) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            "SELECT shard_index, blob, records FROM shards "
            "WHERE job_id=$1 AND shard_index=$2",
            Params().Add(job_id).Add(static_cast<int64_t>(shard_index))));
    if (PQntuples(result.get()) == 0) return std::nullopt;
    ASSIGN_OR_RETURN(ShardRecord shard, ReadShard(PgRow(result.get(), 0)));
    return shard;
  }

  absl::StatusOr<std::vector<RoundRecord>> ListRounds(
      const std::string& job_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            absl::StrCat("SELECT ", kRoundColumns,
                         " FROM rounds WHERE job_id=$1 ORDER BY round"),
            Params().Add(job_id)));
    std::vector<RoundRecord> rounds;
    for (int row = 0; row < PQntuples(result.get()); ++row)
      rounds.push_back(ReadRound(PgRow(result.get(), row)));
    return rounds;
  }

  absl::StatusOr<std::optional<RoundRecord>> GetRound(const std::string& job_id,
                                                      uint64_t round) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(absl::StrCat("SELECT ", kRoundColumns,
                                   " FROM rounds WHERE job_id=$1 AND round=$2"),
                      Params().Add(job_id).Add(static_cast<int64_t>(round))));
    if (PQntuples(result.get()) == 0) return std::nullopt;
    return ReadRound(PgRow(result.get(), 0));
  }

  absl::StatusOr<RoundProgress> GetRoundProgress(const std::string& job_id,
                                                 uint64_t round) override {
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

  absl::StatusOr<std::optional<UnitRecord>> GetUnit(
      const std::string& unit_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(PgResult result,
                     session->Exec(absl::StrCat("SELECT ", kUnitColumns,
                                                " FROM units WHERE unit_id=$1"),
                                   Params().Add(unit_id)));
    if (PQntuples(result.get()) == 0) return std::nullopt;
    return ReadUnit(PgRow(result.get(), 0));
  }

  absl::StatusOr<std::vector<UnitRecord>> ListUnits(const std::string& job_id,
                                                    uint64_t round) override {
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

  absl::StatusOr<std::optional<UnitRecord>> LeaseNextUnit(
      const std::string& job_id, uint64_t round, const std::string& worker_id,
      int64_t deadline_ms) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    std::optional<UnitRecord> leased;
    RETURN_IF_ERROR(session->Transaction([&]() -> absl::Status {
      ASSIGN_OR_RETURN(
          PgResult open,
          session->Exec(
              "SELECT r.candidate_attempt FROM rounds r JOIN jobs j ON "
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

  absl::Status ReleaseUnit(const std::string& unit_id,
                           const std::string& worker_id) override {
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

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeases(
      int64_t now_ms) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    std::vector<UnitRecord> expired;
    RETURN_IF_ERROR(session->Transaction([&]() -> absl::Status {
      // The old values, from the rows this update changed (and locked).
      ASSIGN_OR_RETURN(
          PgResult result,
          session->Exec(
              absl::StrCat("UPDATE units u SET state=$1, worker_id='', "
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

  absl::StatusOr<std::vector<UnitRecord>> ExpireLeasesOfSilentWorkers(
      int64_t heard_before_ms) override {
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

  absl::StatusOr<std::vector<UnitRecord>> ListWorkerLeases(
      const std::string& worker_id) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            absl::StrCat("SELECT ", kUnitColumns,
                         " FROM units WHERE worker_id=$1 AND state=$2 "
                         "ORDER BY unit_id"),
            Params().Add(worker_id).Add(
                static_cast<int64_t>(v1::UNIT_LEASED))));
    return ReadUnits(result.get());
  }

  absl::Status AddUnits(const std::vector<UnitRecord>& units) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&]() { return InsertUnits(*session, units); });
  }

  absl::StatusOr<int> SkipPendingReplicas(
      const std::string& job_id, uint64_t round, uint32_t shard_index,
      const std::string& except_unit_id) override {
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

  absl::Status BeginValidation(
      const RoundRecord& candidate,
      const std::vector<UnitRecord>& validation_units) override {
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
            absl::StrCat("round ", candidate.round, " of job ",
                         candidate.job_id, " is not open"));
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

  absl::Status RecordResult(const ResultRecord& result) override {
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
      RETURN_IF_ERROR(session
                          ->Exec("UPDATE units SET state=$1, worker_id=$2, "
                                 "lease_deadline_ms=0 "
                                 "WHERE unit_id=$3",
                                 Params()
                                     .Add(static_cast<int64_t>(
                                         result.accepted ? v1::UNIT_ACCEPTED
                                                         : v1::UNIT_PENDING))
                                     .Add(result.accepted ? result.worker_id
                                                          : std::string())
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

  absl::StatusOr<std::vector<ResultRecord>> ListResults(
      const std::string& job_id, uint64_t round) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(absl::StrCat("SELECT ", kResultColumns,
                                   " FROM results WHERE job_id=$1 AND round=$2 "
                                   "ORDER BY id"),
                      Params().Add(job_id).Add(static_cast<int64_t>(round))));
    return ReadAll<ResultRecord>(result.get(), ReadResult<PgRow>);
  }

  absl::StatusOr<std::optional<ResultRecord>> GetAcceptedResult(
      const std::string& unit_id) override {
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

  absl::Status RecordValidationReport(
      const ValidationReportRecord& report) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    return session->Transaction([&]() -> absl::Status {
      RETURN_IF_ERROR(
          session
              ->Exec(absl::StrCat(
                         "INSERT INTO validation_reports (", kReportColumns,
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

  absl::StatusOr<std::vector<ValidationReportRecord>> ListValidationReports(
      const std::string& job_id, uint64_t round) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec(
            absl::StrCat("SELECT ", kReportColumns,
                         " FROM validation_reports WHERE job_id=$1 AND "
                         "round=$2 ORDER BY attempt, slice, unit_id"),
            Params().Add(job_id).Add(static_cast<int64_t>(round))));
    return ReadAll<ValidationReportRecord>(result.get(), ReadReport<PgRow>);
  }

  absl::Status CloseRound(const std::string& job_id, uint64_t round,
                          const RoundOutcome& outcome) override {
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
      RETURN_IF_ERROR(
          session
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
                ->Exec(
                    "UPDATE workers SET credit_flop=credit_flop+$1, "
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
                  ->Exec(absl::StrCat(
                             "UPDATE ", table,
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

  absl::StatusOr<std::optional<AdapterRecord>> GetAdapter(
      const std::string& job_id, uint64_t version) override {
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

  absl::StatusOr<bool> IsPublishedAdapterBlob(
      const std::string& sha256) override {
    ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
    ASSIGN_OR_RETURN(
        PgResult result,
        session->Exec("SELECT 1 FROM adapters WHERE model_sha256=$1 OR "
                      "config_sha256=$1 LIMIT 1",
                      Params().Add(sha256)));
    return PQntuples(result.get()) > 0;
  }

 private:
  static absl::StatusOr<ShardRecord> ReadShard(const PgRow& row) {
    ShardRecord shard;
    shard.shard_index = static_cast<uint32_t>(row.Int(0));
    RETURN_IF_ERROR(row.Message(1, &shard.blob));
    shard.records = static_cast<uint64_t>(row.Int(2));
    return shard;
  }

  // "a, b" -> "o.a, o.b".
  static std::string Prefixed(absl::string_view prefix,
                              absl::string_view columns) {
    std::string out;
    for (absl::string_view column : absl::StrSplit(columns, ", ")) {
      absl::StrAppend(&out, out.empty() ? "" : ", ", prefix, column);
    }
    return out;
  }

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
                                  const std::vector<UnitRecord>& units) {
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

  static absl::Status InsertRoundAndUnits(
      PgSession& session, const RoundRecord& round,
      const std::vector<UnitRecord>& units) {
    RETURN_IF_ERROR(
        session
            .Exec("INSERT INTO rounds (job_id, round, parent_version, "
                  "opened_ms, deadline_ms, adapter_version) VALUES "
                  "($1,$2,$3,$4,$5,0)",
                  Params()
                      .Add(round.job_id)
                      .Add(static_cast<int64_t>(round.round))
                      .Add(static_cast<int64_t>(round.parent_version))
                      .Add(round.opened_ms)
                      .Add(round.deadline_ms))
            .status());
    return InsertUnits(session, units);
  }

  // One synchronous commit on its own session: the server flushes its WAL
  // up to it, which covers every commit made before it began. Runs without
  // holding a pool session, so calls go on while it waits for the disk.
  absl::Status SyncWal() {
    absl::MutexLock lock(&sync_mu_);
    return sync_session_
        ->Exec("UPDATE durability_marker SET syncs=syncs+1 WHERE id=1",
               Params())
        .status();
  }

  internal::GroupCommit group_commit_;
  PgSessionPool pool_;
  absl::Mutex sync_mu_;
  std::unique_ptr<PgSession> sync_session_ ABSL_GUARDED_BY(sync_mu_);
};

}  // namespace

bool IsPostgresConninfo(const std::string& state) {
  return absl::StartsWith(state, "postgresql://") ||
         absl::StartsWith(state, "postgres://");
}

absl::StatusOr<std::unique_ptr<StateStore>> OpenPostgresStateStore(
    const std::string& conninfo) {
  ASSIGN_OR_RETURN(PgConnection sync_connection,
                   internal::ConnectPg(conninfo, kSyncCommit));
  auto store = std::make_unique<PostgresStateStore>(
      conninfo, kSessionsPerReplica, std::move(sync_connection));
  RETURN_IF_ERROR(store->Init());
  return store;
}

}  // namespace openforce::coordinator
