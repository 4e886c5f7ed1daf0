// JobPlanner on its own core: a job's plan (shards covering the dataset,
// round 1's units, the initial adapter, a memory estimate), refused specs
// that store nothing and say what is wrong, and cancellation.
#include "coordinator/job_planner.h"

#include <gtest/gtest.h>

#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

using JobPlannerTest = CoordinatorPartsTest;

TEST_F(JobPlannerTest, PlansShardsCoveringTheDatasetAndRoundOnesUnits) {
  JobPlanner planner(core_.get());
  v1::JobSpec spec = Spec();
  spec.set_shards_per_round(3);
  spec.set_replication(2);
  const std::string job_id = Submit(planner, spec);

  auto shards = state().ListShards(job_id);
  ASSERT_OK(shards);
  ASSERT_EQ(shards->size(), 3u);
  uint64_t records = 0;
  std::string all_lines;
  for (const ShardRecord& shard : *shards) {
    records += shard.records;
    auto text = core_->blobs().Get(shard.blob.sha256());
    ASSERT_OK(text);
    EXPECT_EQ(text->size(), shard.blob.size_bytes());
    all_lines += *text;
  }
  EXPECT_EQ(records, 40u);  // the demo task's 40 records, none held out
  EXPECT_EQ(std::count(all_lines.begin(), all_lines.end(), '\n'), 40);

  auto units = state().ListUnits(job_id, 1);
  ASSERT_OK(units);
  EXPECT_EQ(units->size(), 6u);  // 3 shards x 2 replicas
  for (const UnitRecord& unit : *units) EXPECT_EQ(unit.state, v1::UNIT_PENDING);

  auto job = state().GetJob(job_id);
  ASSERT_OK(job);
  EXPECT_EQ((*job)->state, v1::JOB_RUNNING);
  EXPECT_EQ((*job)->current_round, 1u);
  EXPECT_GT((*job)->estimated_memory_bytes, 0u);
  EXPECT_TRUE(core_->blobs().Contains((*job)->initial_adapter.sha256()));
}

TEST_F(JobPlannerTest, ARefusedSpecStoresNoJobAndNamesTheProblem) {
  JobPlanner planner(core_.get());
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_shards_per_round(0);
  EXPECT_THAT(planner.SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("shards_per_round")));

  *request.mutable_spec() = Spec();
  request.mutable_spec()->mutable_dataset()->set_sha256(
      Sha256Hex("never uploaded"));
  EXPECT_THAT(planner.SubmitJob(request),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("was not uploaded")));

  *request.mutable_spec() = Spec();
  request.mutable_spec()->mutable_lora()->add_target_modules("no_such_proj");
  EXPECT_THAT(
      planner.SubmitJob(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no_such_proj")));

  auto jobs = state().ListJobs();
  ASSERT_OK(jobs);
  EXPECT_TRUE(jobs->empty());
}

TEST_F(JobPlannerTest, CancelStopsAJobOnceAndKeepsTheReason) {
  JobPlanner planner(core_.get());
  const std::string job_id = Submit(planner, Spec());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job_id);
  cancel.set_reason("wrong dataset");
  auto cancelled = planner.CancelJob(cancel);
  ASSERT_OK(cancelled);
  EXPECT_EQ(cancelled->state(), v1::JOB_CANCELLED);
  auto job = state().GetJob(job_id);
  ASSERT_OK(job);
  EXPECT_EQ((*job)->state, v1::JOB_CANCELLED);
  EXPECT_THAT((*job)->message, HasSubstr("wrong dataset"));

  EXPECT_THAT(planner.CancelJob(cancel),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("already JOB_CANCELLED")));
  cancel.set_job_id("job-none");
  EXPECT_THAT(planner.CancelJob(cancel),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-none")));
}

}  // namespace
}  // namespace openforce::coordinator
