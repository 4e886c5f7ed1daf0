// The aggregation math against hand-computed cases and dense references:
// FedAvg, FFA's exactness, SVD's exactness and truncation optimality, norm
// clipping, coordinate-wise median and trimmed mean, Multi-Krum, centered
// clipping (against a dense reference), and the parsing of rules.
#include "lora/federated_aggregation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "lora/aggregation_rule.h"
#include "lora/safetensors.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_matchers.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::openforce::testing::TensorsNear;
using ::testing::HasSubstr;

constexpr char kA[] = "m.lora_A.weight";
constexpr char kB[] = "m.lora_B.weight";

AdapterTensors Module(const at::Tensor& a, const at::Tensor& b) {
  return {{kA, a}, {kB, b}};
}

DeltaSource FromMemory(const std::vector<AdapterTensors>& deltas) {
  return [&deltas](size_t i,
                   const std::string& key) -> absl::StatusOr<at::Tensor> {
    auto it = deltas[i].find(key);
    if (it == deltas[i].end()) return at::Tensor();
    return it->second;
  };
}

AggregationRule Rule(absl::string_view text) {
  absl::StatusOr<AggregationRule> rule = ParseAggregationRule(text);
  EXPECT_TRUE(rule.ok()) << rule.status();
  return rule.value_or(AggregationRule());
}

// Deltas that are all `value` on both A ([2, 3]) and B ([4, 2]).
std::vector<AdapterTensors> Filled(const std::vector<float>& values) {
  std::vector<AdapterTensors> deltas;
  for (float v : values)
    deltas.push_back(Module(at::full({2, 3}, v), at::full({4, 2}, v)));
  return deltas;
}

TEST(FederatedAggregationTest, FedAvgAddsTheWeightedMeanOfEachFactor) {
  const AdapterTensors parent = Module(at::ones({2, 3}), at::ones({4, 2}));
  const std::vector<AdapterTensors> deltas = Filled({2, -1});
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), {30, 10},
                                     Rule("fedavg"), nullptr);
  ASSERT_OK(next);
  // 1 + (30 * 2 + 10 * -1) / 40 = 2.25, on A and on B.
  EXPECT_TRUE(TensorsNear(next->at(kA), at::full({2, 3}, 2.25), 1e-6));
  EXPECT_TRUE(TensorsNear(next->at(kB), at::full({4, 2}, 2.25), 1e-6));
}

TEST(FederatedAggregationTest, FfaKeepsAAndIsTheExactMeanOfTheUpdates) {
  at::manual_seed(1);
  const at::Tensor a0 = at::randn({3, 5});
  const at::Tensor b0 = at::randn({6, 3});
  const AdapterTensors parent = Module(a0, b0);
  std::vector<AdapterTensors> deltas;
  const std::vector<double> weights = {1, 2, 3};
  for (int i = 0; i < 3; ++i) {
    // B-only uploads; one carries an A delta, which FFA must ignore.
    AdapterTensors delta = {{kB, at::randn({6, 3})}};
    if (i == 1) delta[kA] = at::randn({3, 5});
    deltas.push_back(delta);
  }
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), weights,
                                     Rule("ffa"), nullptr);
  ASSERT_OK(next);
  EXPECT_TRUE(TensorsNear(next->at(kA), a0, 0));
  // The next product equals the weighted mean of the workers' products.
  at::Tensor mean_product = at::zeros({6, 5});
  for (int i = 0; i < 3; ++i) {
    mean_product += (weights[i] / 6.0) * at::matmul(b0 + deltas[i].at(kB), a0);
  }
  EXPECT_TRUE(
      TensorsNear(at::matmul(next->at(kB), next->at(kA)), mean_product, 1e-5));
}

