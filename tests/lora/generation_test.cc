// Generation: the KV cache changes nothing but speed, sampling is reproducible
// for a seed, stop tokens and callbacks end generation, and merged adapters
// give the same tokens.
#include "lora/generation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"
#include "tests/testing/tensor_matchers.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

class GenerationTest : public ::testing::Test {
 protected:
  GenerationTest() {
    config_ = testing::TinyLlamaConfig();
    config_.qkv_bias = true;  // exercise the Qwen2-style bias path too
    model_ =
        std::make_unique<LlamaModel>(config_, RandomLlamaWeights(config_, 21));
  }
  LlamaConfig config_;
  std::unique_ptr<LlamaModel> model_;
  const std::vector<int64_t> prompt_ = {1, 72, 101, 108, 108, 111};
};

TEST_F(GenerationTest, KvCacheEqualsFullRecomputation) {
  GenerationOptions cached;
  cached.max_new_tokens = 20;
  GenerationOptions recomputed = cached;
  recomputed.use_kv_cache = false;
  absl::StatusOr<GenerationResult> a = Generate(*model_, prompt_, cached);
  absl::StatusOr<GenerationResult> b = Generate(*model_, prompt_, recomputed);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->tokens.size(), 20u);
  EXPECT_EQ(a->stop_reason, "max_new_tokens");

  // Logits, step by step, within 1e-5.
  std::vector<int64_t> sequence = prompt_;
  sequence.insert(sequence.end(), a->tokens.begin(), a->tokens.end());
  const at::Tensor ids = at::tensor(sequence, at::kLong).unsqueeze(0);
  ForwardOptions full_options;
  const at::Tensor full = model_->Forward(ids, full_options);
  KvCache cache =
      KvCache::Create(config_, 1, ids.size(1), at::kFloat, at::kCPU);
  ForwardOptions step_options;
  step_options.cache = &cache;
  std::vector<at::Tensor> steps = {
      model_->Forward(ids.narrow(1, 0, 6), step_options)};
  for (int64_t t = 6; t < ids.size(1); ++t) {
    steps.push_back(model_->Forward(ids.narrow(1, t, 1), step_options));
  }
  EXPECT_TRUE(testing::TensorsNear(at::cat(steps, 1), full, 1e-5));
}

TEST_F(GenerationTest, SamplingIsReproducibleForASeed) {
  GenerationOptions options;
  options.max_new_tokens = 16;
  options.sampling.greedy = false;
  options.sampling.temperature = 1.5;
  options.sampling.top_p = 0.95;
  options.sampling.seed = 42;
  absl::StatusOr<GenerationResult> a = Generate(*model_, prompt_, options);
  absl::StatusOr<GenerationResult> b = Generate(*model_, prompt_, options);
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->tokens, b->tokens);
  options.sampling.seed = 43;
  absl::StatusOr<GenerationResult> c = Generate(*model_, prompt_, options);
  ASSERT_OK(c);
  EXPECT_NE(a->tokens, c->tokens);
}

TEST_F(GenerationTest, TopKOfOneIsGreedy) {
  GenerationOptions greedy;
  greedy.max_new_tokens = 10;
  GenerationOptions top1 = greedy;
  top1.sampling.greedy = false;
  top1.sampling.top_k = 1;
  top1.sampling.temperature = 2.0;
  EXPECT_EQ(Generate(*model_, prompt_, greedy)->tokens,
            Generate(*model_, prompt_, top1)->tokens);
}

TEST_F(GenerationTest, RepetitionPenaltyDiscouragesRepeats) {
  GenerationOptions plain;
  plain.max_new_tokens = 24;
  GenerationOptions penalised = plain;
  penalised.sampling.repetition_penalty = 50.0;
  absl::StatusOr<GenerationResult> a = Generate(*model_, prompt_, plain);
  absl::StatusOr<GenerationResult> b = Generate(*model_, prompt_, penalised);
  ASSERT_OK(a);
  ASSERT_OK(b);
  auto repeats = [&](const std::vector<int64_t>& tokens) {
    std::set<int64_t> seen(prompt_.begin(), prompt_.end());
    int count = 0;
    for (int64_t t : tokens) count += !seen.insert(t).second;
    return count;
  };
  EXPECT_LT(repeats(b->tokens), repeats(a->tokens));
  EXPECT_EQ(repeats(b->tokens), 0);
}

TEST_F(GenerationTest, StopsAtStopTokensAndWhenTheCallbackSaysSo) {
  GenerationOptions options;
  options.max_new_tokens = 20;
  absl::StatusOr<GenerationResult> free_run =
      Generate(*model_, prompt_, options);
  ASSERT_OK(free_run);
  options.stop_tokens = {free_run->tokens[3]};
  absl::StatusOr<GenerationResult> stopped =
      Generate(*model_, prompt_, options);
  ASSERT_OK(stopped);
  EXPECT_EQ(stopped->stop_reason, "stop_token");
  EXPECT_EQ(stopped->tokens.back(), free_run->tokens[3]);
  EXPECT_LE(stopped->tokens.size(), 4u);

  std::vector<int64_t> streamed;
  options.stop_tokens.clear();
  options.on_token = [&](int64_t token) {
    streamed.push_back(token);
    return streamed.size() < 5;
  };
  absl::StatusOr<GenerationResult> cut = Generate(*model_, prompt_, options);
  ASSERT_OK(cut);
  EXPECT_EQ(cut->stop_reason, "callback");
  EXPECT_EQ(streamed, cut->tokens);
  EXPECT_EQ(cut->tokens.size(), 5u);
}

TEST_F(GenerationTest, MergedAndUnmergedAdaptersGiveTheSameTokens) {
  LoraConfig lora;
  lora.targets = {kAllProjections, kAllProjections + 7};
  absl::StatusOr<LoraAdapter> adapter = LoraAdapter::Create(config_, lora, 3);
  ASSERT_OK(adapter);
  at::manual_seed(4);
  for (size_t layer = 0; layer < adapter->num_layers(); ++layer) {
    for (Projection p : kAllProjections) {
      adapter->Find(layer, p)->b.copy_(
          at::randn_like(adapter->Find(layer, p)->b) * 0.1);
    }
  }
  GenerationOptions options;
  options.max_new_tokens = 20;
  const std::vector<int64_t> base = Generate(*model_, prompt_, options)->tokens;
  options.adapter = &*adapter;
  const std::vector<int64_t> unmerged =
      Generate(*model_, prompt_, options)->tokens;
  EXPECT_NE(unmerged, base);
  ASSERT_OK(adapter->Merge(&model_->weights()));
  options.adapter = nullptr;
  EXPECT_EQ(Generate(*model_, prompt_, options)->tokens, unmerged);
}

TEST_F(GenerationTest, RejectsBadRequests) {
  GenerationOptions options;
  EXPECT_THAT(
      Generate(*model_, {}, options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tokens")));
  EXPECT_THAT(
      Generate(*model_, {1, 400}, options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token 400")));
  options.sampling.greedy = false;
  options.sampling.temperature = 0;
  EXPECT_THAT(
      Generate(*model_, prompt_, options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("temperature")));
  options.sampling.temperature = 1;
  options.sampling.top_p = 1.5;
  EXPECT_THAT(Generate(*model_, prompt_, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("top_p")));
}

}  // namespace
}  // namespace openforce::lora
