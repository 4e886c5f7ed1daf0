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
  config.qkv_bias = config.o_bias = true;
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
  EXPECT_TRUE(loaded->layers[1].Bias(Projection::kK).defined());
  EXPECT_TRUE(loaded->layers[1].Bias(Projection::kO).defined());
  EXPECT_FALSE(loaded->layers[1].Bias(Projection::kUp).defined());
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
      ParseLlamaConfig(R"({"hidden_act": "tanh",)" + base + "}", "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("hidden_act"), HasSubstr("\"tanh\""),
                     HasSubstr("silu"))));
  EXPECT_THAT(
      ParseLlamaConfig(
          R"({"rope_scaling": {"type": "longrope", "factor": 2},)" + base + "}",
          "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("rope_scaling"), HasSubstr("'longrope'"),
                     HasSubstr("llama3"))));
  EXPECT_THAT(ParseLlamaConfig(
                  R"({"rope_scaling": {"rope_type": "llama3", "factor": 8},)" +
                      base + "}",
                  "c.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("original_max_position_embeddings")));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"model_type": "gemma3",)" + base + "}", "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("'gemma3'"), HasSubstr("gemma3_text"))));
  EXPECT_THAT(ParseLlamaConfig(R"({"model_type": "mistral",
                                   "attention_bias": true,)" +
                                   base + "}",
                               "c.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("attention_bias")));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"sliding_window": 4,)" + base + "}", "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("sliding_window")));
  EXPECT_THAT(ParseLlamaConfig(R"({"model_type": "mistral",
                                   "layer_types": ["chunked_attention"],
                                   "sliding_window": 4,)" +
                                   base + "}",
                               "c.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("chunked_attention")));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"partial_rotary_factor": 0.3,)" + base + "}",
                       "c.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be even")));
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
  EXPECT_TRUE(qwen->qkv_bias);
  EXPECT_FALSE(qwen->o_bias);
}

TEST(LlamaConfigTest, ReadsEachFamilysSwitches) {
  const std::string base =
      R"("vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
      "num_hidden_layers": 4, "num_attention_heads": 2)";
  absl::StatusOr<LlamaConfig> llama = ParseLlamaConfig(
      R"({"attention_bias": true, "mlp_bias": true,
          "rope_scaling": {"type": "dynamic", "factor": 2.0},)" +
          base + "}",
      "c.json");
  ASSERT_OK(llama);
  EXPECT_TRUE(llama->qkv_bias && llama->o_bias && llama->mlp_bias);
  EXPECT_EQ(llama->rope_scaling.type, RopeType::kDynamic);

  absl::StatusOr<LlamaConfig> qwen2 = ParseLlamaConfig(
      R"({"model_type": "qwen2", "use_sliding_window": true,
          "sliding_window": 16, "max_window_layers": 2,)" +
          base + "}",
      "c.json");
  ASSERT_OK(qwen2);
  EXPECT_EQ(qwen2->sliding_window, 16);
  EXPECT_EQ(qwen2->layer_is_sliding,
            (std::vector<bool>{false, false, true, true}));
  absl::StatusOr<LlamaConfig> qwen2_off = ParseLlamaConfig(
      R"({"model_type": "qwen2", "use_sliding_window": false,
          "sliding_window": 16, "max_window_layers": 2,)" +
          base + "}",
      "c.json");
  ASSERT_OK(qwen2_off);
  EXPECT_FALSE(qwen2_off->HasSlidingLayers());

  absl::StatusOr<LlamaConfig> gemma = ParseLlamaConfig(
      R"({"model_type": "gemma3_text", "sliding_window_pattern": 2,
          "sliding_window": 3, "head_dim": 4,)" +
          base + "}",
      "c.json");
  ASSERT_OK(gemma);
  EXPECT_EQ(gemma->layer_is_sliding,
            (std::vector<bool>{true, false, true, false}));
  EXPECT_TRUE(gemma->gemma_norms && gemma->qk_norm &&
              gemma->tie_word_embeddings);
  EXPECT_EQ(gemma->hidden_act, Activation::kGeluTanh);
  EXPECT_DOUBLE_EQ(gemma->AttentionScale(), 1.0 / 16.0);  // 256^-0.5

  absl::StatusOr<LlamaConfig> yarn = ParseLlamaConfig(
      R"({"model_type": "qwen3", "partial_rotary_factor": 0.5,
          "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                           "original_max_position_embeddings": 32},)" +
          base + "}",
      "c.json");
  ASSERT_OK(yarn);
  EXPECT_EQ(yarn->RotaryDim(), 2);
  EXPECT_EQ(yarn->rope_scaling.original_max_position_embeddings, 32);
  EXPECT_TRUE(yarn->qk_norm);
}