TEST(FederatedAggregationTest, FedAvgOfFactorsIsNotTheMeanOfProducts) {
  // Why ffa and svd exist: two workers that moved both factors.
  const AdapterTensors parent = Module(at::zeros({1, 1}), at::zeros({1, 1}));
  const std::vector<AdapterTensors> deltas = {
      Module(at::full({1, 1}, 2.0), at::full({1, 1}, 2.0)),
      Module(at::full({1, 1}, 0.0), at::full({1, 1}, 0.0))};
  auto fedavg = AggregateAdapterDeltas(parent, FromMemory(deltas), {1, 1},
                                       Rule("fedavg"), nullptr);
  auto svd = AggregateAdapterDeltas(parent, FromMemory(deltas), {1, 1},
                                    Rule("svd"), nullptr);
  ASSERT_OK(fedavg);
  ASSERT_OK(svd);
  // mean(B A) = (4 + 0) / 2 = 2; mean(B) mean(A) = 1.
  EXPECT_NEAR((fedavg->at(kB) * fedavg->at(kA)).item<float>(), 1.0, 1e-6);
  EXPECT_NEAR((svd->at(kB) * svd->at(kA)).item<float>(), 2.0, 1e-5);
}

TEST(FederatedAggregationTest, SvdIsExactWhenTheMeanProductFitsTheRank) {
  at::manual_seed(2);
  const int64_t r = 4, out = 9, in = 7;
  const at::Tensor a0 = at::randn({r, in});
  const AdapterTensors parent = Module(a0, at::zeros({out, r}));
  // The same A for every worker: the mean product has rank <= r.
  std::vector<AdapterTensors> deltas;
  for (int i = 0; i < 3; ++i) deltas.push_back({{kB, at::randn({out, r})}});
  AggregationReport report;
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), {1, 1, 2},
                                     Rule("svd"), &report);
  ASSERT_OK(next);
  at::Tensor mean_product = at::zeros({out, in});
  const double w[] = {0.25, 0.25, 0.5};
  for (int i = 0; i < 3; ++i)
    mean_product += w[i] * at::matmul(deltas[i].at(kB), a0);
  EXPECT_TRUE(
      TensorsNear(at::matmul(next->at(kB), next->at(kA)), mean_product, 1e-4));
  EXPECT_LT(report.truncation_error, 1e-6);
  // A's rows keep the parent's RMS row norm (orthogonal rows of that length).
  const double parent_row_norm =
      std::sqrt(a0.pow(2).sum().item<double>() / static_cast<double>(r));
  const at::Tensor gram = at::matmul(next->at(kA), next->at(kA).t());
  EXPECT_TRUE(
      TensorsNear(gram, at::eye(r) * parent_row_norm * parent_row_norm, 1e-3));
}

TEST(FederatedAggregationTest, SvdTruncationIsTheBestRankRApproximation) {
  at::manual_seed(3);
  const int64_t r = 2, out = 8, in = 6;
  const AdapterTensors parent = Module(at::randn({r, in}), at::randn({out, r}));
  std::vector<AdapterTensors> deltas;
  for (int i = 0; i < 4; ++i)
    deltas.push_back(Module(at::randn({r, in}), at::randn({out, r})));
  const std::vector<double> weights = {1, 2, 3, 4};
  AggregationReport report;
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), weights,
                                     Rule("svd"), &report);
  ASSERT_OK(next);
  // Dense reference: M, its singular values, the optimal rank-r error.
  at::Tensor m = at::zeros({out, in}, at::kDouble);
  for (int i = 0; i < 4; ++i) {
    const at::Tensor a = (parent.at(kA) + deltas[i].at(kA)).to(at::kDouble);
    const at::Tensor b = (parent.at(kB) + deltas[i].at(kB)).to(at::kDouble);
    m += (weights[i] / 10.0) * at::matmul(b, a);
  }
  const at::Tensor sigma = at::linalg_svdvals(m);
  const double optimal =
      std::sqrt(sigma.slice(0, r).pow(2).sum().item<double>());
  const double achieved =
      (m - at::matmul(next->at(kB), next->at(kA)).to(at::kDouble))
          .norm()
          .item<double>();
  EXPECT_NEAR(achieved, optimal, 1e-4 * (1 + optimal));
  EXPECT_GT(optimal, 0.1);  // the case does truncate something
  EXPECT_NEAR(report.truncation_error, optimal / m.norm().item<double>(), 1e-5);
}

