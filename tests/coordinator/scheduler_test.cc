// Scheduler on its own core: registration proofs, the lease cap and
// releases, expiry of a silent holder's lease while a heartbeating one keeps
// its own, revocation in the heartbeat answer, and fetches limited to what a
// lease needs.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include "coordinator/job_planner.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

using SchedulerTest = CoordinatorPartsTest;

v1::UnitState StateOf(StateStore& state, const std::string& unit_id) {
  auto unit = state.GetUnit(unit_id);
  EXPECT_OK(unit);
  return unit.ok() && unit->has_value() ? (*unit)->state
                                        : v1::UNIT_STATE_UNSPECIFIED;
}

TEST_F(SchedulerTest, RegisterRefusesAProofMadeWithAnotherKey) {
  Scheduler scheduler(core_.get());
  v1::RegisterRequest request = RegisterRequestOf(NewWorker(1), v1::TIER_CPU);
  request.set_proof_of_possession(
      RegisterRequestOf(NewWorker(2), v1::TIER_CPU).proof_of_possession());
  EXPECT_THAT(scheduler.Register(request),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("proof_of_possession")));
  auto workers = state().ListWorkers();
  ASSERT_OK(workers);
  EXPECT_TRUE(workers->empty());
}

TEST_F(SchedulerTest, LeasesUpToTheCapAndAReleaseFreesTheUnit) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  Submit(planner, Spec());
  const Worker worker = Register(scheduler, 1);
  const v1::WorkUnit unit = LeaseOne(scheduler, worker);
  EXPECT_EQ(StateOf(state(), unit.unit_id()), v1::UNIT_LEASED);

  // The default cap is one lease per worker and job.
  auto capped = scheduler.LeaseWorkUnit(LeaseRequestOf(worker));
  EXPECT_EQ(RejectReasonOf(capped.status()), v1::REJECT_TOO_MANY_LEASES);

  v1::ReleaseWorkUnitRequest release;
  release.set_worker_id(worker.id);
  release.set_unit_id(unit.unit_id());
  worker.Sign(kReleaseMethod, &release);
  ASSERT_OK(scheduler.ReleaseWorkUnit(release));
  EXPECT_EQ(StateOf(state(), unit.unit_id()), v1::UNIT_PENDING);
  EXPECT_TRUE(scheduler.LeaseWorkUnit(LeaseRequestOf(worker))->has_unit());
}

TEST_F(SchedulerTest, ASilentHolderLosesItsLeaseAndAHeartbeatingOneKeepsIt) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  v1::JobSpec spec = Spec();
  spec.set_unit_deadline_s(600);  // only silence ends these leases
  Submit(planner, spec);
  const Worker silent = Register(scheduler, 1);
  const Worker alive = Register(scheduler, 2);
  const v1::WorkUnit silent_unit = LeaseOne(scheduler, silent);
  const v1::WorkUnit alive_unit = LeaseOne(scheduler, alive);

  // The grace is three heartbeat intervals (30 s here).
  now_ += 20'000;
  ASSERT_OK(scheduler.Heartbeat(HeartbeatOf(alive, alive_unit.unit_id())));
  now_ += 15'000;
  ASSERT_OK(scheduler.ExpireLeases());
  EXPECT_EQ(StateOf(state(), silent_unit.unit_id()), v1::UNIT_PENDING);
  EXPECT_EQ(StateOf(state(), alive_unit.unit_id()), v1::UNIT_LEASED);

  // The silent worker comes back and hears its unit was taken away.
  auto answer = scheduler.Heartbeat(HeartbeatOf(silent, silent_unit.unit_id()));
  ASSERT_OK(answer);
  ASSERT_EQ(answer->revoked_unit_ids_size(), 1);
  EXPECT_EQ(answer->revoked_unit_ids(0), silent_unit.unit_id());
}

TEST_F(SchedulerTest, AWorkerFetchesOnlyWhatItsLeaseNeeds) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  Submit(planner, Spec());
  const Worker holder = Register(scheduler, 1);
  const Worker idle = Register(scheduler, 2);
  const v1::WorkUnit unit = LeaseOne(scheduler, holder);

  auto fetch = [](const Worker& worker, const std::string& sha) {
    v1::FetchBlobRequest request;
    request.set_worker_id(worker.id);
    request.set_sha256(sha);
    worker.Sign(kFetchBlobMethod, &request);
    return request;
  };
  EXPECT_OK(scheduler.CheckFetchAllowed(fetch(holder, unit.shard().sha256())));
  EXPECT_OK(scheduler.CheckFetchAllowed(
      fetch(holder, unit.base_model_files(0).sha256())));
  EXPECT_EQ(RejectReasonOf(scheduler.CheckFetchAllowed(
                fetch(idle, unit.shard().sha256()))),
            v1::REJECT_NOT_LEASED_BLOB);
  // Anonymous callers get published adapters only.
  v1::FetchBlobRequest anonymous;
  anonymous.set_sha256(unit.shard().sha256());
  EXPECT_THAT(scheduler.CheckFetchAllowed(anonymous),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("published adapter")));
}

}  // namespace
}  // namespace openforce::coordinator
