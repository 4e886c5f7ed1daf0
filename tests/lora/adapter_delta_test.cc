// Delta checks (what the coordinator refuses) and FedAvg over delta files.
#include "lora/adapter_delta.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "common/file_util.h"
#include "lora/federated_aggregation.h"
#include "lora/safetensors.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

class AdapterDeltaTest : public ::testing::Test {
 protected:
  AdapterDeltaTest() : model_(testing::TinyLlamaConfig()) {
    lora_.rank = 4;
    lora_.targets = {Projection::kQ, Projection::kV};
  }

  // A delta of the right shape whose every value is `value`.
  std::string WriteFilled(const std::string& name, float value,
                          const LoraConfig* config = nullptr) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [key, shape] :
         ExpectedAdapterTensors(model_, config ? *config : lora_)) {
      tensors.emplace_back(key, at::full(shape, value));
    }
    const std::string path = dir_.path() + "/" + name;
    EXPECT_OK(WriteSafetensors(path, tensors));
    return path;
  }

  int64_t ElementCount() const {
    int64_t count = 0;
    for (const auto& [key, shape] : ExpectedAdapterTensors(model_, lora_)) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      count += n;
    }
    return count;
  }

  testing::TempDir dir_;
  LlamaConfig model_;
  LoraConfig lora_;
};