TEST(FederatedAggregationTest, ClippingBoundsEachDeltaByTheMedianNorm) {
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  // Norms: sqrt(14) * {1, 1, 1, 10}; median sqrt(14), bound 2 sqrt(14).
  const std::vector<AdapterTensors> deltas = Filled({1, 1, 1, 10});
  AggregationReport report;
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), {1, 1, 1, 1},
                                     Rule("fedavg+clip:2"), &report);
  ASSERT_OK(next);
  ASSERT_EQ(report.clip_scales.size(), 4u);
  EXPECT_DOUBLE_EQ(report.clip_scales[0], 1.0);
  EXPECT_NEAR(report.clip_scales[3], 0.2, 1e-9);
  EXPECT_NEAR(report.norms[3], 10 * std::sqrt(14.0), 1e-4);
  // (1 + 1 + 1 + 10 x 0.2) / 4 = 1.25
  EXPECT_TRUE(TensorsNear(next->at(kA), at::full({2, 3}, 1.25), 1e-6));
}

TEST(FederatedAggregationTest, MedianIsCoordinateWiseAndUnweighted) {
  const AdapterTensors parent = Module(at::ones({2, 3}), at::ones({4, 2}));
  auto odd = AggregateAdapterDeltas(parent, FromMemory(Filled({1, 2, 100})),
                                    {1, 1, 50}, Rule("fedavg+median"), nullptr);
  ASSERT_OK(odd);
  EXPECT_TRUE(TensorsNear(odd->at(kB), at::full({4, 2}, 3.0), 1e-6));
  // Per coordinate: one delta high in the first column only.
  std::vector<AdapterTensors> mixed = Filled({1, 2, 3, 4});
  mixed[3].at(kB).select(1, 0).fill_(-50);
  auto even = AggregateAdapterDeltas(parent, FromMemory(mixed), {1, 1, 1, 1},
                                     Rule("fedavg+median"), nullptr);
  ASSERT_OK(even);
  // Column 0: {1, 2, 3, -50} -> 1.5; column 1: {1, 2, 3, 4} -> 2.5.
  EXPECT_NEAR(even->at(kB)[0][0].item<float>(), 1 + 1.5, 1e-6);
  EXPECT_NEAR(even->at(kB)[0][1].item<float>(), 1 + 2.5, 1e-6);
}

TEST(FederatedAggregationTest, TrimmedMeanDropsBetaAtEachEnd) {
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  auto next = AggregateAdapterDeltas(
      parent, FromMemory(Filled({-100, 1, 2, 3, 4, 100})), {1, 1, 1, 1, 1, 1},
      Rule("fedavg+trimmed_mean:0.25"), nullptr);
  ASSERT_OK(next);
  // floor(0.25 x 6) = 1 dropped at each end: mean(1, 2, 3, 4).
  EXPECT_TRUE(TensorsNear(next->at(kA), at::full({2, 3}, 2.5), 1e-6));
}

TEST(FederatedAggregationTest, MultiKrumLeavesOutTheDeltasFarFromTheirPeers) {
  at::manual_seed(4);
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  std::vector<AdapterTensors> deltas;
  for (int i = 0; i < 7; ++i) {
    const float base = i < 5 ? 1.0f : (i == 5 ? -3.0f : 4.0f);
    deltas.push_back(Module(at::full({2, 3}, base) + 0.01 * at::randn({2, 3}),
                            at::full({4, 2}, base) + 0.01 * at::randn({4, 2})));
  }
  AggregationReport report;
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas),
                                     std::vector<double>(7, 1.0),
                                     Rule("fedavg+krum:2"), &report);
  ASSERT_OK(next);
  EXPECT_EQ(report.krum_f, 2);
  EXPECT_EQ(report.selected,
            (std::vector<bool>{true, true, true, true, true, false, false}));
  EXPECT_TRUE(TensorsNear(next->at(kA), at::full({2, 3}, 1.0), 0.02));
  // With too few deltas for f, Krum tolerates what n allows: n >= 2f + 3.
  auto few = AggregateAdapterDeltas(parent, FromMemory(deltas), {1, 1, 1, 1},
                                    Rule("fedavg+krum:3"), &report);
  ASSERT_OK(few);
  EXPECT_EQ(report.krum_f, 0);
}

