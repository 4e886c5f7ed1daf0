// The engine on a GPU (CUDA, or ROCm through HIP, which libtorch exposes as the
// cuda device): the conformance fixture's logits, KV-cache generation, and a
// training step. Labelled gpu; scripts/test.sh leaves it out on machines
// without one.
#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <gtest/gtest.h>

#include <optional>

#include "lora/generation.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/quantized_matrix.h"
#include "lora/safetensors.h"
#include "lora/trainer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tensor_matchers.h"

namespace openforce::lora {
namespace {

const std::string kFixture = OPENFORCE_FIXTURE_DIR "/hf-llama-tiny";

// Eight sequences of a fixed pattern the adapter can learn.
std::vector<Example> PatternExamples() {
  std::vector<Example> data;
  for (int i = 0; i < 8; ++i) {
    Example example;
    for (int t = 0; t < 16; ++t)
      example.input_ids.push_back((i * 7 + t * 3) % 320);
    example.labels = example.input_ids;
    data.push_back(example);
  }
  return data;
}

// Loads the fixture on the device in bf16 (its projections in `format`),
// trains a fresh adapter 20 steps of the pattern data with `training`, and
// expects the last loss below the first. Returns the adapter (none when
// loading failed, which is reported).
std::optional<LoraAdapter> ExpectLossFallsOnTheDevice(
    WeightFormat format, TrainingOptions training) {
  LoadOptions options;
  options.device = "cuda";
  options.dtype = at::kBFloat16;
  options.quantization = format;
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(kFixture, options);
  EXPECT_OK(model);
  if (!model.ok()) return std::nullopt;
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create((*model)->config(), {}, 1, "cuda");
  EXPECT_OK(adapter);
  if (!adapter.ok()) return std::nullopt;
  training.max_steps = 20;
  training.learning_rate = 1e-2;
  auto trainer =
      *Trainer::Create(model->get(), &*adapter, PatternExamples(), training);
  double first = 0, last = 0;
  for (int i = 0; i < training.max_steps; ++i) {
    absl::StatusOr<StepMetrics> metrics = trainer->Step();
    EXPECT_OK(metrics);
    if (!metrics.ok()) break;
    if (i == 0) first = metrics->loss;
    last = metrics->loss;
  }
  EXPECT_LT(last, first);
  return *std::move(adapter);
}

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(at::detail::getCUDAHooks().hasCUDA())
        << "this libtorch has no CUDA/ROCm device; build against a GPU "
           "libtorch";
  }
};

TEST_F(GpuTest, FixtureLogitsMatchOnTheDevice) {
  auto expected =
      *SafetensorsFile::Open(kFixture + "/expected_logits.safetensors");
  const at::Tensor ids = (*expected->Tensor("input_ids")).to(at::kLong);
  LoadOptions options;
  options.device = "cuda";
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(kFixture, options);
  ASSERT_OK(model);
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Load(kFixture + "/adapter", (*model)->config(), "cuda");
  ASSERT_OK(adapter);
  ForwardOptions forward;
  forward.adapter = &*adapter;
  const at::Tensor logits = (*model)->Forward(ids, forward).cpu();
  // TF32 and reduction order differ from the CPU; the fixture's 1e-4 stays the
  // bar.
  EXPECT_TRUE(
      testing::TensorsNear(logits, *expected->Tensor("logits_adapter"), 1e-3));

  GenerationOptions cached;
  cached.max_new_tokens = 12;
  cached.adapter = &*adapter;
  GenerationOptions full = cached;
  full.use_kv_cache = false;
  const std::vector<int64_t> prompt = {159, 187, 270, 288, 174, 164};
  EXPECT_EQ(Generate(**model, prompt, cached)->tokens,
            Generate(**model, prompt, full)->tokens);
}

TEST_F(GpuTest, TrainsInBfloat16OnTheDevice) {
  const std::optional<LoraAdapter> adapter =
      ExpectLossFallsOnTheDevice(WeightFormat::kNone, TrainingOptions());
  ASSERT_TRUE(adapter.has_value());
  EXPECT_EQ(adapter->Find(0, Projection::kQ)->a.scalar_type(), at::kFloat);
}

// A quantized base on the device: the codes live there, each projection is
// dequantized into bf16 when it runs (never the whole model), the result
// matches the CPU's quantized model, and QLoRA trains through it with
// gradient checkpointing.
TEST_F(GpuTest, QuantizedBaseRunsAndTrainsOnTheDevice) {
  auto expected =
      *SafetensorsFile::Open(kFixture + "/expected_logits.safetensors");
  const at::Tensor ids = (*expected->Tensor("input_ids")).to(at::kLong);
  for (WeightFormat format :
       {WeightFormat::kQ8, WeightFormat::kQ4, WeightFormat::kNf4}) {
    SCOPED_TRACE(WeightFormatName(format));
    LoadOptions cpu_options;
    cpu_options.quantization = format;
    LoadOptions gpu_options = cpu_options;
    gpu_options.device = "cuda";
    absl::StatusOr<std::unique_ptr<LlamaModel>> on_cpu =
        LlamaModel::Load(kFixture, cpu_options);
    absl::StatusOr<std::unique_ptr<LlamaModel>> on_gpu =
        LlamaModel::Load(kFixture, gpu_options);
    ASSERT_OK(on_cpu);
    ASSERT_OK(on_gpu);
    const QuantizedMatrix& q =
        (*on_gpu)->weights().layers[0].Quantized(Projection::kQ);
    ASSERT_TRUE(q.defined());
    EXPECT_TRUE(q.codes.is_cuda());
    // The same quantized base, wherever it runs.
    EXPECT_EQ((*on_gpu)->weights().quantized_sha256,
              (*on_cpu)->weights().quantized_sha256);
    ForwardOptions forward;
    EXPECT_TRUE(
        testing::TensorsNear((*on_gpu)->Forward(ids.cuda(), forward).cpu(),
                             (*on_cpu)->Forward(ids, forward), 1e-3));
  }

  TrainingOptions training;
  training.gradient_checkpointing = true;
  EXPECT_TRUE(ExpectLossFallsOnTheDevice(WeightFormat::kNf4, training));
}

}  // namespace
}  // namespace openforce::lora