// What LlamaConfigToJson writes reads back the same, for every family.
TEST(LlamaConfigTest, RoundTripsEveryFamily) {
  for (const char* family :
       {"llama", "mistral", "qwen2", "qwen3", "gemma3_text"}) {
    LlamaConfig config;
    config.model_type = family;
    ApplyFamilyDefaults(&config);
    config.vocab_size = 32;
    config.hidden_size = 16;
    config.intermediate_size = 24;
    config.num_hidden_layers = 3;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.head_dim = 8;
    config.rope_scaling.type = RopeType::kLlama3;
    config.rope_scaling.factor = 8;
    config.rope_scaling.original_max_position_embeddings = 64;
    config.layer_is_sliding.assign(3, false);
    if (config.model_type != "llama") {
      config.sliding_window = 5;
      config.layer_is_sliding = {true, false, true};
    }
    absl::StatusOr<LlamaConfig> reread =
        ParseLlamaConfig(LlamaConfigToJson(config), family);
    ASSERT_OK(reread);
    EXPECT_EQ(reread->model_type, family);
    EXPECT_EQ(reread->head_dim, 8) << family;
    EXPECT_EQ(reread->rope_scaling.type, RopeType::kLlama3) << family;
    EXPECT_EQ(reread->layer_is_sliding, config.layer_is_sliding) << family;
    EXPECT_EQ(reread->sliding_window, config.sliding_window) << family;
    EXPECT_EQ(reread->qkv_bias, config.qkv_bias) << family;
    EXPECT_EQ(reread->qk_norm, config.qk_norm) << family;
    EXPECT_EQ(reread->gemma_norms, config.gemma_norms) << family;
  }
}

// transformers' Llama puts attention_bias on q, k, v and o, and mlp_bias on
// gate, up and down: the files carry them and the forward adds them.
TEST(LlamaBiasTest, AttentionAndMlpBiasesAreWrittenReadAndApplied) {
  testing::TempDir dir;
  LlamaConfig biased = testing::TinyLlamaConfig();
  biased.qkv_bias = biased.o_bias = biased.mlp_bias = true;
  ASSERT_OK(
      SaveLlamaCheckpoint(dir.path(), biased, RandomLlamaWeights(biased, 9)));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(dir.Join("model.safetensors"));
  ASSERT_OK(file);
  for (const char* name : {"model.layers.0.self_attn.o_proj.bias",
                           "model.layers.1.mlp.gate_proj.bias",
                           "model.layers.1.mlp.down_proj.bias"}) {
    EXPECT_TRUE((*file)->Contains(name)) << name;
  }
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(dir.path(), {});
  ASSERT_OK(model);
  ASSERT_TRUE((*model)->config().o_bias && (*model)->config().mlp_bias);

  // Zero biases give exactly the unbiased model; each bias then moves the
  // logits.
  LlamaConfig plain = testing::TinyLlamaConfig();
  LlamaWeights weights = (*model)->weights();
  for (LayerWeights& layer : weights.layers) {
    for (at::Tensor& bias : layer.bias) bias = at::Tensor();
  }
  LlamaModel unbiased(plain, weights);
  for (LayerWeights& layer : (*model)->weights().layers) {
    for (at::Tensor& bias : layer.bias) bias.zero_();
  }
  const at::Tensor ids = at::arange(3, 11, at::kLong).unsqueeze(0);
  ForwardOptions options;
  const at::Tensor reference = unbiased.Forward(ids, options);
  EXPECT_TRUE(at::equal((*model)->Forward(ids, options), reference));
  for (Projection p : {Projection::kO, Projection::kDown, Projection::kGate}) {
    at::Tensor bias = (*model)->weights().layers[0].bias[static_cast<int>(p)];
    bias.fill_(0.5);
    EXPECT_FALSE(
        testing::TensorsNear((*model)->Forward(ids, options), reference, 1e-3))
        << ProjectionName(p);
    bias.zero_();
  }
}

}  // namespace
}  // namespace openforce::lora
