// PostgreSQL StateStore (internal/postgres_store.h): opening, the schema,
// Sync, closing locks, workers, jobs, shards and rounds. The schema mirrors
// the SQLite one (internal/state_rows.h has the shared column lists and
// readers): serialized protobuf messages in BYTEA next to the columns that
// queries filter on, the same indexes, and per-round unit counters kept by
// a trigger.
#include "coordinator/postgres_state_store.h"

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "coordinator/internal/pg_session.h"
#include "coordinator/internal/postgres_schema.h"
#include "coordinator/internal/postgres_store.h"
#include "coordinator/internal/state_rows.h"

namespace openforce::coordinator {
namespace internal {
namespace {

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

}  // namespace

using state_rows::kJobColumns;
using state_rows::kRoundColumns;
using state_rows::kWorkerColumns;
using state_rows::ReadJob;
using state_rows::ReadRound;
using state_rows::ReadWorker;

absl::Status PostgresStateStore::Init() {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  return session->Transaction([&]() -> absl::Status {
    RETURN_IF_ERROR(session
                        ->Exec("SELECT pg_advisory_xact_lock($1)",
                               Params().Add(kSchemaLockKey))
                        .status());
    return session->ExecPlain(kPostgresSchema);
  });
}

absl::Status PostgresStateStore::Sync() {
  return group_commit_.WaitDurable(group_commit_.LatestTicket());
}

absl::StatusOr<std::unique_ptr<StateStore::ClosingLock>>
PostgresStateStore::TryLockRoundClosing(const std::string& job_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult locked,
      session->Exec("SELECT pg_try_advisory_lock($1, hashtext($2))",
                    Params().Add(kClosingLockClass).Add(job_id)));
  if (PQntuples(locked.get()) != 1 || PgRow(locked.get(), 0).Text(0) != "t")
    return nullptr;
  return std::make_unique<PgClosingLock>(std::move(session), job_id);
}

absl::Status PostgresStateStore::UpsertWorker(const WorkerRecord& worker) {
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

absl::StatusOr<std::optional<WorkerRecord>> PostgresStateStore::GetWorker(
    const std::string& worker_id) {
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

absl::StatusOr<std::vector<WorkerRecord>> PostgresStateStore::ListWorkers() {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(absl::StrCat("SELECT ", kWorkerColumns,
                                 " FROM workers ORDER BY worker_id"),
                    Params()));
  return ReadAll<WorkerRecord>(result.get(), ReadWorker<PgRow>);
}

absl::Status PostgresStateStore::RecordHeartbeats(
    const std::vector<HeartbeatRecord>& heartbeats) {
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

absl::Status PostgresStateStore::CreateJob(
    const JobRecord& job, const std::vector<ShardRecord>& shards,
    const RoundRecord& first_round, const std::vector<UnitRecord>& units) {
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

absl::StatusOr<std::optional<JobRecord>> PostgresStateStore::GetJob(
    const std::string& job_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(PgResult result,
                   session->Exec(absl::StrCat("SELECT ", kJobColumns,
                                              " FROM jobs WHERE job_id=$1"),
                                 Params().Add(job_id)));
  if (PQntuples(result.get()) == 0) return std::nullopt;
  ASSIGN_OR_RETURN(JobRecord job, ReadJob(PgRow(result.get(), 0)));
  return job;
}

absl::StatusOr<std::vector<JobRecord>> PostgresStateStore::ListJobs() {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(PgResult result,
                   session->Exec(absl::StrCat("SELECT ", kJobColumns,
                                              " FROM jobs ORDER BY seq DESC"),
                                 Params()));
  return ReadAll<JobRecord>(result.get(), ReadJob<PgRow>);
}

absl::StatusOr<std::vector<JobRecord>> PostgresStateStore::ListRunningJobs() {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(absl::StrCat("SELECT ", kJobColumns,
                                 " FROM jobs WHERE state = $1 ORDER BY seq"),
                    Params().Add(int64_t{v1::JOB_RUNNING})));
  return ReadAll<JobRecord>(result.get(), ReadJob<PgRow>);
}

absl::Status PostgresStateStore::SetJobState(const std::string& job_id,
                                             v1::JobState state,
                                             const std::string& message) {
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

absl::StatusOr<std::vector<ShardRecord>> PostgresStateStore::ListShards(
    const std::string& job_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec("SELECT shard_index, blob, records FROM shards "
                    "WHERE job_id=$1 ORDER BY shard_index",
                    Params().Add(job_id)));
  return ReadAll<ShardRecord>(result.get(), ReadShard);
}

absl::StatusOr<std::optional<ShardRecord>> PostgresStateStore::GetShard(
    const std::string& job_id, uint32_t shard_index) {
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

absl::StatusOr<std::vector<RoundRecord>> PostgresStateStore::ListRounds(
    const std::string& job_id) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(absl::StrCat("SELECT ", kRoundColumns,
                                 " FROM rounds WHERE job_id=$1 ORDER BY round"),
                    Params().Add(job_id)));
  std::vector<RoundRecord> rounds;
  for (int row = 0; row < PQntuples(result.get()); ++row)
    rounds.push_back(ReadRound(PgRow(result.get(), row)));
  return rounds;
}

absl::StatusOr<std::optional<RoundRecord>> PostgresStateStore::GetRound(
    const std::string& job_id, uint64_t round) {
  ASSIGN_OR_RETURN(PgSessionPool::Handle session, pool_.Acquire());
  ASSIGN_OR_RETURN(
      PgResult result,
      session->Exec(absl::StrCat("SELECT ", kRoundColumns,
                                 " FROM rounds WHERE job_id=$1 AND round=$2"),
                    Params().Add(job_id).Add(static_cast<int64_t>(round))));
  if (PQntuples(result.get()) == 0) return std::nullopt;
  return ReadRound(PgRow(result.get(), 0));
}

absl::StatusOr<ShardRecord> PostgresStateStore::ReadShard(const PgRow& row) {
  ShardRecord shard;
  shard.shard_index = static_cast<uint32_t>(row.Int(0));
  RETURN_IF_ERROR(row.Message(1, &shard.blob));
  shard.records = static_cast<uint64_t>(row.Int(2));
  return shard;
}

// "a, b" -> "o.a, o.b".
std::string PostgresStateStore::Prefixed(absl::string_view prefix,
                                         absl::string_view columns) {
  std::string out;
  for (absl::string_view column : absl::StrSplit(columns, ", ")) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", prefix, column);
  }
  return out;
}

absl::Status PostgresStateStore::InsertRoundAndUnits(
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
absl::Status PostgresStateStore::SyncWal() {
  absl::MutexLock lock(&sync_mu_);
  return sync_session_
      ->Exec("UPDATE durability_marker SET syncs=syncs+1 WHERE id=1", Params())
      .status();
}

}  // namespace internal

bool IsPostgresConninfo(const std::string& state) {
  return absl::StartsWith(state, "postgresql://") ||
         absl::StartsWith(state, "postgres://");
}

absl::StatusOr<std::unique_ptr<StateStore>> OpenPostgresStateStore(
    const std::string& conninfo) {
  ASSIGN_OR_RETURN(internal::PgConnection sync_connection,
                   internal::ConnectPg(conninfo, internal::kSyncCommit));
  auto store = std::make_unique<internal::PostgresStateStore>(
      conninfo, internal::kSessionsPerReplica, std::move(sync_connection));
  RETURN_IF_ERROR(store->Init());
  return store;
}

}  // namespace openforce::coordinator
