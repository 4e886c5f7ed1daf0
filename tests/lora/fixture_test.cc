// Conformance with ../shared/fixtures/hf-llama-tiny, made by another
// implementation (transformers' eager Llama and PEFT's LoRA forward, fp32): the
// loader, the model and the adapter reproduce its logits within its tolerance.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tensor_matchers.h"

namespace openforce::lora {
namespace {

const std::string kFixture = OPENFORCE_FIXTURE_DIR "/hf-llama-tiny";

class HfLlamaTinyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> text =
        ReadFileToString(kFixture + "/expected.json");
    ASSERT_OK(text);
    expected_ = nlohmann::json::parse(*text);
    tolerance_ = expected_["tolerance_abs"].get<double>();
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> logits =
        SafetensorsFile::Open(kFixture + "/expected_logits.safetensors");
    ASSERT_OK(logits);
    input_ids_ = (*(*logits)->Tensor("input_ids")).to(at::kLong);
    logits_base_ = *(*logits)->Tensor("logits_base");
    logits_adapter_ = *(*logits)->Tensor("logits_adapter");
    absl::StatusOr<std::unique_ptr<LlamaModel>> model =
        LlamaModel::Load(kFixture, {});
    ASSERT_OK(model);
    model_ = *std::move(model);
  }

  nlohmann::json expected_;
  double tolerance_ = 0;
  at::Tensor input_ids_, logits_base_, logits_adapter_;
  std::unique_ptr<LlamaModel> model_;
};

TEST_F(HfLlamaTinyTest, ConfigIsReadAsWritten) {
  const LlamaConfig& c = model_->config();
  EXPECT_EQ(c.vocab_size, 320);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 176);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(input_ids_.sizes(), (std::vector<int64_t>{2, 12}));
}

TEST_F(HfLlamaTinyTest, BaseLogitsMatch) {
  ForwardOptions options;
  at::Tensor logits = model_->Forward(input_ids_, options);
  EXPECT_TRUE(testing::TensorsNear(logits, logits_base_, tolerance_));
}

TEST_F(HfLlamaTinyTest, PeftAdapterLogitsMatch) {
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Load(kFixture + "/adapter", model_->config());
  ASSERT_OK(adapter);
  EXPECT_EQ(adapter->config().rank, 4);
  EXPECT_EQ(adapter->config().alpha, 8);
  EXPECT_EQ(adapter->config().targets.size(), 7u);
  ForwardOptions options;
  options.adapter = &*adapter;
  at::Tensor logits = model_->Forward(input_ids_, options);
  EXPECT_TRUE(testing::TensorsNear(logits, logits_adapter_, tolerance_));
  // Merged into the weights, the same logits without the adapter branch.
  ASSERT_OK(adapter->Merge(&model_->weights()));
  ForwardOptions merged;
  EXPECT_TRUE(testing::TensorsNear(model_->Forward(input_ids_, merged),
                                   logits_adapter_, tolerance_));
  ASSERT_OK(adapter->Unmerge(&model_->weights()));
  EXPECT_TRUE(testing::TensorsNear(model_->Forward(input_ids_, merged),
                                   logits_base_, tolerance_));
}

TEST_F(HfLlamaTinyTest, CachedIncrementalLogitsMatchTheFullPass) {
  KvCache cache =
      KvCache::Create(model_->config(), 2, 16, at::kFloat, at::kCPU);
  ForwardOptions options;
  options.cache = &cache;
  at::Tensor first = model_->Forward(input_ids_.narrow(1, 0, 5), options);
  std::vector<at::Tensor> pieces = {first};
  for (int64_t t = 5; t < 12; ++t) {
    pieces.push_back(model_->Forward(input_ids_.narrow(1, t, 1), options));
  }
  EXPECT_TRUE(
      testing::TensorsNear(at::cat(pieces, 1), logits_base_, tolerance_));
}

}  // namespace
}  // namespace openforce::lora
