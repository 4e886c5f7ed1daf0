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

// A running job, and a worker holding a lease on one of its units.
class DeltaIntakeTest : public CoordinatorPartsTest {
 protected:
  void SetUp() override {
    CoordinatorPartsTest::SetUp();
    planner_ = std::make_unique<JobPlanner>(core_.get());
    scheduler_ = std::make_unique<Scheduler>(core_.get());
    intake_ = std::make_unique<DeltaIntake>(core_.get());
    job_ = Submit(*planner_, Spec());
    worker_ = Register(*scheduler_, 1);
    unit_ = LeaseOne(*scheduler_, worker_);
  }

  // Partial uploads in the blob store, of any worker.
  size_t OpenUploads() {
    auto open = core_->blobs().ListUploads("");
    EXPECT_OK(open);
    return open.ok() ? open->size() : 0;
  }

  std::unique_ptr<JobPlanner> planner_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<DeltaIntake> intake_;
  std::string job_;
  Worker worker_ = NewWorker(1);
  v1::WorkUnit unit_;
};

TEST_F(DeltaIntakeTest, AnAcceptedDeltaIsStoredAndRecordedBeforeTheAnswer) {
  const std::string delta = DeltaForJob(0.01f);

  auto accepted = Deliver(*intake_, worker_, unit_, delta);
  ASSERT_OK(accepted);
  EXPECT_TRUE(accepted->accepted());
  EXPECT_TRUE(core_->blobs().Contains(Sha256Hex(delta)));
  auto results = state().ListResults(job_, 1);
  ASSERT_OK(results);
  ASSERT_EQ(results->size(), 1u);
  EXPECT_TRUE((*results)[0].accepted);
  EXPECT_EQ((*results)[0].unit_id, unit_.unit_id());
  EXPECT_EQ((*results)[0].worker_id, worker_.id);
  auto stored = state().GetUnit(unit_.unit_id());
  ASSERT_OK(stored);
  EXPECT_EQ((*stored)->state, v1::UNIT_ACCEPTED);

  // A retry of the acknowledged upload is acknowledged again, not re-recorded.
  auto again = Deliver(*intake_, worker_, unit_, delta);
  ASSERT_OK(again);
  EXPECT_TRUE(again->accepted());
  EXPECT_EQ(state().ListResults(job_, 1)->size(), 1u);
}

TEST_F(DeltaIntakeTest, BytesThatDoNotMatchTheHeaderNeverEnterTheStore) {
  const std::string declared = DeltaForJob(0.01f);
  std::string sent = declared;
  sent[sent.size() / 2] ^= 0x40;

  auto upload = intake_->BeginUpload(FirstChunk(worker_, unit_, declared));
  ASSERT_OK(upload);
  ASSERT_OK(intake_->AppendUpload(&*upload, 0, sent));
  auto finished = intake_->FinishUpload(&*upload);
  EXPECT_EQ(RejectReasonOf(finished.status()), v1::REJECT_HASH_MISMATCH);
  EXPECT_FALSE(core_->blobs().Contains(Sha256Hex(sent)));
  EXPECT_FALSE(core_->blobs().Contains(Sha256Hex(declared)));
  EXPECT_EQ(OpenUploads(), 0u);
}

TEST_F(DeltaIntakeTest, AnUploadForAnotherWorkersLeaseIsRefusedBeforeAnyByte) {
  const Worker other = Register(*scheduler_, 2);

  auto refused =
      intake_->BeginUpload(FirstChunk(other, unit_, DeltaForJob(0.01f)));
  EXPECT_EQ(RejectReasonOf(refused.status()), v1::REJECT_LEASE_NOT_HELD);
  EXPECT_EQ(OpenUploads(), 0u);
}

TEST_F(DeltaIntakeTest, PartialUploadsPastTheirAgeAreSwept) {
  const std::string delta = DeltaForJob(0.01f);
  auto upload = intake_->BeginUpload(FirstChunk(worker_, unit_, delta));
  ASSERT_OK(upload);
  ASSERT_OK(intake_->AppendUpload(&*upload, 0, delta.substr(0, 100)));

  ASSERT_OK(intake_->SweepUploads(/*force=*/true));
  EXPECT_EQ(OpenUploads(), 1u);  // still young
  now_ += core_->options().upload_expiry_ms + 1;
  ASSERT_OK(intake_->SweepUploads(/*force=*/true));
  EXPECT_EQ(OpenUploads(), 0u);
}

}  // namespace
}  // namespace openforce::coordinator
