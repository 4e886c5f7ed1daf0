// The validation split through the coordinator's API: held-out records never
// reach a shard, each published round carries its validation loss and its
// parent's, and an aggregate clearly worse than its parent is aggregated
// again without the outlier that made it so.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class RoundValidationTest : public CoordinatorTest {
 protected:
  // A delta that learned something: Spec()'s adapter (the job's version 0)
  // trained for a few steps on the whole training set, times `scale`, as
  // safetensors bytes.
  std::string TrainedDelta(double scale, bool b_only) {
    lora::LoraConfig config;
    config.rank = 4;
    config.alpha = 8;
    config.targets = {lora::Projection::kQ, lora::Projection::kV};
    lora::TrainingOptions options;
    options.learning_rate = 2e-2;
    options.max_steps = 8;
    options.batch_size = 8;
    options.freeze_lora_a = b_only;
    auto training = testing::TrainOnDemoTask(task_, config,
                                             Spec().training().seed(), options);
    EXPECT_OK(training);
    auto delta = training->trained.Subtract(training->parent);
    EXPECT_OK(delta);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, tensor] : delta->NamedTensors()) {
      if (b_only && lora::IsLoraAKey(name)) continue;
      tensors.emplace_back(name, tensor.detach() * scale);
    }
    const std::string path = absl::StrCat(dir_.path(), "/trained-", scale);
    EXPECT_OK(lora::WriteSafetensors(path, tensors));
    return *ReadFileToString(path);
  }
};

TEST_F(RoundValidationTest, HeldOutRecordsAreNeverLeasedAndScoreEachRound) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_validation_fraction(0.25);
  const std::string job = Submit(spec);
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  const v1::BlobRef& held = status->spec().validation_set();
  ASSERT_FALSE(held.sha256().empty());
  auto held_text = blobs_->Get(held.sha256());
  ASSERT_OK(held_text);
  const std::vector<std::string> held_lines = Lines(*held_text);
  EXPECT_EQ(held_lines.size(), 10u);  // a quarter of 40
  // Records may repeat in a dataset: what is held out plus what is trained
  // is the dataset, record for record.
  std::multiset<std::string> remaining;
  for (const std::string& line : Lines(*ReadFileToString(task_.train_path)))
    remaining.insert(line);
  for (const std::string& line : held_lines) {
    ASSERT_EQ(remaining.count(line) > 0, true) << line;
    remaining.erase(remaining.find(line));
  }

  size_t trained = 0;
  for (uint64_t seed : {1, 2}) {
    const Worker worker = Register(seed);
    auto unit = Lease(worker);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    auto shard = blobs_->Get(unit->unit().shard().sha256());
    ASSERT_OK(shard);
    for (const std::string& line : Lines(*shard)) {
      auto it = remaining.find(line);
      ASSERT_TRUE(it != remaining.end()) << "held-out record leased: " << line;
      remaining.erase(it);
      ++trained;
    }
    ASSERT_OK(Deliver(worker, unit->unit(), 0.01f));
  }
  EXPECT_EQ(trained, 30u);
  EXPECT_TRUE(remaining.empty());
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  const v1::RoundStatus& round = status->rounds(0);
  EXPECT_GT(round.validation_loss(), 0);
  EXPECT_GT(round.parent_validation_loss(), 0);
  EXPECT_EQ(round.validation_retries(), 0u);
  EXPECT_THAT(FormatJobStatus(*status), HasSubstr("validation_loss"));
}

TEST_F(RoundValidationTest, AWorseAggregateIsRetriedWithoutItsOutlier) {
  // FFA, so that an update is linear in the uploaded B.
  v1::JobSpec spec = Spec();
  spec.set_aggregation("ffa");
  spec.set_rounds(2);
  spec.set_shards_per_round(5);
  spec.set_validation_fraction(0.25);
  spec.set_validation_tolerance(0.01);
  spec.set_max_delta_norm(50);
  const std::string job = Submit(spec);
  const std::string learned = TrainedDelta(1.0, /*b_only=*/true);
  const std::string more = TrainedDelta(0.1, /*b_only=*/true);
  const std::string undone = TrainedDelta(-8.0, /*b_only=*/true);
  std::vector<Worker> workers;
  for (int i = 0; i < 5; ++i) workers.push_back(Register(20 + i));
  // Round 1: everyone learns; version 1 is better than version 0.
  for (const Worker& worker : workers) {
    auto unit = Lease(worker);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    ASSERT_OK(DeliverBytes(worker, unit->unit(), learned));
  }
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->latest_adapter_version(), 1u) << status->message();
  EXPECT_LT(status->rounds(0).validation_loss(),
            status->rounds(0).parent_validation_loss());
  EXPECT_EQ(status->rounds(0).validation_retries(), 0u);
  // Round 2: four learn a little more; the last undoes it all, eight times
  // over (within the norm bound). Their mean is worse than version 1.
  for (int i = 0; i < 5; ++i) {
    auto unit = Lease(workers[i]);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    ASSERT_OK(DeliverBytes(workers[i], unit->unit(), i < 4 ? more : undone));
  }
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  const v1::RoundStatus& round = status->rounds(1);
  EXPECT_EQ(round.validation_retries(), 1u);
  // Without the outlier the aggregate is no worse than version 1.
  EXPECT_LE(round.validation_loss(), round.parent_validation_loss() * 1.01);
  EXPECT_EQ(WorkerStatusOf(workers[4]).units_rejected(), 1u);  // round 2
  EXPECT_EQ(WorkerStatusOf(workers[0]).units_rejected(), 0u);
}

TEST_F(RoundValidationTest, SubmitRefusesBadValidationSettings) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_validation_fraction(0.7);
  EXPECT_THAT(coordinator_->SubmitJob(request),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("validation_fraction")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_validation_fraction(0.5);
  request.mutable_spec()->set_shards_per_round(25);  // 20 left for training
  EXPECT_THAT(coordinator_->SubmitJob(request),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("after the validation split")));
}

}  // namespace
}  // namespace openforce::coordinator
