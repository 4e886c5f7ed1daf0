// Hugging Face checkpoints: written and loaded back identical, sharded indexes,
// and checkpoints that contradict config.json rejected with the file and tensor
// named.
#include "lora/checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "lora/llama_model.h"
#include "lora/safetensors.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_matchers.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

class CheckpointTest : public ::testing::Test {
 protected:
  LlamaConfig config_ = testing::TinyLlamaConfig();
  testing::TempDir dir_;
};

TEST_F(CheckpointTest, WriteThenLoadGivesIdenticalTensors) {
  const LlamaWeights written = RandomLlamaWeights(config_, 11);
  ASSERT_OK(SaveLlamaCheckpoint(dir_.path(), config_, written));
  absl::StatusOr<LlamaConfig> config = LoadLlamaConfig(dir_.path());
  ASSERT_OK(config);
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->head_dim, 8);
  absl::StatusOr<LlamaWeights> loaded =
      LoadLlamaWeights(dir_.path(), *config, {});
  ASSERT_OK(loaded);
  EXPECT_TRUE(
      testing::TensorsEqual(loaded->embed_tokens, written.embed_tokens));
  EXPECT_TRUE(testing::TensorsEqual(loaded->lm_head, written.lm_head));
  EXPECT_TRUE(testing::TensorsEqual(loaded->final_norm, written.final_norm));
  for (size_t layer = 0; layer < written.layers.size(); ++layer) {
    for (Projection p : kAllProjections) {
      EXPECT_TRUE(testing::TensorsEqual(loaded->layers[layer][p],
                                        written.layers[layer][p]))
          << ProjectionName(p);
    }
  }
}

// True when `address` lies in a mapping of `path` in this process
// (/proc/self/maps).
bool IsMappedFrom(const void* address, const std::string& path) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const auto value = reinterpret_cast<uintptr_t>(address);
  while (std::getline(maps, line)) {
    if (line.find(path) == std::string::npos) continue;
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &begin, &end) == 2 &&
        value >= begin && value < end) {
      return true;
    }
  }
  return false;
}

TEST_F(CheckpointTest, Float32WeightsAreViewsOfTheMappedFileNotCopies) {
  ASSERT_OK(SaveLlamaCheckpoint(dir_.path(), config_,
                                RandomLlamaWeights(config_, 3)));
  absl::StatusOr<LlamaWeights> loaded =
      LoadLlamaWeights(dir_.path(), config_, {});
  ASSERT_OK(loaded);
  const std::string file = dir_.Join("model.safetensors");
  EXPECT_TRUE(
      IsMappedFrom(loaded->layers[1][Projection::kDown].data_ptr(), file));
  EXPECT_TRUE(IsMappedFrom(loaded->embed_tokens.data_ptr(), file));
  // Converting to another dtype has to copy.
  LoadOptions bf16;
  bf16.dtype = at::kBFloat16;
  absl::StatusOr<LlamaWeights> converted =
      LoadLlamaWeights(dir_.path(), config_, bf16);
  ASSERT_OK(converted);
  EXPECT_FALSE(
      IsMappedFrom(converted->layers[1][Projection::kDown].data_ptr(), file));
}

TEST_F(CheckpointTest, ConvertsToTheComputeDtype) {
  ASSERT_OK(SaveLlamaCheckpoint(dir_.path(), config_,
                                RandomLlamaWeights(config_, 3)));
  LoadOptions options;
  options.dtype = at::kBFloat16;
  absl::StatusOr<LlamaWeights> loaded =
      LoadLlamaWeights(dir_.path(), config_, options);
  ASSERT_OK(loaded);
  EXPECT_EQ(loaded->layers[0][Projection::kQ].scalar_type(), at::kBFloat16);
}

TEST_F(CheckpointTest, TiedEmbeddingsAndAttentionBias) {
  LlamaConfig config = config_;
  config.tie_word_embeddings = true;
  config.attention_bias = true;
  ASSERT_OK(
      SaveLlamaCheckpoint(dir_.path(), config, RandomLlamaWeights(config, 5)));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir_.Join("model.safetensors"));
  ASSERT_OK(file);
  EXPECT_FALSE((*file)->Contains("lm_head.weight"));
  EXPECT_TRUE((*file)->Contains("model.layers.1.self_attn.k_proj.bias"));
  absl::StatusOr<LlamaConfig> reread = LoadLlamaConfig(dir_.path());
  ASSERT_OK(reread);
  absl::StatusOr<LlamaWeights> loaded =
      LoadLlamaWeights(dir_.path(), *reread, {});
  ASSERT_OK(loaded);
  EXPECT_TRUE(loaded->lm_head.is_same(loaded->embed_tokens));
  EXPECT_TRUE(loaded->layers[1].k_bias.defined());
}