// Centered clipping computed directly on the flattened deltas: Weiszfeld's
// geometric median, then three clipping steps of radius tau x the median
// distance from it.
at::Tensor CenteredClipReference(const at::Tensor& x, const at::Tensor& w,
                                 double tau_multiple) {
  const at::Tensor weights = w / w.sum();
  at::Tensor center = (x * weights.unsqueeze(1)).sum(0);
  for (int i = 0; i < 100; ++i) {
    const at::Tensor inverse =
        weights / (x - center).norm(2, 1).clamp_min(1e-30);
    center = (x * (inverse / inverse.sum()).unsqueeze(1)).sum(0);
  }
  at::Tensor d = (x - center).norm(2, 1);
  const double tau =
      tau_multiple *
      std::get<0>(d.sort()).select(0, 2).item<double>();  // median of 5
  for (int step = 0; step < 3; ++step) {
    const at::Tensor keep = (tau / d).clamp_max(1.0);
    center = center + ((x - center) * (weights * keep).unsqueeze(1)).sum(0);
    d = (x - center).norm(2, 1);
  }
  return center;
}

TEST(FederatedAggregationTest, CenteredClippingMatchesADenseReference) {
  at::manual_seed(7);
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  std::vector<AdapterTensors> deltas;
  std::vector<at::Tensor> flat;
  for (int i = 0; i < 5; ++i) {
    const at::Tensor a = at::randn({2, 3}) + 1;
    const at::Tensor b = at::randn({4, 2}) + 1;
    deltas.push_back(Module(a, b));
    flat.push_back(at::cat({a.reshape(-1), b.reshape(-1)}).to(at::kDouble));
  }
  const std::vector<double> weights = {1, 2, 1, 3, 1};
  AggregationReport report;
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), weights,
                                     Rule("fedavg+centered_clip:1"), &report);
  ASSERT_OK(next);
  const at::Tensor expected = CenteredClipReference(
      at::stack(flat), at::tensor(weights, at::kDouble), 1.0);
  const at::Tensor got =
      at::cat({next->at(kA).reshape(-1), next->at(kB).reshape(-1)});
  EXPECT_TRUE(TensorsNear(got, expected.to(at::kFloat), 1e-5));
  double total = 0;
  for (double share : report.shares) {
    EXPECT_GT(share, 0);
    total += share;
  }
  EXPECT_NEAR(total, 1.0, 1e-9);
}

TEST(FederatedAggregationTest, CenteredClippingBluntsSignFlips) {
  // Seven honest deltas near +1 and three flipped to -1: the mean is pulled
  // to 0.4; clipped around the geometric median the flips pull far less,
  // and the honest deltas keep most of their share.
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  const std::vector<AdapterTensors> deltas =
      Filled({1.0f, 1.1f, 0.9f, 1.05f, 0.95f, 1.0f, 1.0f, -1.0f, -1.0f, -1.0f});
  const std::vector<double> weights(10, 1.0);
  auto mean = AggregateAdapterDeltas(parent, FromMemory(deltas), weights,
                                     Rule("fedavg"), nullptr);
  ASSERT_OK(mean);
  AggregationReport report;
  auto clipped =
      AggregateAdapterDeltas(parent, FromMemory(deltas), weights,
                             Rule("fedavg+centered_clip:1"), &report);
  ASSERT_OK(clipped);
  EXPECT_NEAR(mean->at(kA).mean().item<double>(), 0.4, 1e-5);
  EXPECT_GT(clipped->at(kA).mean().item<double>(), 0.85);
  for (int i = 0; i < 7; ++i) EXPECT_GT(report.shares[i], 0.05) << i;
  for (int i = 7; i < 10; ++i) EXPECT_LT(report.shares[i], 0.02) << i;
  // It composes with svd: the flipped products lose their weight too.
  const AdapterTensors svd_parent =
      Module(at::full({2, 3}, 0.5), at::zeros({4, 2}));
  auto svd = AggregateAdapterDeltas(svd_parent, FromMemory(deltas), weights,
                                    Rule("svd+centered_clip:1"), &report);
  ASSERT_OK(svd);
  for (int i = 7; i < 10; ++i) EXPECT_LT(report.shares[i], 0.02) << i;
}

