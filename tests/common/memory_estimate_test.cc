// Parameter counts checked against the published sizes of real models, and the
// memory estimator's components against hand-computed values.
#include "common/memory_estimate.h"

#include <gtest/gtest.h>

#include "common/byte_size.h"
#include "common/model_catalog.h"
#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

// From the models' config.json files.
const ModelShape kLlama2_7B = {32000, 4096, 11008, 32, 32, 32, 0, false, false};
const ModelShape kLlama2_13B = {32000, 5120, 13824, 40,   40,
                                40,    0,    false, false};
const ModelShape kTinyLlama = {32000, 2048, 5632, 22, 32, 4, 0, false, false};

TEST(ParameterCountTest, MatchesPublishedModelSizes) {
  EXPECT_EQ(BaseParameterCount(kLlama2_7B), 6738415616);
  EXPECT_EQ(BaseParameterCount(kLlama2_13B), 13015864320);
  EXPECT_EQ(BaseParameterCount(kTinyLlama), 1100048384);
}

TEST(ParameterCountTest, TiedEmbeddingsAndAttentionBias) {
  ModelShape tied = kTinyLlama;
  tied.tie_word_embeddings = true;
  EXPECT_EQ(BaseParameterCount(tied), 1100048384 - 32000 * 2048);
  ModelShape biased = kTinyLlama;
  biased.attention_bias = true;  // q, k and v biases in every layer
  EXPECT_EQ(BaseParameterCount(biased), 1100048384 + 22 * (2048 + 2 * 256));
}

TEST(ParameterCountTest, CatalogShapesAreValid) {
  for (const CatalogModel& model : ModelCatalog()) {
    EXPECT_OK(ValidateModelShape(model.shape)) << model.name;
  }
}

TEST(LoraParameterCountTest, MatchesPeftTrainableParameters) {
  // PEFT prints "trainable params: 4,194,304" for Llama-2-7B with r=8 on
  // q_proj, v_proj.
  absl::StatusOr<int64_t> llama =
      LoraParameterCount(kLlama2_7B, {8, {"q_proj", "v_proj"}});
  ASSERT_OK(llama);
  EXPECT_EQ(*llama, 4194304);
  // Grouped-query attention: v_proj is 2048 -> 256 in TinyLlama.
  absl::StatusOr<int64_t> tiny =
      LoraParameterCount(kTinyLlama, {8, {"q_proj", "v_proj"}});
  ASSERT_OK(tiny);
  EXPECT_EQ(*tiny, 22 * (8 * (2048 + 2048) + 8 * (2048 + 256)));
  absl::StatusOr<int64_t> all =
      LoraParameterCount(kTinyLlama, {4,
                                      {"q_proj", "k_proj", "v_proj", "o_proj",
                                       "gate_proj", "up_proj", "down_proj"}});
  ASSERT_OK(all);
  EXPECT_EQ(*all, 22 * 4 *
                      ((2048 + 2048) + 2 * (2048 + 256) + (2048 + 2048) +
                       3 * (2048 + 5632)));
}

