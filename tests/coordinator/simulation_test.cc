// `simulate` at tiny size: the IID and Dirichlet splits, and rounds of the
// real trainer with attacks going through the coordinator's checks and the
// job's rule.
#include "coordinator/simulation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "coordinator/internal/data_split.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<std::string> Labels(int records, int classes) {
  std::vector<std::string> labels;
  for (int i = 0; i < records; ++i)
    labels.push_back(std::to_string(i % classes));
  return labels;
}

double MeanClassesPerWorker(const std::vector<std::vector<size_t>>& split,
                            const std::vector<std::string>& labels) {
  double total = 0;
  for (const auto& share : split) {
    std::set<std::string> seen;
    for (size_t i : share) seen.insert(labels[i]);
    total += static_cast<double>(seen.size());
  }
  return total / static_cast<double>(split.size());
}

TEST(DataSplitTest, IidDealsEveryRecordOnceInEqualShares) {
  const std::vector<std::string> labels = Labels(103, 12);
  auto split = internal::SplitRecords(labels, 10, 0, 1);
  ASSERT_OK(split);
  std::set<size_t> seen;
  for (const auto& share : *split) {
    EXPECT_GE(share.size(), 10u);
    EXPECT_LE(share.size(), 11u);
    seen.insert(share.begin(), share.end());
  }
  EXPECT_EQ(seen.size(), 103u);
}

TEST(DataSplitTest, SmallDirichletAlphaGivesEachWorkerFewClasses) {
  const std::vector<std::string> labels = Labels(1200, 12);
  auto iid = internal::SplitRecords(labels, 10, 0, 1);
  auto skewed = internal::SplitRecords(labels, 10, 0.1, 1);
  ASSERT_OK(iid);
  ASSERT_OK(skewed);
  EXPECT_EQ(MeanClassesPerWorker(*iid, labels), 12);
  EXPECT_LT(MeanClassesPerWorker(*skewed, labels), 6);
  size_t total = 0;
  std::set<size_t> seen;
  for (const auto& share : *skewed) {
    EXPECT_FALSE(share.empty());
    total += share.size();
    seen.insert(share.begin(), share.end());
  }
  EXPECT_EQ(total, 1200u);
  EXPECT_EQ(seen.size(), 1200u);
  // The same seed deals the same split.
  EXPECT_EQ(*skewed, *internal::SplitRecords(labels, 10, 0.1, 1));
}

TEST(DataSplitTest, RefusesFewerRecordsThanWorkers) {
  EXPECT_THAT(internal::SplitRecords(Labels(3, 1), 4, 0, 1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("3 records, fewer than the 4 workers")));
  EXPECT_THAT(internal::SplitRecords(Labels(8, 1), 4, -1, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alpha")));
}

class SimulationTest : public ::testing::Test {
 protected:
  SimulationTest() : task_(testing::WriteDemoTask(dir_.path(), 140, 32)) {
    options_.model_dir = task_.model_dir;
    options_.dataset_path = task_.train_path;
    options_.validation_path = task_.held_out_path;
    options_.lora.set_rank(4);
    options_.lora.set_alpha(8);
    for (const char* target : {"q_proj", "v_proj", "o_proj", "down_proj"})
      options_.lora.add_target_modules(target);
    options_.training.set_learning_rate(1e-2);
    options_.training.set_steps_per_shard(4);
    options_.training.set_batch_size(8);
    options_.training.set_sequence_length(12);
    options_.training.set_seed(3);
    options_.workers = 7;
    options_.rounds = 2;
    options_.max_delta_norm = 50;
    options_.centralized = false;
  }

  testing::TempDir dir_;
  testing::DemoTaskFiles task_;
  SimulationOptions options_;
};

TEST_F(SimulationTest, HonestRoundsLowerTheValidationLossForEachStrategy) {
  for (const char* rule : {"fedavg", "ffa", "svd"}) {
    options_.aggregation = rule;
    options_.centralized = std::string(rule) == "fedavg";
    auto result = RunSimulation(options_);
    ASSERT_OK(result);
    EXPECT_EQ(result->aggregation, rule);
    ASSERT_EQ(result->rounds.size(), 2u);
    EXPECT_LT(result->rounds[1].validation_loss,
              result->rounds[0].validation_loss)
        << rule;
    EXPECT_LT(result->rounds[0].validation_loss, result->initial_loss) << rule;
    EXPECT_EQ(result->rounds[1].deltas_aggregated, 7) << rule;
    EXPECT_EQ(std::isnan(result->rounds[1].centralized_loss),
              !options_.centralized);
    if (std::string(rule) == "svd") {
      EXPECT_GT(result->rounds[0].truncation_error, 0);
      EXPECT_LT(result->rounds[0].truncation_error, 1);
    }
  }
}

TEST_F(SimulationTest, AttacksMeetTheIntakeChecksAndTheRobustRule) {
  options_.rounds = 1;
  options_.hostile_fraction = 2.0 / 7;
  options_.aggregation = "svd+clip:2";
  // Claims and zero deltas are refused at intake, as the coordinator does.
  for (Attack attack : {Attack::kZero, Attack::kClaimedSamples}) {
    options_.attack = attack;
    auto result = RunSimulation(options_);
    ASSERT_OK(result);
    EXPECT_EQ(result->hostile_workers.size(), 2u);
    EXPECT_EQ(result->rounds[0].deltas_refused, 2) << AttackName(attack);
    EXPECT_EQ(result->rounds[0].deltas_aggregated, 5) << AttackName(attack);
  }
  // Noise at the bound passes intake; Multi-Krum leaves it out.
  options_.attack = Attack::kNoise;
  options_.aggregation = "fedavg+krum:2";
  auto noise = RunSimulation(options_);
  ASSERT_OK(noise);
  EXPECT_EQ(noise->rounds[0].deltas_refused, 0);
  EXPECT_EQ(noise->rounds[0].deltas_left_out, 2);
  EXPECT_EQ(noise->rounds[0].deltas_aggregated, 5);
  // Absent hostile workers: the honest-only run. (Krum would still leave out
  // f of the five, as it always does.)
  options_.attack = Attack::kAbsent;
  options_.aggregation = "fedavg";
  auto absent = RunSimulation(options_);
  ASSERT_OK(absent);
  EXPECT_EQ(absent->rounds[0].deltas_aggregated, 5);
}

TEST_F(SimulationTest, RefusesBadOptionsByName) {
  options_.aggregation = "svd+median";
  EXPECT_THAT(RunSimulation(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("use clip, krum or centered_clip with svd")));
  options_.aggregation = "";
  options_.workers = 500;  // more workers than the 140 records
  EXPECT_THAT(RunSimulation(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("fewer than the 500 workers")));
  options_.workers = 7;
  options_.hostile_fraction = 1.5;
  EXPECT_THAT(RunSimulation(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("hostile fraction")));
  EXPECT_THAT(ParseAttack("ddos"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown attack 'ddos'")));
}

}  // namespace
}  // namespace openforce::coordinator
