// A model of real size: a checkpoint with Llama-3.2-1B's exact config (llama3
// rope scaling, tied embeddings, vocab 128256, BF16, random weights in
// Hugging Face layout over 2 shards) loads by memory-mapping the shards,
// trains 5 LoRA steps at sequence 512 (with gradient checkpointing, as a
// small machine would), and generates. Slow: about 2.5 GB written and a
// few minutes of bf16 compute on 2 cores.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/file_util.h"
#include "lora/generation.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/trainer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

// Resident set size of this process, from /proc/self/statm.
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

TEST(Llama1BTest, LoadsByMmapTrainsAndGenerates) {
  testing::TempDir dir;
  const LlamaConfig config = testing::Llama32OneBConfig();
  {
    LlamaWeights weights = RandomLlamaWeights(config, 32, at::kBFloat16);
    ASSERT_OK(SaveLlamaCheckpoint(dir.path(), config, weights, 2));
  }
  absl::StatusOr<std::string> index =
      ReadFileToString(dir.Join("model.safetensors.index.json"));
  ASSERT_OK(index);
  const nlohmann::json weight_map = nlohmann::json::parse(*index)["weight_map"];
  EXPECT_EQ(weight_map["model.embed_tokens.weight"],
            "model-00001-of-00002.safetensors");
  EXPECT_EQ(weight_map["model.norm.weight"],
            "model-00002-of-00002.safetensors");
  EXPECT_FALSE(weight_map.contains("lm_head.weight"));  // tied

  const uint64_t before = ResidentBytes();
  LoadOptions load;
  load.dtype = at::kBFloat16;
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(dir.path(), load);
  ASSERT_OK(model);
  const uint64_t after = ResidentBytes();
  const LlamaConfig& loaded = (*model)->config();
  EXPECT_EQ(loaded.rope_scaling.type, RopeType::kLlama3);
  EXPECT_EQ(loaded.vocab_size, 128256);
  // 2.47 GB of bf16 weights; mapped, not read: the pages stay on disk until
  // touched.
  EXPECT_LT(after - std::min(after, before), 256ull << 20);
  EXPECT_EQ(BaseParameterCount(loaded.Shape()), 1235814400);

  LoraConfig lora;
  lora.rank = 16;
  lora.alpha = 32;
  lora.targets = {Projection::kQ, Projection::kK, Projection::kV,
                  Projection::kO};
  absl::StatusOr<LoraAdapter> adapter = LoraAdapter::Create(loaded, lora, 5);
  ASSERT_OK(adapter);
  std::vector<Example> data;
  for (int i = 0; i < 5; ++i) {
    Example example;
    for (int t = 0; t < 512; ++t) {
      example.input_ids.push_back((i * 7919 + t * 104729) % 128000);
    }
    example.labels = example.input_ids;
    data.push_back(example);
  }
  TrainingOptions options;
  options.max_steps = 5;
  options.batch_size = 1;
  options.learning_rate = 1e-3;
  options.gradient_checkpointing = true;
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(model->get(), &*adapter, data, options);
  ASSERT_OK(trainer);
  for (int step = 0; step < options.max_steps; ++step) {
    absl::StatusOr<StepMetrics> metrics = (*trainer)->Step();
    ASSERT_OK(metrics);
    EXPECT_TRUE(std::isfinite(metrics->loss));
    EXPECT_GT(metrics->grad_norm, 0);
    EXPECT_EQ(metrics->tokens, 511);
  }
  // Trained: B left zero.
  EXPECT_GT(adapter->Find(0, Projection::kQ)->b.abs().max().item<float>(), 0);

  GenerationOptions generation;
  generation.max_new_tokens = 8;
  generation.adapter = &*adapter;
  absl::StatusOr<GenerationResult> result =
      Generate(**model, {128000, 791, 4062, 14198, 39935}, generation);
  ASSERT_OK(result);
  ASSERT_EQ(result->tokens.size(), 8u);
  for (int64_t token : result->tokens) {
    EXPECT_GE(token, 0);
    EXPECT_LT(token, 128256);
  }
}

}  // namespace
}  // namespace openforce::lora
