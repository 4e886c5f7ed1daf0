// Replica quorums on crafted distances.
#include "coordinator/internal/replica_quorum.h"

#include <gtest/gtest.h>

#include <map>
#include <utility>
#include <vector>

#include "tests/testing/status_matchers.h"

namespace openforce::coordinator::internal {
namespace {

using ::openforce::testing::StatusIs;

// Results whose "delta" is a number; distance is the difference.
ReplicaDistance Between(std::map<size_t, double> values) {
  return [values](size_t a, size_t b) -> absl::StatusOr<double> {
    return std::abs(values.at(a) - values.at(b));
  };
}

TEST(ReplicaQuorumTest, TwoThatAgreeValidateOneAggregatedResult) {
  auto quorum = DecideShardQuorum({4, 9}, Between({{4, 1.0}, {9, 1.001}}), 0.01,
                                  false, true);
  ASSERT_OK(quorum);
  EXPECT_EQ(quorum->canonical, 4u);  // the oldest of equals
  EXPECT_EQ(quorum->agreeing, std::vector<size_t>{9});
  EXPECT_TRUE(quorum->disagreeing.empty());
  EXPECT_FALSE(quorum->needs_replica);
}

TEST(ReplicaQuorumTest, TheOneOutsideTheQuorumIsInvalid) {
  auto quorum = DecideShardQuorum(
      {0, 1, 2}, Between({{0, 5.0}, {1, 1.0}, {2, 1.0}}), 0.01, false, true);
  ASSERT_OK(quorum);
  EXPECT_EQ(quorum->canonical, 1u);
  EXPECT_EQ(quorum->agreeing, std::vector<size_t>{2});
  EXPECT_EQ(quorum->disagreeing, std::vector<size_t>{0});
}

TEST(ReplicaQuorumTest, DisagreementAsksForAnotherReplicaWhileItMay) {
  const ReplicaDistance distance = Between({{0, 1.0}, {1, 2.0}});
  auto more = DecideShardQuorum({0, 1}, distance, 0.01, false, true);
  ASSERT_OK(more);
  EXPECT_TRUE(more->needs_replica);
  EXPECT_FALSE(more->canonical.has_value());
  EXPECT_TRUE(more->disagreeing.empty());
  auto stuck = DecideShardQuorum({0, 1}, distance, 0.01, false, false);
  ASSERT_OK(stuck);
  EXPECT_FALSE(stuck->needs_replica);
  EXPECT_EQ(stuck->unresolved, (std::vector<size_t>{0, 1}));
}

TEST(ReplicaQuorumTest, ALoneResultStandsOnlyWhenTrusted) {
  const ReplicaDistance never = [](size_t, size_t) -> absl::StatusOr<double> {
    return absl::InternalError("not called");
  };
  auto trusted = DecideShardQuorum({3}, never, 0.01, true, true);
  ASSERT_OK(trusted);
  EXPECT_EQ(trusted->canonical, 3u);
  auto untrusted = DecideShardQuorum({3}, never, 0.01, false, true);
  ASSERT_OK(untrusted);
  EXPECT_TRUE(untrusted->needs_replica);
  EXPECT_THAT(DecideShardQuorum({0, 1}, never, 0.01, false, true),
              StatusIs(absl::StatusCode::kInternal, ::testing::_));
}

}  // namespace
}  // namespace openforce::coordinator::internal
