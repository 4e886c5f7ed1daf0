// The StateStore contract, run against every backend: leasing hands each
// unit to one worker, in order, never two replicas of a shard to the same
// worker, validation units first and only them once a round has a
// candidate, nothing in a closed round or a stopped job; round counters
// follow every change of a unit's state; heartbeats are written in batches
// and never move back; what Sync() covered survives reopening the store.
// Backends register a factory below (SQLite on disk here; PostgreSQL where
// its server can be started).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "coordinator/postgres_state_store.h"
#include "coordinator/sqlite_state_store.h"
#include "coordinator/state_store.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

// Opens the backend's store for `dir`; opening it again for the same `dir`
// reaches the same state.
struct Backend {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<StateStore>>(
      const std::string& dir)>
      open;
};

// Test names show the backend, not the struct's bytes.
void PrintTo(const Backend& backend, std::ostream* out) {
  *out << backend.name;
}

// One PostgreSQL server for the whole suite (starting one takes seconds);
// each test directory gets its own database in it.
absl::StatusOr<std::unique_ptr<StateStore>> OpenPostgresForDir(
    const std::string& dir) {
  // Stopped (and its directory removed) when the test binary exits.
  static absl::StatusOr<std::unique_ptr<testing::PostgresServer>> server =
      testing::PostgresServer::Start();
  if (!server.ok()) return server.status();
  ASSIGN_OR_RETURN(std::string uri,
                   (*server)->CreateDatabase(absl::StrCat(
                       "contract_", std::hash<std::string>()(dir))));
  return OpenPostgresStateStore(uri);
}

std::vector<Backend> Backends() {
  return {{"sqlite",
           [](const std::string& dir) {
             return OpenSqliteStateStore(dir + "/state.db");
           }},
          {"postgresql", OpenPostgresForDir}};
}

constexpr char kJob[] = "job-contract";
constexpr char kAdapterSha[] =
    "0000000000000000000000000000000000000000000000000000000000000001";

UnitRecord Unit(const std::string& job, uint32_t shard, uint32_t replica,
                v1::WorkKind kind = v1::WORK_TRAIN, uint32_t attempt = 0) {
  UnitRecord unit;
  unit.unit_id = absl::StrCat(
      job, "-r1-", kind == v1::WORK_VALIDATE ? "v" : "s", shard, "-p", replica,
      attempt > 0 ? absl::StrCat("-a", attempt) : "");
  unit.job_id = job;
  unit.round = 1;
  unit.shard_index = shard;
  unit.replica = replica;
  unit.kind = kind;
  unit.attempt = attempt;
  return unit;
}

class StateStoreContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    auto store = GetParam().open(dir_.path());
    ASSERT_OK(store);
    store_ = *std::move(store);
  }

  void Reopen() {
    store_.reset();
    auto store = GetParam().open(dir_.path());
    ASSERT_OK(store);
    store_ = *std::move(store);
  }

  // A running job in round 1 with `shards` shards of `replicas` replicas.
  void CreateJob(const std::string& job_id, uint32_t shards,
                 uint32_t replicas) {
    JobRecord job;
    job.job_id = job_id;
    job.spec.set_name("contract");
    job.state = v1::JOB_RUNNING;
    job.current_round = 1;
    job.created_ms = 1000;
    std::vector<ShardRecord> shard_records;
    std::vector<UnitRecord> units;
    for (uint32_t shard = 0; shard < shards; ++shard) {
      ShardRecord record;
      record.shard_index = shard;
      record.blob.set_sha256(absl::StrCat("shard-", shard));
      record.records = 10 + shard;
      shard_records.push_back(record);
      for (uint32_t replica = 0; replica < replicas; ++replica)
        units.push_back(Unit(job_id, shard, replica));
    }
    RoundRecord round;
    round.job_id = job_id;
    round.round = 1;
    round.opened_ms = 1000;
    round.deadline_ms = 100'000;
    ASSERT_OK(store_->CreateJob(job, shard_records, round, units));
  }

  // The unit `worker` leases next ("" when none).
  std::string LeaseNext(const std::string& worker,
                        const std::string& job = kJob) {
    auto unit = store_->LeaseNextUnit(job, 1, worker, 50'000);
    EXPECT_OK(unit);
    if (!unit.ok() || !unit->has_value()) return "";
    EXPECT_EQ((*unit)->state, v1::UNIT_LEASED);
    EXPECT_EQ((*unit)->worker_id, worker);
    EXPECT_EQ((*unit)->lease_deadline_ms, 50'000);
    return (*unit)->unit_id;
  }

  uint64_t Count(v1::WorkKind kind, v1::UnitState state) {
    auto progress = store_->GetRoundProgress(kJob, 1);
    EXPECT_OK(progress);
    return progress.ok() ? progress->Count(kind, state) : 0;
  }

  ResultRecord Accepted(const std::string& unit_id, const std::string& worker,
                        uint32_t shard) {
    ResultRecord result;
    result.unit_id = unit_id;
    result.worker_id = worker;
    result.job_id = kJob;
    result.round = 1;
    result.shard_index = shard;
    result.accepted = true;
    return result;
  }

  testing::TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_P(StateStoreContractTest, LeasesInOrderAndNeverTwoReplicasOfAShardToOne) {
  CreateJob(kJob, 3, 2);
  EXPECT_EQ(LeaseNext("w-a"), "job-contract-r1-s0-p0");
  EXPECT_EQ(LeaseNext("w-a"), "job-contract-r1-s1-p0");
  EXPECT_EQ(LeaseNext("w-a"), "job-contract-r1-s2-p0");
  // What is left are replicas of shards w-a holds.
  EXPECT_EQ(LeaseNext("w-a"), "");
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-s0-p1");
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-s1-p1");
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-s2-p1");
  EXPECT_EQ(LeaseNext("w-c"), "");
  auto held = store_->ListWorkerLeases("w-a");
  ASSERT_OK(held);
  EXPECT_EQ(held->size(), 3u);
}

TEST_P(StateStoreContractTest, ADeliveredShardIsNotLeasedAgainToItsWorker) {
  CreateJob(kJob, 1, 2);
  ASSERT_EQ(LeaseNext("w-a"), "job-contract-r1-s0-p0");
  ASSERT_OK(store_->RecordResult(Accepted("job-contract-r1-s0-p0", "w-a", 0)));
  EXPECT_EQ(LeaseNext("w-a"), "");
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-s0-p1");
}

TEST_P(StateStoreContractTest, OnlyTheHolderReleasesALeaseAndItIsLeasedAgain) {
  CreateJob(kJob, 1, 1);
  const std::string unit = LeaseNext("w-a");
  ASSERT_FALSE(unit.empty());
  EXPECT_THAT(store_->ReleaseUnit(unit, "w-b"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("holds no lease")));
  EXPECT_EQ(LeaseNext("w-b"), "");
  ASSERT_OK(store_->ReleaseUnit(unit, "w-a"));
  EXPECT_EQ(LeaseNext("w-b"), unit);
}

TEST_P(StateStoreContractTest, ValidationUnitsFirstAndOnlyThemWithACandidate) {
  CreateJob(kJob, 2, 1);
  ASSERT_EQ(LeaseNext("w-a"), "job-contract-r1-s0-p0");
  RoundRecord candidate;
  candidate.job_id = kJob;
  candidate.round = 1;
  candidate.candidate_sha256 = kAdapterSha;
  candidate.candidate_attempt = 1;
  candidate.candidate_rule = "fedavg";
  candidate.deadline_ms = 200'000;
  ASSERT_OK(store_->BeginValidation(candidate,
                                    {Unit(kJob, 0, 0, v1::WORK_VALIDATE, 1),
                                     Unit(kJob, 1, 0, v1::WORK_VALIDATE, 1)}));
  auto round = store_->GetRound(kJob, 1);
  ASSERT_OK(round);
  ASSERT_TRUE(round->has_value());
  EXPECT_EQ((*round)->candidate_attempt, 1u);
  EXPECT_EQ((*round)->deadline_ms, 200'000);
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-v0-p0-a1");
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-v1-p0-a1");
  // Training shard 1 is still pending, but its delta is no longer needed.
  EXPECT_EQ(LeaseNext("w-b"), "");
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_PENDING), 1u);
}

TEST_P(StateStoreContractTest, NothingIsLeasedInAStoppedJobOrAClosedRound) {
  CreateJob(kJob, 2, 1);
  CreateJob("job-other", 2, 1);
  ASSERT_EQ(LeaseNext("w-a"), "job-contract-r1-s0-p0");
  ASSERT_OK(store_->SetJobState(kJob, v1::JOB_CANCELLED, "stopped"));
  EXPECT_EQ(LeaseNext("w-b"), "");
  // Stopping the job ended its lease.
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_LEASED), 0u);

  RoundOutcome outcome;
  outcome.adapter.adapter.set_job_id("job-other");
  outcome.adapter.adapter.set_version(1);
  outcome.adapter.adapter.mutable_adapter_model()->set_sha256(kAdapterSha);
  ASSERT_OK(store_->CloseRound("job-other", 1, outcome));
  EXPECT_EQ(LeaseNext("w-b", "job-other"), "");
  EXPECT_THAT(store_->CloseRound("job-other", 1, outcome),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is not open")));
}