TEST_F(CheckpointTest, LoadsShardedCheckpoints) {
  const LlamaWeights weights = RandomLlamaWeights(config_, 9);
  ASSERT_OK(SaveLlamaCheckpoint(dir_.Join("single"), config_, weights));
  auto single = *SafetensorsFile::Open(dir_.Join("single/model.safetensors"));
  // Split into two shards with an index, as transformers does for large models.
  std::vector<std::pair<std::string, at::Tensor>> first, second;
  nlohmann::json weight_map;
  for (const auto& [name, entry] : single->entries()) {
    const bool in_first = name.find("layers.1.") == std::string::npos;
    (in_first ? first : second).emplace_back(name, *single->Tensor(name));
    weight_map[name] = in_first ? "model-00001-of-00002.safetensors"
                                : "model-00002-of-00002.safetensors";
  }
  const std::string sharded = dir_.Join("sharded");
  ASSERT_OK(MakeDirectories(sharded));
  ASSERT_OK(
      WriteSafetensors(sharded + "/model-00001-of-00002.safetensors", first));
  ASSERT_OK(
      WriteSafetensors(sharded + "/model-00002-of-00002.safetensors", second));
  dir_.WriteFile("sharded/model.safetensors.index.json",
                 nlohmann::json{{"metadata", {{"total_size", 0}}},
                                {"weight_map", weight_map}}
                     .dump());
  dir_.WriteFile("sharded/config.json", LlamaConfigToJson(config_));
  absl::StatusOr<LlamaWeights> loaded = LoadLlamaWeights(sharded, config_, {});
  ASSERT_OK(loaded);
  EXPECT_TRUE(testing::TensorsEqual(loaded->layers[1][Projection::kDown],
                                    weights.layers[1][Projection::kDown]));

  // An index that points at a shard lacking the tensor is an error naming both.
  weight_map["model.norm.weight"] = "model-00002-of-00002.safetensors";
  dir_.WriteFile("sharded/model.safetensors.index.json",
                 nlohmann::json{{"weight_map", weight_map}}.dump());
  EXPECT_THAT(
      LoadLlamaWeights(sharded, config_, {}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("model.norm.weight"), HasSubstr("lacks it"))));
}

TEST_F(CheckpointTest, RejectsShapeThatContradictsConfig) {
  ASSERT_OK(SaveLlamaCheckpoint(dir_.path(), config_,
                                RandomLlamaWeights(config_, 1)));
  LlamaConfig wider = config_;
  wider.intermediate_size = 96;
  EXPECT_THAT(LoadLlamaWeights(dir_.path(), wider, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model.safetensors"),
                             HasSubstr("model.layers.0.mlp.gate_proj.weight"),
                             HasSubstr("[64, 32]"), HasSubstr("[96, 32]"))));
}

TEST_F(CheckpointTest, RejectsMissingAndUnexpectedTensors) {
  ASSERT_OK(SaveLlamaCheckpoint(dir_.path(), config_,
                                RandomLlamaWeights(config_, 1)));
  LlamaConfig deeper = config_;
  deeper.num_hidden_layers = 3;
  EXPECT_THAT(
      LoadLlamaWeights(dir_.path(), deeper, {}),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("lacks tensor 'model.layers.2.input_layernorm.weight'")));
  LlamaConfig shallower = config_;
  shallower.num_hidden_layers = 1;
  EXPECT_THAT(LoadLlamaWeights(dir_.path(), shallower, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unexpected tensor"),
                             HasSubstr("model.layers.1."))));
}

TEST(LlamaConfigTest, RejectsWhatTheEngineWouldComputeWrongly) {
  const std::string base =
      R"("vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2)";
  EXPECT_OK(ParseLlamaConfig("{" + base + "}", "c.json"));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"model_type": "gpt2",)" + base + "}", "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'gpt2'")));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"hidden_act": "gelu",)" + base + "}", "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden_act")));
  EXPECT_THAT(
      ParseLlamaConfig(
          R"({"rope_scaling": {"type": "linear", "factor": 2},)" + base + "}",
          "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rope_scaling")));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"num_key_value_heads": 3,)" + base + "}", "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("c.json"), HasSubstr("num_key_value_heads 3"))));
  EXPECT_THAT(ParseLlamaConfig(R"({"vocab_size": 8})", "c.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("missing 'hidden_size'")));
  absl::StatusOr<LlamaConfig> qwen =
      ParseLlamaConfig(R"({"model_type": "qwen2",)" + base + "}", "c.json");
  ASSERT_OK(qwen);
  EXPECT_TRUE(qwen->attention_bias);
}

}  // namespace
}  // namespace openforce::lora