TEST(FederatedAggregationTest, DirectionDropsDeltasOpposedToTheMedian) {
  // Seven honest deltas that differ in direction (non-IID shards: each has a
  // coordinate of its own besides the shared one) and three sign flips of
  // honest deltas. The flips point away from the geometric median and are
  // dropped; every honest delta, however its shard differs, is kept.
  at::manual_seed(11);
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  std::vector<AdapterTensors> deltas;
  for (int i = 0; i < 10; ++i) {
    at::Tensor a = at::full({2, 3}, 0.5) + 0.3 * at::randn({2, 3});
    at::Tensor b = at::full({4, 2}, 0.5) + 0.3 * at::randn({4, 2});
    a.view(-1)[i % 6] += 1.0;
    if (i >= 7) {
      a = -a;
      b = -b;
    }
    deltas.push_back(Module(a, b));
  }
  const std::vector<double> weights(10, 1.0);
  AggregationReport report;
  auto next = AggregateAdapterDeltas(parent, FromMemory(deltas), weights,
                                     Rule("fedavg+direction"), &report);
  ASSERT_OK(next);
  ASSERT_EQ(report.cosines.size(), 10u);
  for (int i = 0; i < 7; ++i) {
    EXPECT_GT(report.cosines[i], 0) << i;
    EXPECT_TRUE(report.selected[i]) << i;
  }
  for (int i = 7; i < 10; ++i) {
    EXPECT_LT(report.cosines[i], 0) << i;
    EXPECT_FALSE(report.selected[i]) << i;
    EXPECT_EQ(report.shares[i], 0) << i;
  }
  // The result is the mean of the seven kept deltas.
  at::Tensor honest_a = at::zeros({2, 3});
  for (int i = 0; i < 7; ++i) honest_a += deltas[i].at(kA) / 7;
  EXPECT_TRUE(TensorsNear(next->at(kA), honest_a, 1e-5));
  // With centered clipping after it, the clipping sees the kept deltas only:
  // the flips get no share at all.
  auto centered = AggregateAdapterDeltas(
      parent, FromMemory(deltas), weights,
      Rule("svd+clip:2+direction+centered_clip:1"), &report);
  ASSERT_OK(centered);
  for (int i = 7; i < 10; ++i) EXPECT_EQ(report.shares[i], 0) << i;
  for (int i = 0; i < 7; ++i) EXPECT_GT(report.shares[i], 0.05) << i;
  // All deltas zero: no direction to keep to, nothing is dropped.
  auto zero =
      AggregateAdapterDeltas(parent, FromMemory(Filled({0, 0, 0})), {1, 1, 1},
                             Rule("fedavg+direction"), &report);
  ASSERT_OK(zero);
  EXPECT_EQ(report.selected, (std::vector<bool>{true, true, true}));
}

