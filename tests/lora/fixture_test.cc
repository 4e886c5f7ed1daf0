// Conformance with every ../shared/fixtures/hf-* checkpoint, made by another
// implementation (transformers' eager forward of each family and PEFT's LoRA
// forward, fp32): config, rotary tables, base and adapter logits within the
// fixture's tolerance, merged and unmerged adapters, the KV cache (sliding
// windows included), greedy tokens, and PEFT files that round-trip unchanged.
// Fixture directories are discovered, so a new one is tested without a change
// here.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/file_util.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/rotary.h"
#include "lora/safetensors.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_matchers.h"

namespace openforce::lora {
namespace {

const std::string kFixtures = OPENFORCE_FIXTURE_DIR;

std::vector<std::string> FixtureNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kFixtures)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("hf-", 0) == 0 &&
        std::filesystem::exists(entry.path() / "expected.json")) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

class HfFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = kFixtures + "/" + GetParam();
    absl::StatusOr<std::string> text =
        ReadFileToString(dir_ + "/expected.json");
    ASSERT_OK(text);
    expected_ = nlohmann::json::parse(*text);
    tolerance_ = expected_["tolerance_abs"].get<double>();
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> logits =
        SafetensorsFile::Open(dir_ + "/expected_logits.safetensors");
    ASSERT_OK(logits);
    logits_file_ = *std::move(logits);
    input_ids_ = (*logits_file_->Tensor("input_ids")).to(at::kLong);
    logits_base_ = *logits_file_->Tensor("logits_base");
    logits_adapter_ = *logits_file_->Tensor("logits_adapter");
    absl::StatusOr<std::unique_ptr<LlamaModel>> model =
        LlamaModel::Load(dir_, {});
    ASSERT_OK(model);
    model_ = *std::move(model);
    absl::StatusOr<LoraAdapter> adapter =
        LoraAdapter::Load(dir_ + "/adapter", model_->config());
    ASSERT_OK(adapter);
    adapter_ = std::make_unique<LoraAdapter>(*std::move(adapter));
  }

  // Argmax continuation of the fixture's prompt, recomputing the whole
  // sequence each step as the fixture did, or through the KV cache.
  // The cached run is the decoding path generation takes (no autograd).
  std::vector<int64_t> Greedy(const LoraAdapter* adapter, bool use_cache) {
    std::optional<at::NoGradGuard> no_grad;
    if (use_cache) no_grad.emplace();
    std::vector<int64_t> tokens =
        expected_["prompt"].get<std::vector<int64_t>>();
    const size_t prompt_length = tokens.size();
    const size_t count = expected_["greedy_base"].size();
    KvCache cache = KvCache::Create(model_->config(), 1, prompt_length + count,
                                    at::kFloat, at::kCPU);
    for (size_t step = 0; step < count; ++step) {
      ForwardOptions options;
      options.adapter = adapter;
      at::Tensor input;
      if (use_cache) {
        options.cache = &cache;
        const int64_t start = cache.length;
        input = at::tensor(
                    std::vector<int64_t>(tokens.begin() + start, tokens.end()))
                    .unsqueeze(0);
      } else {
        input = at::tensor(tokens).unsqueeze(0);
      }
      at::Tensor logits = model_->Forward(input, options);
      tokens.push_back(logits[0][-1].argmax().item<int64_t>());
    }
    return std::vector<int64_t>(tokens.begin() + prompt_length, tokens.end());
  }

  std::string dir_;
  nlohmann::json expected_;
  double tolerance_ = 0;
  std::unique_ptr<SafetensorsFile> logits_file_;
  at::Tensor input_ids_, logits_base_, logits_adapter_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<LoraAdapter> adapter_;
};