TEST(LoraParameterCountTest, RejectsBadLoraConfigs) {
  EXPECT_THAT(
      LoraParameterCount(kTinyLlama, {8, {"q_proj", "lm_head"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'lm_head'")));
  EXPECT_THAT(
      LoraParameterCount(kTinyLlama, {0, {"q_proj"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("LoRA rank")));
  EXPECT_THAT(LoraParameterCount(kTinyLlama, {8, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no target modules")));
  EXPECT_THAT(
      LoraParameterCount(kTinyLlama, {8, {"q_proj", "q_proj"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
}

TEST(ValidateModelShapeTest, NamesTheBadField) {
  ModelShape shape = kTinyLlama;
  shape.num_key_value_heads = 5;
  EXPECT_THAT(ValidateModelShape(shape),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not divisible by num_key_value_heads 5")));
  shape = kTinyLlama;
  shape.hidden_size = 2050;
  EXPECT_THAT(ValidateModelShape(shape),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("hidden_size 2050")));
  shape = kTinyLlama;
  shape.vocab_size = 0;
  EXPECT_THAT(
      ValidateModelShape(shape),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocab_size")));
}

TEST(InferenceMemoryTest, WeightsAndKvCacheAreExact) {
  absl::StatusOr<MemoryEstimate> llama =
      EstimateInferenceMemory(kLlama2_7B, DType::kBFloat16, 1, 4096);
  ASSERT_OK(llama);
  EXPECT_EQ(llama->weights_bytes, 2 * 6738415616ull);
  // 2 (k and v) x 32 layers x 4096 wide x 4096 tokens x 2 bytes = 2 GiB.
  EXPECT_EQ(llama->kv_cache_bytes, 2 * kGiB);
  absl::StatusOr<MemoryEstimate> tiny =
      EstimateInferenceMemory(kTinyLlama, DType::kFloat32, 1, 4096);
  ASSERT_OK(tiny);
  EXPECT_EQ(tiny->weights_bytes, 4 * 1100048384ull);
  // Grouped-query attention caches only 4 kv heads of 64.
  EXPECT_EQ(tiny->kv_cache_bytes, 2ull * 22 * 4 * 64 * 4096 * 4);
  EXPECT_GT(tiny->activation_bytes, 0u);
  EXPECT_EQ(tiny->total_bytes(), tiny->weights_bytes + tiny->kv_cache_bytes +
                                     tiny->activation_bytes +
                                     tiny->runtime_overhead_bytes);
}

TEST(TrainingMemoryTest, AdapterStateIsSixteenBytesPerLoraParameter) {
  const LoraShape lora = {8, {"q_proj", "v_proj"}};
  absl::StatusOr<MemoryEstimate> estimate =
      EstimateTrainingMemory(kLlama2_7B, DType::kBFloat16, lora, 1, 512);
  ASSERT_OK(estimate);
  EXPECT_EQ(estimate->adapter_state_bytes, 16 * 4194304ull);
  EXPECT_EQ(estimate->weights_bytes, 2 * 6738415616ull);
  EXPECT_EQ(estimate->kv_cache_bytes, 0u);
}

TEST(TrainingMemoryTest, QuantizedBasesBringSevenBillionToLaptopsAndSmallGpus) {
  // Llama-2-7B's projections: 32 layers of 4 x 4096^2 + 3 x 4096 x 11008.
  const int64_t per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008;
  const int64_t rest = 6738415616 - 32 * per_layer;  // embeddings, head, norms
  const int64_t largest = 4096 * 11008;  // dequantized at a time, twice
  EXPECT_EQ(BaseWeightBytes(kLlama2_7B, DType::kBFloat16, WeightFormat::kNone),
            2 * 6738415616);
  EXPECT_EQ(BaseWeightBytes(kLlama2_7B, DType::kBFloat16, WeightFormat::kQ8),
            32 * (per_layer / 32 * 34) + 2 * rest + 2 * 2 * largest);
  EXPECT_EQ(BaseWeightBytes(kLlama2_7B, DType::kBFloat16, WeightFormat::kQ4),
            32 * (per_layer / 32 * 18) + 2 * rest + 2 * 2 * largest);
  // QLoRA (r 16 on every projection, sequence 512, checkpointing): a bf16
  // base needs more than a 16 GB laptop has; nf4 and q4 fit it, and an 8 GB
  // GPU.
  const LoraShape lora = {16,
                          {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                           "up_proj", "down_proj"}};
  auto total = [&](WeightFormat format) {
    absl::StatusOr<MemoryEstimate> estimate = EstimateTrainingMemory(
        kLlama2_7B, DType::kBFloat16, lora, 1, 512, true, format);
    EXPECT_OK(estimate);
    return estimate.ok() ? estimate->total_bytes() : 0;
  };
  EXPECT_GT(total(WeightFormat::kNone), 14 * kGiB);
  EXPECT_LT(total(WeightFormat::kQ8), 10 * kGiB);
  EXPECT_LT(total(WeightFormat::kQ4), 6 * kGiB);
  EXPECT_LT(total(WeightFormat::kNf4), total(WeightFormat::kQ4));
  // "An 8 billion parameter model on 8 GB of VRAM": with 2k tokens of
  // context (at 4k the KV cache and eager attention's scores add 3 GB).
  absl::StatusOr<MemoryEstimate> inference = EstimateInferenceMemory(
      kLlama2_7B, DType::kBFloat16, 1, 2048, WeightFormat::kNf4);
  ASSERT_OK(inference);
  EXPECT_LT(inference->total_bytes(), 8 * kGiB);
}

TEST(TrainingMemoryTest, GrowsWithBatchSequenceAndDtype) {
  const LoraShape lora = {8, {"q_proj", "v_proj"}};
  auto total = [&](DType dtype, int64_t batch, int64_t sequence) {
    absl::StatusOr<MemoryEstimate> estimate =
        EstimateTrainingMemory(kTinyLlama, dtype, lora, batch, sequence);
    EXPECT_OK(estimate);
    return estimate.ok() ? estimate->total_bytes() : 0;
  };
  EXPECT_LT(total(DType::kBFloat16, 1, 512), total(DType::kBFloat16, 1, 1024));
  EXPECT_LT(total(DType::kBFloat16, 1, 512), total(DType::kBFloat16, 2, 512));
  EXPECT_LT(total(DType::kBFloat16, 1, 512), total(DType::kFloat32, 1, 512));
  absl::StatusOr<MemoryEstimate> inference =
      EstimateInferenceMemory(kTinyLlama, DType::kBFloat16, 1, 512);
  ASSERT_OK(inference);
  EXPECT_GT(total(DType::kBFloat16, 1, 512), inference->total_bytes());
}

TEST(TrainingMemoryTest, RejectsBadWorkloads) {
  EXPECT_THAT(
      EstimateTrainingMemory(kTinyLlama, DType::kBFloat16, {}, 0, 512),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch size")));
  EXPECT_THAT(EstimateInferenceMemory(kTinyLlama, DType::kBFloat16, 1, -1),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sequence length")));
}

TEST(DTypeTest, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(*ParseDType("bf16"), DType::kBFloat16);
  EXPECT_EQ(*ParseDType("float32"), DType::kFloat32);
  EXPECT_EQ(DTypeBytes(DType::kFloat16), 2);
  EXPECT_THAT(ParseDType("int4"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("'int4'")));
}

}  // namespace
}  // namespace openforce