TEST_P(StateStoreContractTest, RoundCountersFollowEveryStateChange) {
  CreateJob(kJob, 3, 2);
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_PENDING), 6u);
  const std::string first = LeaseNext("w-a");
  const std::string second = LeaseNext("w-b");
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_PENDING), 4u);
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_LEASED), 2u);
  ASSERT_OK(store_->RecordResult(Accepted(first, "w-a", 0)));
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_ACCEPTED), 1u);
  auto skipped = store_->SkipPendingReplicas(kJob, 1, 0, first);
  ASSERT_OK(skipped);
  EXPECT_EQ(*skipped, 1);
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_SKIPPED), 1u);
  auto expired = store_->ExpireLeases(60'000);
  ASSERT_OK(expired);
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ((*expired)[0].unit_id, second);
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_LEASED), 0u);
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_PENDING), 4u);
  ASSERT_OK(store_->AddUnits({Unit(kJob, 2, 2)}));
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_PENDING), 5u);
  ASSERT_OK(store_->Sync());
  Reopen();
  auto progress = store_->GetRoundProgress(kJob, 1);
  ASSERT_OK(progress);
  EXPECT_EQ(progress->Total(v1::WORK_TRAIN), 7u);
  EXPECT_EQ(progress->Count(v1::WORK_TRAIN, v1::UNIT_PENDING), 5u);
  EXPECT_EQ(progress->Count(v1::WORK_TRAIN, v1::UNIT_ACCEPTED), 1u);
  EXPECT_EQ(progress->Count(v1::WORK_TRAIN, v1::UNIT_SKIPPED), 1u);
}

TEST_P(StateStoreContractTest, ConcurrentLeasersNeverShareAUnit) {
  constexpr int kUnits = 120;
  constexpr int kWorkers = 6;
  CreateJob(kJob, kUnits, 1);
  absl::Mutex mu;
  std::vector<std::string> leased;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      while (true) {
        auto unit = store_->LeaseNextUnit(kJob, 1, absl::StrCat("w-", w), 9);
        if (!unit.ok() || !unit->has_value()) return;
        absl::MutexLock lock(&mu);
        leased.push_back((*unit)->unit_id);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  EXPECT_EQ(leased.size(), static_cast<size_t>(kUnits));
  EXPECT_EQ(std::set<std::string>(leased.begin(), leased.end()).size(),
            static_cast<size_t>(kUnits));
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_LEASED),
            static_cast<uint64_t>(kUnits));
}

// Leases and releases racing on one round (as two replicas, or one
// replica's call threads, make them) all succeed, and the counters end
// where the units are.
TEST_P(StateStoreContractTest, RacingLeasesAndReleasesAllSucceed) {
  constexpr int kUnits = 40;
  constexpr int kWorkers = 8;
  constexpr int kCycles = 25;
  CreateJob(kJob, kUnits, 1);
  std::atomic<int> failures{0};
  absl::Mutex mu;
  std::string first_failure;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      const std::string worker = absl::StrCat("w-", w);
      for (int cycle = 0; cycle < kCycles; ++cycle) {
        auto unit = store_->LeaseNextUnit(kJob, 1, worker, 9);
        absl::Status released =
            !unit.ok() ? unit.status()
            : !unit->has_value()
                ? absl::NotFoundError("no unit to lease")
                : store_->ReleaseUnit((*unit)->unit_id, worker);
        if (!released.ok()) {
          absl::MutexLock lock(&mu);
          if (failures++ == 0) first_failure = released.ToString();
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_PENDING),
            static_cast<uint64_t>(kUnits));
  EXPECT_EQ(Count(v1::WORK_TRAIN, v1::UNIT_LEASED), 0u);
}