TEST(FederatedAggregationTest, RefusesBadInputByName) {
  const AdapterTensors parent = Module(at::zeros({2, 3}), at::zeros({4, 2}));
  const std::vector<AdapterTensors> deltas = Filled({1});
  EXPECT_THAT(
      AggregateAdapterDeltas(parent, FromMemory(deltas), {}, Rule("fedavg"),
                             nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one")));
  EXPECT_THAT(AggregateAdapterDeltas(parent, FromMemory(deltas), {-1},
                                     Rule("fedavg"), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("> 0")));
  std::vector<AdapterTensors> wrong = {
      Module(at::zeros({3, 3}), at::zeros({4, 2}))};
  EXPECT_THAT(AggregateAdapterDeltas(parent, FromMemory(wrong), {1},
                                     Rule("fedavg"), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'m.lora_A.weight' does not match")));
  std::vector<AdapterTensors> nan = Filled({std::nanf("")});
  EXPECT_THAT(AggregateAdapterDeltas(parent, FromMemory(nan), {1},
                                     Rule("fedavg"), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));
}

TEST(FederatedAggregationTest, FilesCarryBOnlyDeltasForFfa) {
  testing::TempDir dir;
  const std::string parent = dir.path() + "/parent";
  ASSERT_OK(WriteSafetensors(
      parent, {{kA, at::ones({2, 3})}, {kB, at::zeros({4, 2})}}));
  const std::string delta = dir.path() + "/delta";
  ASSERT_OK(WriteSafetensors(delta, {{kB, at::full({4, 2}, 3.0f)}}));
  const std::string out = dir.path() + "/out";
  ASSERT_OK(AggregateAdapterFiles(parent, {delta, delta}, {1, 1}, Rule("ffa"),
                                  out, nullptr));
  auto file = SafetensorsFile::Open(out);
  ASSERT_OK(file);
  EXPECT_TRUE(TensorsNear((*file)->Tensor(kA).value(), at::ones({2, 3}), 0));
  EXPECT_TRUE(
      TensorsNear((*file)->Tensor(kB).value(), at::full({4, 2}, 3.0), 1e-6));
  // FedAvg needs A too.
  EXPECT_THAT(
      AggregateAdapterFiles(parent, {delta}, {1}, Rule("fedavg"), out, nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("lacks tensor 'm.lora_A.weight'")));
}

TEST(AggregationRuleTest, ParsesAndFormatsRules) {
  EXPECT_EQ(FormatAggregationRule(Rule("svd+krum:3+clip:2.5")),
            "svd+clip:2.5+krum:3");
  EXPECT_EQ(FormatAggregationRule(Rule("ffa+trimmed_mean")),
            "ffa+trimmed_mean:0.2");
  EXPECT_EQ(FormatAggregationRule(Rule("")),
            FormatAggregationRule(Rule(kDefaultAggregation)));
  EXPECT_EQ(FormatAggregationRule(Rule("svd+clip:2+centered_clip")),
            "svd+clip:2+centered_clip:1");
  EXPECT_EQ(FormatAggregationRule(Rule("svd+centered_clip+direction+clip")),
            "svd+clip:2+direction+centered_clip:1");
  EXPECT_TRUE(Rule("ffa").b_only());
  EXPECT_FALSE(Rule("svd").b_only());
}

TEST(AggregationRuleTest, RefusesBadRulesByName) {
  EXPECT_THAT(ParseAggregationRule("mean"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'mean' is not an exact strategy")));
  EXPECT_THAT(ParseAggregationRule("svd+median"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("use clip, krum or centered_clip with svd")));
  EXPECT_THAT(
      ParseAggregationRule("ffa+median+krum"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("only one of")));
  EXPECT_THAT(
      ParseAggregationRule("ffa+krum:0"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole number")));
  EXPECT_THAT(
      ParseAggregationRule("ffa+trimmed_mean:0.5"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(0, 0.5)")));
  EXPECT_THAT(ParseAggregationRule("ffa+clip:x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'x' in 'clip:x' is not a number")));
  EXPECT_THAT(ParseAggregationRule("ffa+clip:0.5"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(">= 1")));
  EXPECT_THAT(ParseAggregationRule("svd+centered_clip:0"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tau must be in [0.1, 100]")));
  EXPECT_THAT(ParseAggregationRule("svd+direction:1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'direction' takes no parameter")));
  EXPECT_THAT(ParseAggregationRule("svd+direction+direction"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'direction' appears twice")));
  EXPECT_THAT(ParseAggregationRule("ffa+bogus"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown step 'bogus'")));
}

}  // namespace
}  // namespace openforce::lora