TEST_P(HfFixtureTest, RotaryTablesMatch) {
  const LlamaConfig& c = model_->config();
  at::Tensor positions = at::arange(input_ids_.size(1), at::kFloat);
  ASSERT_TRUE(logits_file_->Contains("rope_cos") ||
              GetParam() == "hf-llama-tiny");
  if (!logits_file_->Contains("rope_cos")) return;
  at::Tensor cos, sin;
  RotaryTables(
      ComputeRotaryFrequencies(c.rope_scaling, c.rope_theta, c.RotaryDim(),
                               c.max_position_embeddings, input_ids_.size(1)),
      positions, &cos, &sin);
  EXPECT_TRUE(
      testing::TensorsNear(cos, *logits_file_->Tensor("rope_cos"), 1e-6));
  EXPECT_TRUE(
      testing::TensorsNear(sin, *logits_file_->Tensor("rope_sin"), 1e-6));
  if (logits_file_->Contains("rope_cos_local")) {
    ASSERT_GT(c.rope_local_base_freq, 0);
    RotaryTables(
        ComputeRotaryFrequencies(RopeScaling(), c.rope_local_base_freq,
                                 c.RotaryDim(), c.max_position_embeddings, 0),
        positions, &cos, &sin);
    EXPECT_TRUE(testing::TensorsNear(
        cos, *logits_file_->Tensor("rope_cos_local"), 1e-6));
    EXPECT_TRUE(testing::TensorsNear(
        sin, *logits_file_->Tensor("rope_sin_local"), 1e-6));
  }
}

TEST_P(HfFixtureTest, BaseLogitsMatch) {
  ForwardOptions options;
  at::Tensor logits = model_->Forward(input_ids_, options);
  EXPECT_TRUE(testing::TensorsNear(logits, logits_base_, tolerance_));
}

TEST_P(HfFixtureTest, PeftAdapterLogitsMatchMergedAndUnmerged) {
  ForwardOptions options;
  options.adapter = adapter_.get();
  EXPECT_TRUE(testing::TensorsNear(model_->Forward(input_ids_, options),
                                   logits_adapter_, tolerance_));
  ASSERT_OK(adapter_->Merge(&model_->weights()));
  ForwardOptions merged;
  EXPECT_TRUE(testing::TensorsNear(model_->Forward(input_ids_, merged),
                                   logits_adapter_, tolerance_));
  ASSERT_OK(adapter_->Unmerge(&model_->weights()));
  EXPECT_TRUE(testing::TensorsNear(model_->Forward(input_ids_, merged),
                                   logits_base_, tolerance_));
}

TEST_P(HfFixtureTest, CachedIncrementalLogitsMatchTheFullPass) {
  for (const bool with_adapter : {false, true}) {
    KvCache cache =
        KvCache::Create(model_->config(), 2, 16, at::kFloat, at::kCPU);
    ForwardOptions options;
    options.cache = &cache;
    options.adapter = with_adapter ? adapter_.get() : nullptr;
    // A prompt of 3, a chunk of 4 (a multi-position step over a cache), then
    // one position at a time: every path through the cache and the masks.
    std::vector<at::Tensor> pieces = {
        model_->Forward(input_ids_.narrow(1, 0, 3), options),
        model_->Forward(input_ids_.narrow(1, 3, 4), options)};
    for (int64_t t = 7; t < 12; ++t) {
      pieces.push_back(model_->Forward(input_ids_.narrow(1, t, 1), options));
    }
    EXPECT_TRUE(testing::TensorsNear(
        at::cat(pieces, 1), with_adapter ? logits_adapter_ : logits_base_,
        tolerance_))
        << (with_adapter ? "adapter" : "base");
  }
}

TEST_P(HfFixtureTest, GreedyTokensMatch) {
  const auto base = expected_["greedy_base"].get<std::vector<int64_t>>();
  const auto tuned = expected_["greedy_adapter"].get<std::vector<int64_t>>();
  EXPECT_EQ(Greedy(nullptr, /*use_cache=*/false), base);
  EXPECT_EQ(Greedy(nullptr, /*use_cache=*/true), base);
  EXPECT_EQ(Greedy(adapter_.get(), /*use_cache=*/false), tuned);
  EXPECT_EQ(Greedy(adapter_.get(), /*use_cache=*/true), tuned);
}