TEST_P(StateStoreContractTest, HeartbeatBatchesAreWrittenAndNeverMoveBack) {
  for (const char* id : {"w-a", "w-b"}) {
    WorkerRecord worker;
    worker.worker_id = id;
    worker.public_key = std::string(32, 'k');
    worker.registered_ms = 10;
    worker.last_heartbeat_ms = 10;
    ASSERT_OK(store_->UpsertWorker(worker));
  }
  ASSERT_OK(store_->RecordHeartbeats(
      {{"w-a", 500, v1::PAUSED, "unit-1"}, {"w-b", 700, v1::AVAILABLE, ""}}));
  ASSERT_OK(store_->RecordHeartbeats({{"w-a", 400, v1::AVAILABLE, ""}}));
  auto a = store_->GetWorker("w-a");
  ASSERT_OK(a);
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->last_heartbeat_ms, 500);
  auto b = store_->GetWorker("w-b");
  ASSERT_OK(b);
  ASSERT_TRUE(b->has_value());
  EXPECT_EQ((*b)->last_heartbeat_ms, 700);
  ASSERT_OK(store_->RecordHeartbeats({}));
}

TEST_P(StateStoreContractTest, ShardsAndRoundsAreReadOneByOne) {
  CreateJob(kJob, 4, 1);
  auto shard = store_->GetShard(kJob, 3);
  ASSERT_OK(shard);
  ASSERT_TRUE(shard->has_value());
  EXPECT_EQ((*shard)->records, 13u);
  EXPECT_EQ((*shard)->blob.sha256(), "shard-3");
  auto missing = store_->GetShard(kJob, 4);
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
  auto round = store_->GetRound(kJob, 1);
  ASSERT_OK(round);
  ASSERT_TRUE(round->has_value());
  EXPECT_EQ((*round)->deadline_ms, 100'000);
  auto no_round = store_->GetRound(kJob, 2);
  ASSERT_OK(no_round);
  EXPECT_FALSE(no_round->has_value());
}

TEST_P(StateStoreContractTest, WhatSyncCoveredSurvivesReopening) {
  CreateJob(kJob, 2, 1);
  const std::string unit = LeaseNext("w-a");
  ASSERT_OK(store_->RecordResult(Accepted(unit, "w-a", 0)));
  ASSERT_OK(store_->Sync());
  Reopen();
  auto result = store_->GetAcceptedResult(unit);
  ASSERT_OK(result);
  ASSERT_TRUE(result->has_value());
  EXPECT_EQ((*result)->worker_id, "w-a");
  EXPECT_EQ(LeaseNext("w-b"), "job-contract-r1-s1-p0");
}

TEST_P(StateStoreContractTest, RunningJobsAreListedOldestFirst) {
  CreateJob("job-a", 1, 1);
  CreateJob("job-b", 1, 1);
  CreateJob("job-c", 1, 1);
  ASSERT_OK(store_->SetJobState("job-b", v1::JOB_SUCCEEDED, "done"));
  auto running = store_->ListRunningJobs();
  ASSERT_OK(running);
  ASSERT_EQ(running->size(), 2u);
  EXPECT_EQ((*running)[0].job_id, "job-a");
  EXPECT_EQ((*running)[1].job_id, "job-c");
  EXPECT_EQ((*running)[1].state, v1::JOB_RUNNING);
  auto all = store_->ListJobs();  // newest first, every state
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].job_id, "job-c");
}

TEST_P(StateStoreContractTest, AJobsClosingLockHasOneHolderAcrossReplicas) {
  auto replica = GetParam().open(dir_.path());  // a second replica's store
  ASSERT_OK(replica);
  auto held = store_->TryLockRoundClosing(kJob);
  ASSERT_OK(held);
  ASSERT_NE(*held, nullptr);
  auto refused = (*replica)->TryLockRoundClosing(kJob);
  ASSERT_OK(refused);
  EXPECT_EQ(*refused, nullptr);
  // A second closer in the same replica is refused too.
  auto same_store = store_->TryLockRoundClosing(kJob);
  ASSERT_OK(same_store);
  EXPECT_EQ(*same_store, nullptr);
  // Other jobs close independently.
  auto other_job = (*replica)->TryLockRoundClosing("job-other");
  ASSERT_OK(other_job);
  EXPECT_NE(*other_job, nullptr);

  held->reset();
  auto after = (*replica)->TryLockRoundClosing(kJob);
  ASSERT_OK(after);
  EXPECT_NE(*after, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Backends, StateStoreContractTest,
                         ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace openforce::coordinator
