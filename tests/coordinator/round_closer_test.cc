// RoundCloser on its own core: nothing closes while units are out; a
// complete round is aggregated, signed by the coordinator's key, published
// once and opens the next round with credit for its workers; a cancelled
// job's round is left alone.
#include "coordinator/round_closer.h"

#include <gtest/gtest.h>

#include "coordinator/delta_intake.h"
#include "coordinator/job_planner.h"
#include "coordinator/scheduler.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;

class RoundCloserTest : public CoordinatorPartsTest {
 protected:
  void SetUp() override {
    CoordinatorPartsTest::SetUp();
    planner_ = std::make_unique<JobPlanner>(core_.get());
    scheduler_ = std::make_unique<Scheduler>(core_.get());
    intake_ = std::make_unique<DeltaIntake>(core_.get());
    closer_ = std::make_unique<RoundCloser>(core_.get());
    job_ = Submit(*planner_, Spec());
    first_ = Register(*scheduler_, 1);
    second_ = Register(*scheduler_, 2);
  }

  // Both workers lease one unit each of round 1 and deliver it.
  void DeliverRoundOne() {
    for (const Worker* worker : {&first_, &second_}) {
      const v1::WorkUnit unit = LeaseOne(*scheduler_, *worker);
      auto delivered = Deliver(*intake_, *worker, unit, DeltaForJob(0.01f));
      ASSERT_OK(delivered);
      ASSERT_TRUE(delivered->accepted());
    }
  }

  JobRecord Job() {
    auto job = state().GetJob(job_);
    EXPECT_OK(job);
    return job.ok() && job->has_value() ? **job : JobRecord();
  }

  std::unique_ptr<JobPlanner> planner_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<DeltaIntake> intake_;
  std::unique_ptr<RoundCloser> closer_;
  std::string job_;
  Worker first_ = NewWorker(1);
  Worker second_ = NewWorker(2);
};

TEST_F(RoundCloserTest, NothingClosesWhileUnitsAreOut) {
  const v1::WorkUnit unit = LeaseOne(*scheduler_, first_);
  ASSERT_OK(Deliver(*intake_, first_, unit, DeltaForJob(0.01f)));
  LeaseOne(*scheduler_, second_);
  ASSERT_OK(closer_->CloseReadyRounds());
  EXPECT_EQ(Job().current_round, 1u);
  EXPECT_EQ(Job().latest_version, 0u);
  auto adapter = state().GetAdapter(job_, 1);
  ASSERT_OK(adapter);
  EXPECT_FALSE(adapter->has_value());
}

TEST_F(RoundCloserTest, ACompleteRoundIsPublishedOnceSignedAndCredited) {
  DeliverRoundOne();
  ASSERT_OK(closer_->CloseReadyRounds());
  ASSERT_OK(closer_->CloseReadyRounds());  // nothing more to close

  EXPECT_EQ(Job().current_round, 2u);
  EXPECT_EQ(Job().latest_version, 1u);
  auto adapter = state().GetAdapter(job_, 1);
  ASSERT_OK(adapter);
  ASSERT_TRUE(adapter->has_value());
  const v1::SignedAdapter& published = (*adapter)->adapter;
  EXPECT_EQ(published.version(), 1u);
  EXPECT_EQ(published.parent_version(), 0u);
  EXPECT_OK(VerifyPayloadSignature(core_->public_key(),
                                   AdapterSigningPayload(published),
                                   published.signature()));
  EXPECT_TRUE(core_->blobs().Contains(published.adapter_model().sha256()));
  EXPECT_FALSE(state().GetAdapter(job_, 2)->has_value());
  // Round 2's units are open, from version 1.
  auto units = state().ListUnits(job_, 2);
  ASSERT_OK(units);
  EXPECT_EQ(units->size(), 2u);
  for (const Worker* worker : {&first_, &second_}) {
    auto record = state().GetWorker(worker->id);
    ASSERT_OK(record);
    EXPECT_EQ((*record)->units_accepted, 1u) << worker->id;
    EXPECT_GT((*record)->credit_flop, 0) << worker->id;
  }
}

TEST_F(RoundCloserTest, ACancelledJobsRoundIsNotPublished) {
  DeliverRoundOne();
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job_);
  ASSERT_OK(planner_->CancelJob(cancel));
  ASSERT_OK(closer_->CloseReadyRounds());
  EXPECT_EQ(Job().state, v1::JOB_CANCELLED);
  EXPECT_EQ(Job().latest_version, 0u);
  EXPECT_FALSE(state().GetAdapter(job_, 1)->has_value());
}

}  // namespace
}  // namespace openforce::coordinator