TEST_F(AdapterDeltaTest, ExpectedTensorsFollowPeftNamesAndShapes) {
  const auto expected = ExpectedAdapterTensors(model_, lora_);
  EXPECT_EQ(expected.size(), 2u * 2u * 2u);  // layers x targets x (A, B)
  const auto q_a = expected.at(
      "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(q_a, (std::vector<int64_t>{4, model_.hidden_size}));
  const auto v_b = expected.at(
      "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
  EXPECT_EQ(v_b, (std::vector<int64_t>{
                     model_.num_key_value_heads * model_.head_dim, 4}));
}

TEST_F(AdapterDeltaTest, AcceptsAWellFormedDeltaAndReportsItsNorm) {
  auto check = CheckAdapterDelta(WriteFilled("ok", 0.5f), model_, lora_, {100});
  ASSERT_OK(check);
  EXPECT_TRUE(check->ok()) << check->message;
  EXPECT_NEAR(check->l2_norm,
              0.5 * std::sqrt(static_cast<double>(ElementCount())), 1e-3);
}

TEST_F(AdapterDeltaTest, RefusesWrongShapesNamesAndDtypes) {
  LoraConfig other_rank = lora_;
  other_rank.rank = 8;
  auto rank = CheckAdapterDelta(WriteFilled("r8", 0, &other_rank), model_,
                                lora_, {100});
  ASSERT_OK(rank);
  EXPECT_EQ(rank->problem, DeltaCheck::Problem::kBadShape);
  EXPECT_THAT(rank->message, HasSubstr("has shape [8, "));

  LoraConfig more_targets = lora_;
  more_targets.targets.push_back(Projection::kK);
  auto extra = CheckAdapterDelta(WriteFilled("k", 0, &more_targets), model_,
                                 lora_, {100});
  ASSERT_OK(extra);
  EXPECT_EQ(extra->problem, DeltaCheck::Problem::kBadShape);
  EXPECT_THAT(extra->message, HasSubstr("unexpected tensor"));

  LoraConfig fewer_targets = lora_;
  fewer_targets.targets = {Projection::kQ};
  auto missing = CheckAdapterDelta(WriteFilled("q", 0, &fewer_targets), model_,
                                   lora_, {100});
  ASSERT_OK(missing);
  EXPECT_EQ(missing->problem, DeltaCheck::Problem::kBadShape);
  EXPECT_THAT(missing->message, HasSubstr("is missing"));

  std::vector<std::pair<std::string, at::Tensor>> half;
  for (const auto& [key, shape] : ExpectedAdapterTensors(model_, lora_))
    half.emplace_back(key, at::zeros(shape, at::kBFloat16));
  ASSERT_OK(WriteSafetensors(dir_.path() + "/bf16", half));
  auto dtype = CheckAdapterDelta(dir_.path() + "/bf16", model_, lora_, {100});
  ASSERT_OK(dtype);
  EXPECT_EQ(dtype->problem, DeltaCheck::Problem::kBadShape);
  EXPECT_THAT(dtype->message, HasSubstr("expected F32"));

  ASSERT_OK(WriteFileAtomically(dir_.path() + "/junk", "not safetensors"));
  auto junk = CheckAdapterDelta(dir_.path() + "/junk", model_, lora_, {100});
  ASSERT_OK(junk);
  EXPECT_EQ(junk->problem, DeltaCheck::Problem::kBadShape);
}

TEST_F(AdapterDeltaTest, RefusesNonFiniteValuesAndNormsAboveTheBound) {
  auto nan = CheckAdapterDelta(WriteFilled("nan", std::nanf("")), model_, lora_,
                               {100});
  ASSERT_OK(nan);
  EXPECT_EQ(nan->problem, DeltaCheck::Problem::kNonFinite);
  auto inf =
      CheckAdapterDelta(WriteFilled("inf", INFINITY), model_, lora_, {0});
  ASSERT_OK(inf);
  EXPECT_EQ(inf->problem, DeltaCheck::Problem::kNonFinite);
  auto norm = CheckAdapterDelta(WriteFilled("big", 1.0f), model_, lora_, {1.0});
  ASSERT_OK(norm);
  EXPECT_EQ(norm->problem, DeltaCheck::Problem::kNormTooLarge);
  EXPECT_THAT(norm->message, HasSubstr("above the job's bound 1"));
}

TEST_F(AdapterDeltaTest, AnUntrainedDeltaFallsBelowTheFloor) {
  DeltaLimits limits;
  limits.max_norm = 100;
  limits.min_norm = 1e-6;
  auto zero =
      CheckAdapterDelta(WriteFilled("zero", 0.0f), model_, lora_, limits);
  ASSERT_OK(zero);
  EXPECT_EQ(zero->problem, DeltaCheck::Problem::kNormTooSmall);
  EXPECT_THAT(zero->message, HasSubstr("shows no training"));
  EXPECT_EQ(zero->l2_norm, 0);
  auto trained =
      CheckAdapterDelta(WriteFilled("trained", 1e-3f), model_, lora_, limits);
  ASSERT_OK(trained);
  EXPECT_TRUE(trained->ok()) << trained->message;
}

TEST_F(AdapterDeltaTest, AHeaderLargerThanTheShapeNeedsIsRefusedUnparsed) {
  // A valid delta whose metadata pads the header past a few KiB per tensor:
  // refused on its length alone, before any JSON is parsed.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [key, shape] : ExpectedAdapterTensors(model_, lora_))
    tensors.emplace_back(key, at::full(shape, 0.5f));
  const std::string path = dir_.path() + "/padded";
  const size_t limit = MaxDeltaHeaderBytes(tensors.size());
  EXPECT_LT(limit, 64u << 10);
  ASSERT_OK(
      WriteSafetensors(path, tensors, {{"padding", std::string(limit, ' ')}}));
  auto check = CheckAdapterDelta(path, model_, lora_, {100});
  ASSERT_OK(check);
  EXPECT_EQ(check->problem, DeltaCheck::Problem::kBadShape);
  EXPECT_THAT(check->message, HasSubstr("-byte limit"));

  // Nesting is bounded too: a header of nested arrays is malformed, not a
  // stack overflow.
  const std::string nested =
      std::string(100000, '[') + std::string(100000, ']');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<char>((nested.size() >> (8 * i)) & 0xff);
  ASSERT_OK(WriteFileAtomically(dir_.path() + "/deep", bytes + nested));
  EXPECT_THAT(SafetensorsFile::Open(dir_.path() + "/deep"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nests deeper than")));
}

TEST_F(AdapterDeltaTest, MissingFileIsAnErrorNotAVerdict) {
  EXPECT_THAT(CheckAdapterDelta(dir_.path() + "/none", model_, lora_, {1}),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

// FedAvg over delta files, as the coordinator aggregates them.
absl::Status FedAvgFiles(const std::string& parent,
                         const std::vector<std::string>& deltas,
                         const std::vector<double>& weights,
                         const std::string& out) {
  return AggregateAdapterFiles(parent, deltas, weights, AggregationRule(), out,
                               /*report=*/nullptr);
}

TEST_F(AdapterDeltaTest, FedAvgAddsTheSampleWeightedMeanToTheParent) {
  const std::string parent = WriteFilled("parent", 1.0f);
  const std::string a = WriteFilled("a", 2.0f);
  const std::string b = WriteFilled("b", -1.0f);
  const std::string out = dir_.path() + "/out";
  ASSERT_OK(FedAvgFiles(parent, {a, b}, {30, 10}, out));
  auto file = SafetensorsFile::Open(out);
  ASSERT_OK(file);
  for (const auto& [key, shape] : ExpectedAdapterTensors(model_, lora_)) {
    auto tensor = (*file)->Tensor(key);
    ASSERT_OK(tensor);
    // 1 + (30 * 2 + 10 * -1) / 40 = 2.25
    EXPECT_TRUE(at::allclose(*tensor, at::full(shape, 2.25f))) << key;
  }
}

TEST_F(AdapterDeltaTest, FedAvgRefusesEmptyOrMismatchedInput) {
  const std::string parent = WriteFilled("parent", 1.0f);
  EXPECT_THAT(
      FedAvgFiles(parent, {}, {}, dir_.path() + "/o"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one")));
  EXPECT_THAT(FedAvgFiles(parent, {parent}, {0}, dir_.path() + "/o"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("> 0")));
  LoraConfig fewer = lora_;
  fewer.targets = {Projection::kQ};
  EXPECT_THAT(FedAvgFiles(parent, {WriteFilled("q", 1, &fewer)}, {1},
                          dir_.path() + "/o"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lacks")));
}

TEST_F(AdapterDeltaTest, WrittenDeltaIsTrainedMinusParent) {
  auto parent = LoraAdapter::Create(model_, lora_, 3);
  ASSERT_OK(parent);
  LoraAdapter trained = parent->Clone();
  for (at::Tensor& p : trained.Parameters()) p.add_(0.25);
  const std::string path = dir_.path() + "/delta";
  ASSERT_OK(WriteAdapterDelta(trained, *parent, path));
  auto check = CheckAdapterDelta(path, model_, lora_, {1e6});
  ASSERT_OK(check);
  EXPECT_TRUE(check->ok());
  EXPECT_NEAR(check->l2_norm,
              0.25 * std::sqrt(static_cast<double>(ElementCount())), 1e-3);
}

}  // namespace
}  // namespace openforce::lora
