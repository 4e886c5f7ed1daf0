// DeltaIntake on its own core: an accepted delta is in the blob store and
// recorded before the answer; a delta whose bytes do not match its header
// never enters the store; an upload for someone else's lease is refused
// before any byte; partial uploads past their age are swept.
#include "coordinator/delta_intake.h"

#include <gtest/gtest.h>

#include "coordinator/job_planner.h"
#include "coordinator/scheduler.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

class DeltaIntakeTest : public CoordinatorPartsTest {
 protected:
  // Partial uploads in the blob store, of any worker.
  size_t OpenUploads() {
    auto open = core_->blobs().ListUploads("");
    EXPECT_OK(open);
    return open.ok() ? open->size() : 0;
  }
};

TEST_F(DeltaIntakeTest, AnAcceptedDeltaIsStoredAndRecordedBeforeTheAnswer) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  DeltaIntake intake(core_.get());
  const std::string job = Submit(planner, Spec());
  const Worker worker = Register(scheduler, 1);
  const v1::WorkUnit unit = LeaseOne(scheduler, worker);
  const std::string delta = DeltaForJob(0.01f);

  auto accepted = Deliver(intake, worker, unit, delta);
  ASSERT_OK(accepted);
  EXPECT_TRUE(accepted->accepted());
  EXPECT_TRUE(core_->blobs().Contains(Sha256Hex(delta)));
  auto results = state().ListResults(job, 1);
  ASSERT_OK(results);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_TRUE((*results)[0].accepted);
  EXPECT_EQ((*results)[0].unit_id, unit.unit_id());
  EXPECT_EQ((*results)[0].worker_id, worker.id);
  auto stored = state().GetUnit(unit.unit_id());
  ASSERT_OK(stored);
  EXPECT_EQ((*stored)->state, v1::UNIT_ACCEPTED);

  // A retry of the acknowledged upload is acknowledged again, not re-recorded.
  auto again = Deliver(intake, worker, unit, delta);
  ASSERT_OK(again);
  EXPECT_TRUE(again->accepted());
  EXPECT_EQ(state().ListResults(job, 1)->size(), 1u);
}

TEST_F(DeltaIntakeTest, BytesThatDoNotMatchTheHeaderNeverEnterTheStore) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  DeltaIntake intake(core_.get());
  Submit(planner, Spec());
  const Worker worker = Register(scheduler, 1);
  const v1::WorkUnit unit = LeaseOne(scheduler, worker);
  const std::string declared = DeltaForJob(0.01f);
  std::string sent = declared;
  sent[sent.size() / 2] ^= 0x40;

  auto upload = intake.BeginUpload(FirstChunk(worker, unit, declared));
  ASSERT_OK(upload);
  ASSERT_OK(intake.AppendUpload(&*upload, 0, sent));
  auto finished = intake.FinishUpload(&*upload);
  EXPECT_EQ(RejectReasonOf(finished.status()), v1::REJECT_HASH_MISMATCH);
  EXPECT_FALSE(core_->blobs().Contains(Sha256Hex(sent)));
  EXPECT_FALSE(core_->blobs().Contains(Sha256Hex(declared)));
  EXPECT_EQ(OpenUploads(), 0u);
}

TEST_F(DeltaIntakeTest, AnUploadForAnotherWorkersLeaseIsRefusedBeforeAnyByte) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  DeltaIntake intake(core_.get());
  Submit(planner, Spec());
  const Worker holder = Register(scheduler, 1);
  const Worker other = Register(scheduler, 2);
  const v1::WorkUnit unit = LeaseOne(scheduler, holder);

  auto refused =
      intake.BeginUpload(FirstChunk(other, unit, DeltaForJob(0.01f)));
  EXPECT_EQ(RejectReasonOf(refused.status()), v1::REJECT_LEASE_NOT_HELD);
  EXPECT_EQ(OpenUploads(), 0u);
}

TEST_F(DeltaIntakeTest, PartialUploadsPastTheirAgeAreSwept) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  DeltaIntake intake(core_.get());
  Submit(planner, Spec());
  const Worker worker = Register(scheduler, 1);
  const v1::WorkUnit unit = LeaseOne(scheduler, worker);
  const std::string delta = DeltaForJob(0.01f);
  auto upload = intake.BeginUpload(FirstChunk(worker, unit, delta));
  ASSERT_OK(upload);
  ASSERT_OK(intake.AppendUpload(&*upload, 0, delta.substr(0, 100)));

  ASSERT_OK(intake.SweepUploads(/*force=*/true));
  EXPECT_EQ(OpenUploads(), 1u);  // still young
  now_ += core_->options().upload_expiry_ms + 1;
  ASSERT_OK(intake.SweepUploads(/*force=*/true));
  EXPECT_EQ(OpenUploads(), 0u);
}

}  // namespace
}  // namespace openforce::coordinator
