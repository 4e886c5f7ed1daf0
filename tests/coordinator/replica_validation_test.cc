// Replica validation end to end through the coordinator's API: replicas that
// agree are credited and aggregated once, one that disagrees with the quorum
// earns nothing and ends its worker's streak, a shard without a quorum gets
// another replica, and trusted workers stand alone except for random
// re-checks.
#include <gtest/gtest.h>

#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

class ReplicaValidationTest : public CoordinatorTest {
 protected:
  // Leases for `worker` and delivers a delta of `value`; the shard leased.
  uint32_t LeaseAndDeliver(const Worker& worker, float value) {
    auto unit = Lease(worker);
    EXPECT_OK(unit);
    EXPECT_TRUE(unit->has_unit());
    EXPECT_OK(Deliver(worker, unit->unit(), value));
    return unit->unit().shard_index();
  }
};

TEST_F(ReplicaValidationTest, QuorumDecidesCreditAndDisagreementGetsAReplica) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_shards_per_round(1);
  spec.set_replication(2);
  const std::string job = Submit(spec);
  const Worker honest = Register(1), cheat = Register(2), third = Register(3);
  // Replicas are the same work: the same seed for both.
  auto first = Lease(honest);
  auto second = Lease(cheat);
  ASSERT_OK(first);
  ASSERT_OK(second);
  EXPECT_EQ(first->unit().training().seed(), second->unit().training().seed());
  EXPECT_NE(first->unit().unit_id(), second->unit().unit_id());
  ASSERT_OK(Deliver(honest, first->unit(), 0.01f));
  ASSERT_OK(Deliver(cheat, second->unit(), 0.05f));
  // No two agree: the round stays open with a third replica to lease.
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->latest_adapter_version(), 0u);
  EXPECT_EQ(status->rounds(0).units_pending(), 1u);
  // Neither earlier worker may take it; the third agrees with the first.
  auto none = Lease(honest);
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_unit());
  EXPECT_EQ(LeaseAndDeliver(third, 0.01f), 0u);
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->state(), v1::JOB_SUCCEEDED);
  EXPECT_EQ(status->rounds(0).units_rejected(), 1u);

  EXPECT_GT(WorkerStatusOf(honest).credit_flop(), 0);
  EXPECT_EQ(WorkerStatusOf(honest).credit_flop(),
            WorkerStatusOf(third).credit_flop());
  EXPECT_EQ(WorkerStatusOf(honest).validated_streak(), 1u);
  EXPECT_EQ(WorkerStatusOf(third).validated_streak(), 1u);
  EXPECT_EQ(WorkerStatusOf(cheat).credit_flop(), 0);
  EXPECT_EQ(WorkerStatusOf(cheat).units_invalid(), 1u);
  EXPECT_EQ(WorkerStatusOf(cheat).validated_streak(), 0u);
  EXPECT_EQ(WorkerStatusOf(cheat).units_rejected(), 1u);
  // The two agreeing replicas count once in the aggregate.
  EXPECT_EQ(LatestAdapter(job).metrics().at("deltas"), 1);
}

TEST_F(ReplicaValidationTest, TrustedWorkersStandAloneExceptRandomRechecks) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(13);
  spec.set_shards_per_round(1);
  spec.set_replication(2);
  const std::string job = Submit(spec);
  const Worker veteran = Register(1), partner = Register(2);
  // Ten validated rounds in a row make `veteran` trusted.
  for (int round = 1; round <= 10; ++round) {
    LeaseAndDeliver(veteran, 0.01f);
    LeaseAndDeliver(partner, 0.01f);
    ASSERT_OK(coordinator_->Tick());
    ASSERT_EQ(coordinator_->GetJob(job)->latest_adapter_version(),
              static_cast<uint64_t>(round));
  }
  ASSERT_EQ(WorkerStatusOf(veteran).validated_streak(), 10u);
  // Round 11: its result stands alone, the other replica is skipped.
  random_ = 0.5;
  LeaseAndDeliver(veteran, 0.01f);
  auto status = coordinator_->GetJob(job);
  EXPECT_EQ(status->rounds(10).units_skipped(), 1u);
  ASSERT_OK(coordinator_->Tick());
  EXPECT_EQ(coordinator_->GetJob(job)->latest_adapter_version(), 11u);
  // Not compared: credited, the streak stays where it was.
  EXPECT_EQ(WorkerStatusOf(veteran).validated_streak(), 10u);
  // Round 12: the random draw re-checks it; the replica still goes out.
  random_ = 0.05;
  LeaseAndDeliver(veteran, 0.01f);
  status = coordinator_->GetJob(job);
  EXPECT_EQ(status->rounds(11).units_skipped(), 0u);
  EXPECT_EQ(status->rounds(11).units_pending(), 1u);
  // Caught cheating on a re-check, it is no longer trusted.
  LeaseAndDeliver(partner, 0.01f);
  ASSERT_OK(coordinator_->Tick());
  random_ = 0.05;
  const Worker referee = Register(3);
  auto unit = Lease(veteran);
  ASSERT_OK(unit);
  ASSERT_OK(Deliver(veteran, unit->unit(), 0.09f));
  LeaseAndDeliver(partner, 0.01f);
  ASSERT_OK(coordinator_->Tick());  // disagreement: a third replica
  LeaseAndDeliver(referee, 0.01f);
  ASSERT_OK(coordinator_->Tick());
  EXPECT_EQ(coordinator_->GetJob(job)->state(), v1::JOB_SUCCEEDED);
  EXPECT_EQ(WorkerStatusOf(veteran).validated_streak(), 0u);
  EXPECT_EQ(WorkerStatusOf(veteran).units_invalid(), 1u);
}

}  // namespace
}  // namespace openforce::coordinator
