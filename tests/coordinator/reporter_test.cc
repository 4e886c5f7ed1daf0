// Reporter on its own core: unknown jobs and versions, paging, workers
// hidden once silent unless asked for, and the levels a metrics scrape
// reads.
#include "coordinator/reporter.h"

#include <gtest/gtest.h>

#include "coordinator/job_planner.h"
#include "coordinator/scheduler.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

using ReporterTest = CoordinatorPartsTest;

TEST_F(ReporterTest, UnknownJobsAndVersionsAreNotFound) {
  JobPlanner planner(core_.get());
  Reporter reporter(core_.get());
  EXPECT_THAT(reporter.GetJob("job-none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-none")));
  const std::string job_id = Submit(planner, Spec());
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job_id);
  auto latest = reporter.GetLatestAdapter(request);
  ASSERT_OK(latest);
  EXPECT_FALSE(latest->has_adapter());  // nothing published yet
  request.set_version(3);
  EXPECT_THAT(
      reporter.GetLatestAdapter(request),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no adapter version 3")));
}

TEST_F(ReporterTest, ListJobsPagesAndRefusesATokenItDidNotGive) {
  JobPlanner planner(core_.get());
  Reporter reporter(core_.get());
  for (int i = 0; i < 3; ++i) Submit(planner, Spec());
  v1::ListJobsRequest request;
  request.set_page_size(2);
  auto first = reporter.ListJobs(request);
  ASSERT_OK(first);
  EXPECT_EQ(first->jobs_size(), 2);
  ASSERT_FALSE(first->next_page_token().empty());
  request.set_page_token(first->next_page_token());
  auto second = reporter.ListJobs(request);
  ASSERT_OK(second);
  EXPECT_EQ(second->jobs_size(), 1);
  EXPECT_TRUE(second->next_page_token().empty());
  EXPECT_NE(second->jobs(0).job_id(), first->jobs(0).job_id());
  EXPECT_NE(second->jobs(0).job_id(), first->jobs(1).job_id());

  request.set_page_token("x");
  EXPECT_THAT(
      reporter.ListJobs(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(ReporterTest, SilentWorkersAreListedOnlyWhenAskedFor) {
  Scheduler scheduler(core_.get());
  Reporter reporter(core_.get());
  Register(scheduler, 1);  // never heard from again
  const Worker alive = Register(scheduler, 2);
  now_ += 50'000;
  ASSERT_OK(scheduler.Heartbeat(HeartbeatOf(alive)));
  now_ += 20'000;  // silent for 70 s, past the 60 s timeout

  v1::ListWorkersRequest request;
  auto active = reporter.ListWorkers(request);
  ASSERT_OK(active);
  ASSERT_EQ(active->workers_size(), 1);
  EXPECT_EQ(active->workers(0).worker_id(), alive.id);
  // The heartbeat is soft state, overlaid on what the store holds.
  EXPECT_EQ(active->workers(0).last_heartbeat_ms(), kStart + 50'000);
  request.set_include_inactive(true);
  EXPECT_EQ(reporter.ListWorkers(request)->workers_size(), 2);
}

TEST_F(ReporterTest, MetricsSnapshotCountsUnitsWorkersAndJobs) {
  JobPlanner planner(core_.get());
  Scheduler scheduler(core_.get());
  Reporter reporter(core_.get());
  Submit(planner, Spec());
  const Worker cpu = Register(scheduler, 1, v1::TIER_CPU);
  Register(scheduler, 2, v1::TIER_GPU_SMALL);
  LeaseOne(scheduler, cpu);

  auto snapshot = reporter.CollectMetricsSnapshot();
  ASSERT_OK(snapshot);
  using Key = std::pair<std::string, std::string>;
  EXPECT_EQ((snapshot->units[Key{"training", "pending"}]), 1u);
  EXPECT_EQ((snapshot->units[Key{"training", "leased"}]), 1u);
  EXPECT_EQ((snapshot->workers[Key{"cpu", "available"}]), 1u);
  EXPECT_EQ((snapshot->workers[Key{"gpu_small", "available"}]), 1u);
  EXPECT_EQ(snapshot->jobs["running"], 1u);
  EXPECT_GT(snapshot->blob_bytes, 0u);

  now_ += 61'000;
  snapshot = reporter.CollectMetricsSnapshot();
  ASSERT_OK(snapshot);
  EXPECT_EQ((snapshot->workers[Key{"cpu", "silent"}]), 1u);
}

}  // namespace
}  // namespace openforce::coordinator
