// The determinism contract replica validation relies on: a unit trained twice
// with the same parent, data, seed, steps and thread count gives a
// bitwise-equal delta file; with another thread count (other BLAS
// partitioning) the two stay within the default replica tolerance.
#include <gtest/gtest.h>

#include <string>

#include "common/file_util.h"
#include "coordinator/internal/planning.h"
#include "lora/adapter_delta.h"
#include "lora/compute_device.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {
namespace {

class ReplicaDeterminismTest : public ::testing::Test {
 protected:
  void TearDown() override { ASSERT_OK(lora::SetCpuThreads(1)); }

  // Trains the same unit with `threads` CPU threads; the delta's path.
  std::string TrainUnit(int threads, const std::string& name,
                        uint64_t seed = 99) {
    EXPECT_OK(lora::SetCpuThreads(threads));
    lora::LoraConfig config;
    config.rank = 4;
    config.dropout = 0.05;
    config.targets = {lora::Projection::kQ, lora::Projection::kV,
                      lora::Projection::kDown};
    lora::TrainingOptions options;
    options.learning_rate = 1e-2;
    options.max_steps = 12;
    options.batch_size = 16;
    options.seed = seed;
    auto training = testing::TrainOnDemoTask(task_, config, 11, options);
    EXPECT_OK(training);
    const std::string path = dir_.path() + "/" + name;
    EXPECT_OK(
        lora::WriteAdapterDelta(training->trained, training->parent, path));
    return path;
  }

  testing::TempDir dir_;
  testing::DemoTaskFiles task_ = testing::WriteDemoTask(dir_.path(), 96, 8);
};

TEST_F(ReplicaDeterminismTest,
       SameThreadsAreBitwiseEqualOthersWithinTolerance) {
  const std::string first = TrainUnit(1, "first");
  const std::string again = TrainUnit(1, "again");
  const std::string two_threads = TrainUnit(2, "two_threads");
  EXPECT_EQ(*ReadFileToString(first), *ReadFileToString(again));
  auto distance = lora::RelativeDeltaDistance(first, two_threads);
  ASSERT_OK(distance);
  RecordProperty("relative_distance_1_vs_2_threads", std::to_string(*distance));
  EXPECT_LE(*distance, kDefaultReplicaTolerance);
  auto same = lora::RelativeDeltaDistance(first, again);
  ASSERT_OK(same);
  EXPECT_EQ(*same, 0);
  // Other work (another data order and dropout) is far outside it: the
  // tolerance tells honest replicas from a worker that did something else.
  auto other = lora::RelativeDeltaDistance(first, TrainUnit(1, "other", 100));
  ASSERT_OK(other);
  EXPECT_GT(*other, 10 * kDefaultReplicaTolerance);
}

}  // namespace
}  // namespace openforce::coordinator
