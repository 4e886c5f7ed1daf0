// RoPE scaling types against the formulas of transformers'
// modeling_rope_utils (the llama3 type is also checked against the
// hf-llama3-rope-scaling fixture's tables).
#include "lora/rotary.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace openforce::lora {
namespace {

constexpr double kBase = 10000;
constexpr int64_t kDim = 64;

double Default(int64_t pair, double base = kBase) {
  return 1.0 / std::pow(base, 2.0 * pair / kDim);
}

TEST(RotaryTest, LinearDividesEveryFrequency) {
  RopeScaling linear;
  linear.type = RopeType::kLinear;
  linear.factor = 4;
  const RotaryFrequencies f =
      ComputeRotaryFrequencies(linear, kBase, kDim, 4096, 0);
  ASSERT_EQ(f.inv_freq.numel(), kDim / 2);
  for (int64_t i = 0; i < kDim / 2; ++i) {
    EXPECT_NEAR(f.inv_freq[i].item<double>(), Default(i) / 4,
                1e-6 * Default(i));
  }
  EXPECT_EQ(f.attention_factor, 1.0);
}

TEST(RotaryTest, DynamicGrowsTheBaseOnlyPastTheOriginalContext) {
  RopeScaling dynamic;
  dynamic.type = RopeType::kDynamic;
  dynamic.factor = 2;
  const RotaryFrequencies within =
      ComputeRotaryFrequencies(dynamic, kBase, kDim, 1024, 1000);
  EXPECT_NEAR(within.inv_freq[5].item<double>(), Default(5), 1e-6 * Default(5));
  // base * (factor * len / max - (factor - 1)) ^ (dim / (dim - 2))
  const double grown =
      kBase * std::pow(2.0 * 2048 / 1024 - 1, kDim / (kDim - 2.0));
  const RotaryFrequencies beyond =
      ComputeRotaryFrequencies(dynamic, kBase, kDim, 1024, 2048);
  for (int64_t i : {1, 10, 31}) {
    EXPECT_NEAR(beyond.inv_freq[i].item<double>(), Default(i, grown),
                1e-5 * Default(i, grown));
  }
}

TEST(RotaryTest, YarnKeepsFastPairsInterpolatesSlowOnesAndScales) {
  RopeScaling yarn;
  yarn.type = RopeType::kYarn;
  yarn.factor = 4;
  yarn.original_max_position_embeddings = 4096;
  const RotaryFrequencies f =
      ComputeRotaryFrequencies(yarn, kBase, kDim, 16384, 0);
  EXPECT_NEAR(f.attention_factor, 0.1 * std::log(4.0) + 1, 1e-12);
  // beta_fast 32 / beta_slow 1 bound the ramp: pairs turning more than 32
  // times over the original context keep their frequency, pairs turning less
  // than once are divided by the factor.
  EXPECT_NEAR(f.inv_freq[0].item<double>(), Default(0), 1e-6);
  EXPECT_NEAR(f.inv_freq[31].item<double>(), Default(31) / 4,
              1e-6 * Default(31));
  const double low = std::floor(kDim * std::log(4096 / (32 * 2 * M_PI)) /
                                (2 * std::log(kBase)));
  const double high =
      std::ceil(kDim * std::log(4096 / (1 * 2 * M_PI)) / (2 * std::log(kBase)));
  for (int64_t i = 0; i < kDim / 2; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
    const double expected = Default(i) / 4 * ramp + Default(i) * (1 - ramp);
    EXPECT_NEAR(f.inv_freq[i].item<double>(), expected, 1e-5 * expected)
        << "pair " << i;
  }
  // mscale / mscale_all_dim (DeepSeek-style) change only the attention factor.
  yarn.mscale = 1;
  yarn.mscale_all_dim = 1;
  EXPECT_NEAR(
      ComputeRotaryFrequencies(yarn, kBase, kDim, 16384, 0).attention_factor,
      1.0, 1e-12);
  yarn.attention_factor = 0.5;
  const RotaryFrequencies given =
      ComputeRotaryFrequencies(yarn, kBase, kDim, 16384, 0);
  EXPECT_EQ(given.attention_factor, 0.5);
  at::Tensor cos, sin;
  RotaryTables(given, at::zeros({1}), &cos, &sin);
  EXPECT_NEAR(cos[0][0].item<double>(), 0.5, 1e-7);  // cos(0) scaled
}

TEST(RotaryTest, Llama3BlendsTheMiddleBand) {
  RopeScaling llama3;
  llama3.type = RopeType::kLlama3;
  llama3.factor = 8;
  llama3.low_freq_factor = 1;
  llama3.high_freq_factor = 4;
  llama3.original_max_position_embeddings = 8192;
  const RotaryFrequencies f =
      ComputeRotaryFrequencies(llama3, 500000, kDim, 131072, 0);
  for (int64_t i = 0; i < kDim / 2; ++i) {
    const double freq = 1.0 / std::pow(500000.0, 2.0 * i / kDim);
    const double wavelen = 2 * M_PI / freq;
    double expected = freq;
    if (wavelen > 8192) {
      expected = freq / 8;
    } else if (wavelen >= 2048) {
      const double smooth = (8192 / wavelen - 1) / (4 - 1);
      expected = (1 - smooth) * freq / 8 + smooth * freq;
    }
    EXPECT_NEAR(f.inv_freq[i].item<double>(), expected, 1e-5 * expected)
        << "pair " << i;
  }
}

}  // namespace
}  // namespace openforce::lora