TEST_P(HfFixtureTest, PeftAdapterRoundTripsUnchanged) {
  testing::TempDir out;
  ASSERT_OK(adapter_->Save(out.path()));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> original =
      SafetensorsFile::Open(dir_ + "/adapter/adapter_model.safetensors");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> saved =
      SafetensorsFile::Open(out.Join("adapter_model.safetensors"));
  ASSERT_OK(original);
  ASSERT_OK(saved);
  ASSERT_EQ((*original)->entries().size(), (*saved)->entries().size());
  for (const auto& [name, entry] : (*original)->entries()) {
    ASSERT_TRUE((*saved)->Contains(name)) << name;
    EXPECT_TRUE(at::equal(*(*original)->Tensor(name), *(*saved)->Tensor(name)))
        << name;
  }
  absl::StatusOr<LoraAdapter> reloaded =
      LoraAdapter::Load(out.path(), model_->config());
  ASSERT_OK(reloaded);
  EXPECT_EQ(reloaded->config().rank, adapter_->config().rank);
  EXPECT_EQ(reloaded->config().alpha, adapter_->config().alpha);
  EXPECT_EQ(reloaded->config().targets, adapter_->config().targets);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFixtureTest,
                         ::testing::ValuesIn(FixtureNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// Every family the fixtures stand for is present: a missing directory would
// otherwise shrink the suite silently.
TEST(HfFixtures, EveryFamilyIsPresent) {
  const std::vector<std::string> names = FixtureNames();
  for (const char* expected :
       {"hf-gemma3-text", "hf-llama-tiny", "hf-llama3-rope-scaling",
        "hf-mistral-sliding-window", "hf-qwen3"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end())
        << expected;
  }
}

TEST(HfFixtures, ConfigsAreReadAsWritten) {
  absl::StatusOr<LlamaConfig> llama3 =
      LoadLlamaConfig(kFixtures + "/hf-llama3-rope-scaling");
  ASSERT_OK(llama3);
  EXPECT_EQ(llama3->rope_scaling.type, RopeType::kLlama3);
  EXPECT_EQ(llama3->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_TRUE(llama3->tie_word_embeddings);
  absl::StatusOr<LlamaConfig> mistral =
      LoadLlamaConfig(kFixtures + "/hf-mistral-sliding-window");
  ASSERT_OK(mistral);
  EXPECT_EQ(mistral->sliding_window, 5);
  EXPECT_EQ(mistral->layer_is_sliding, (std::vector<bool>{true, true}));
  absl::StatusOr<LlamaConfig> qwen3 = LoadLlamaConfig(kFixtures + "/hf-qwen3");
  ASSERT_OK(qwen3);
  EXPECT_EQ(qwen3->head_dim, 32);
  EXPECT_TRUE(qwen3->qk_norm);
  EXPECT_FALSE(qwen3->HasSlidingLayers());
  absl::StatusOr<LlamaConfig> gemma =
      LoadLlamaConfig(kFixtures + "/hf-gemma3-text");
  ASSERT_OK(gemma);
  EXPECT_EQ(gemma->layer_is_sliding, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(gemma->sliding_window, 4);
  EXPECT_DOUBLE_EQ(gemma->AttentionScale(), 1.0 / std::sqrt(24.0));
  EXPECT_EQ(gemma->rope_scaling.type, RopeType::kLinear);
  absl::StatusOr<LlamaConfig> tiny =
      LoadLlamaConfig(kFixtures + "/hf-llama-tiny");
  ASSERT_OK(tiny);
  EXPECT_EQ(tiny->head_dim, 16);
  EXPECT_FALSE(tiny->tie_word_embeddings);
}

}  // namespace
}  // namespace openforce::lora
