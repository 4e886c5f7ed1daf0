// LoRA adapters: PEFT's initialisation, file layout and key names,
// merge/unmerge, delta arithmetic, and gradients checked against finite
// differences in double precision.
#include "lora/lora_adapter.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "lora/llama_config.h"
#include "lora/llama_model.h"
#include "lora/safetensors.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_matchers.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

LoraConfig AllTargets(int64_t rank = 4) {
  LoraConfig config;
  config.rank = rank;
  config.alpha = 8;
  config.targets = {kAllProjections, kAllProjections + 7};
  return config;
}

// Gives B random values so the adapter changes the model.
void Perturb(LoraAdapter* adapter, uint64_t seed, double scale = 0.05) {
  at::manual_seed(seed);
  at::NoGradGuard no_grad;
  for (size_t layer = 0; layer < adapter->num_layers(); ++layer) {
    for (Projection p : kAllProjections) {
      if (LoraPair* pair = adapter->Find(layer, p))
        pair->b.copy_(at::randn_like(pair->b) * scale);
    }
  }
}

class LoraAdapterTest : public ::testing::Test {
 protected:
  LlamaConfig config_ = testing::TinyLlamaConfig();
  testing::TempDir dir_;
};

TEST(AdapterConfigTest, HostileJsonIsAClearErrorNeverACrash) {
  const std::string base =
      R"("r": 4, "lora_alpha": 8, "target_modules": ["q_proj"])";
  EXPECT_OK(ParseAdapterConfig("{" + base + "}", "adapter_config.json"));
  for (const char* peft_type : {"false", "1", "null", "[]", "{}"}) {
    EXPECT_THAT(
        ParseAdapterConfig(
            absl::StrCat(R"({"peft_type": )", peft_type, ", ", base, "}"),
            "adapter_config.json"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not LORA")))
        << peft_type;
  }
  // 400k levels deep in a value that an error message would quote.
  const std::string deep =
      std::string(400'000, '[') + std::string(400'000, ']');
  EXPECT_THAT(ParseAdapterConfig(R"({"use_dora": )" + deep + ", " + base + "}",
                                 "adapter_config.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("nests deeper than")));
  EXPECT_THAT(
      ParseLlamaConfig(R"({"hidden_act": )" + deep + "}", "config.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("config.json: JSON nests deeper than")));
  // A long value is quoted only in part.
  auto long_value = ParseAdapterConfig(
      absl::StrCat(R"({"bias": ")", std::string(100'000, 'b'), R"(", )", base,
                   "}"),
      "adapter_config.json");
  ASSERT_FALSE(long_value.ok());
  EXPECT_LT(long_value.status().message().size(), 300u);
}

TEST_F(LoraAdapterTest, InitialisesLikePeft) {
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config_, AllTargets(), 1);
  ASSERT_OK(adapter);
  const LoraPair* down = adapter->Find(1, Projection::kDown);
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->a.sizes(), (std::vector<int64_t>{4, 64}));  // [r, in]
  EXPECT_EQ(down->b.sizes(), (std::vector<int64_t>{32, 4}));  // [out, r]
  // Kaiming-uniform with a = sqrt(5): bound 1 / sqrt(fan_in).
  EXPECT_LE(down->a.abs().max().item<double>(), 1.0 / std::sqrt(64.0));
  EXPECT_GT(down->a.abs().max().item<double>(), 0.5 / std::sqrt(64.0));
  EXPECT_EQ(down->b.abs().max().item<double>(), 0.0);
  EXPECT_EQ(adapter->ParameterCount(),
            2 * 4 * ((32 + 32) + 2 * (32 + 16) + (32 + 32) + 3 * (32 + 64)));
  EXPECT_EQ(adapter->config().Scaling(), 2.0);
  LoraConfig rs = AllTargets();
  rs.use_rslora = true;
  EXPECT_EQ(rs.Scaling(), 4.0);
  // Fresh adapters leave the model unchanged.
  LlamaModel model(config_, RandomLlamaWeights(config_, 2));
  at::Tensor ids = at::randint(0, 259, {2, 7});
  ForwardOptions plain, wrapped;
  wrapped.adapter = &*adapter;
  EXPECT_TRUE(testing::TensorsEqual(model.Forward(ids, plain),
                                    model.Forward(ids, wrapped)));
}

TEST_F(LoraAdapterTest, DefaultTargetsAreQueryAndValue) {
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config_, LoraConfig{}, 1);
  ASSERT_OK(adapter);
  EXPECT_NE(adapter->Find(0, Projection::kQ), nullptr);
  EXPECT_NE(adapter->Find(0, Projection::kV), nullptr);
  EXPECT_EQ(adapter->Find(0, Projection::kK), nullptr);
  EXPECT_EQ(adapter->Find(0, Projection::kDown), nullptr);
}

TEST_F(LoraAdapterTest, FilesUsePeftKeyNamesAndConfigFields) {
  LoraConfig config = AllTargets();
  config.dropout = 0.05;
  config.base_model_name_or_path = "tiny";
  absl::StatusOr<LoraAdapter> adapter = LoraAdapter::Create(config_, config, 3);
  ASSERT_OK(adapter);
  Perturb(&*adapter, 4);
  ASSERT_OK(adapter->Save(dir_.path()));

  auto file = *SafetensorsFile::Open(dir_.Join("adapter_model.safetensors"));
  EXPECT_EQ(file->entries().size(), 2u * 7 * 2);
  EXPECT_TRUE(file->Contains(
      "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(file->Contains(
      "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
  EXPECT_EQ(
      file->entries()
          .at("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")
          .shape,
      (std::vector<int64_t>{32, 4}));

  nlohmann::json json = nlohmann::json::parse(
      *ReadFileToString(dir_.Join("adapter_config.json")));
  EXPECT_EQ(json["peft_type"], "LORA");
  EXPECT_EQ(json["task_type"], "CAUSAL_LM");
  EXPECT_EQ(json["r"], 4);
  EXPECT_EQ(json["lora_alpha"], 8);
  EXPECT_EQ(json["lora_dropout"], 0.05);
  EXPECT_EQ(json["bias"], "none");
  EXPECT_EQ(json["base_model_name_or_path"], "tiny");
  EXPECT_EQ(json["target_modules"],
            nlohmann::json({"down_proj", "gate_proj", "k_proj", "o_proj",
                            "q_proj", "up_proj", "v_proj"}));
  EXPECT_EQ(json["use_rslora"], false);
  EXPECT_EQ(json["use_dora"], false);

  absl::StatusOr<LoraAdapter> loaded = LoraAdapter::Load(dir_.path(), config_);
  ASSERT_OK(loaded);
  for (const auto& [name, tensor] : adapter->NamedTensors()) {
    EXPECT_TRUE(testing::TensorsEqual(*file->Tensor(name), tensor)) << name;
  }
  EXPECT_TRUE(testing::TensorsEqual(loaded->Find(1, Projection::kUp)->b,
                                    adapter->Find(1, Projection::kUp)->b));
}

TEST_F(LoraAdapterTest, RejectsAdaptersThatDoNotFit) {
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config_, AllTargets(), 3);
  ASSERT_OK(adapter->Save(dir_.path()));
  LlamaConfig wider = config_;
  wider.intermediate_size = 80;
  EXPECT_THAT(LoraAdapter::Load(dir_.path(), wider),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected [80, 4]")));
  LlamaConfig deeper = config_;
  deeper.num_hidden_layers = 3;
  EXPECT_THAT(
      LoraAdapter::Load(dir_.path(), deeper),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("missing tensor 'base_model.model.model.layers.2.")));
  EXPECT_THAT(
      ParseAdapterConfig(
          R"({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
                                     "use_dora": true})",
          "a.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use_dora")));
  EXPECT_THAT(
      ParseAdapterConfig(
          R"({"r": 4, "lora_alpha": 8, "target_modules": ".*proj"})", "a.json"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("regular expressions")));
  EXPECT_THAT(
      ParseAdapterConfig(
          R"({"r": 4, "lora_alpha": 8, "target_modules": ["lm_head"]})",
          "a.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'lm_head'")));
  EXPECT_THAT(
      ParseAdapterConfig(R"({"peft_type": "IA3", "r": 4})", "a.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not LORA")));
}

TEST_F(LoraAdapterTest, MergedLogitsEqualUnmergedLogits) {
  LlamaModel model(config_, RandomLlamaWeights(config_, 2));
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config_, AllTargets(), 5);
  ASSERT_OK(adapter);
  Perturb(&*adapter, 6);
  const at::Tensor ids = at::randint(0, 259, {2, 9});
  ForwardOptions base_options, unmerged_options, merged_options;
  const at::Tensor base = model.Forward(ids, base_options);
  unmerged_options.adapter = &*adapter;
  const at::Tensor unmerged = model.Forward(ids, unmerged_options);
  EXPECT_GT(testing::MaxAbsDiff(unmerged, base), 1e-3);  // the adapter matters

  const at::Tensor q_before = model.weights().layers[0][Projection::kQ].clone();
  ASSERT_OK(adapter->Merge(&model.weights()));
  EXPECT_TRUE(
      testing::TensorsNear(model.Forward(ids, merged_options), unmerged, 1e-5));
  ASSERT_OK(adapter->Unmerge(&model.weights()));
  EXPECT_TRUE(testing::TensorsNear(model.weights().layers[0][Projection::kQ],
                                   q_before, 1e-6));
  EXPECT_TRUE(
      testing::TensorsNear(model.Forward(ids, base_options), base, 1e-5));
}

TEST_F(LoraAdapterTest, DeltasAddBackToTheNewerAdapter) {
  absl::StatusOr<LoraAdapter> older =
      LoraAdapter::Create(config_, AllTargets(), 7);
  ASSERT_OK(older);
  LoraAdapter newer = older->Clone();
  Perturb(&newer, 8);
  absl::StatusOr<LoraAdapter> delta = newer.Subtract(*older);
  ASSERT_OK(delta);
  EXPECT_EQ(delta->Find(0, Projection::kQ)->a.abs().max().item<double>(), 0.0);
  absl::StatusOr<LoraAdapter> rebuilt = older->Add(*delta);
  ASSERT_OK(rebuilt);
  for (size_t i = 0; i < newer.Parameters().size(); ++i) {
    EXPECT_TRUE(testing::TensorsNear(rebuilt->Parameters()[i],
                                     newer.Parameters()[i], 1e-7));
  }
  absl::StatusOr<LoraAdapter> other_rank =
      LoraAdapter::Create(config_, AllTargets(8), 7);
  EXPECT_THAT(newer.Subtract(*other_rank),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot be combined")));
}

TEST_F(LoraAdapterTest, GradientsMatchFiniteDifferencesInDoublePrecision) {
  LlamaWeights weights = RandomLlamaWeights(config_, 12, at::kDouble);
  LlamaModel model(config_, std::move(weights));
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(config_, AllTargets(2), 13);
  ASSERT_OK(adapter);
  at::manual_seed(14);
  for (size_t layer = 0; layer < adapter->num_layers(); ++layer) {
    for (Projection p : kAllProjections) {
      LoraPair* pair = adapter->Find(layer, p);
      pair->a = pair->a.to(at::kDouble).set_requires_grad(true);
      pair->b = (at::randn_like(pair->b) * 0.1)
                    .to(at::kDouble)
                    .set_requires_grad(true);
    }
  }
  const at::Tensor ids = at::randint(0, 259, {2, 6});
  const at::Tensor targets = at::randint(0, 259, {2, 6});
  auto loss_fn = [&] {
    ForwardOptions options;
    options.adapter = &*adapter;
    at::Tensor logits = model.Forward(ids, options);
    return at::cross_entropy_loss(logits.view({-1, 259}), targets.view({-1}));
  };
  at::Tensor loss = loss_fn();
  loss.backward();

  const double eps = 1e-6;
  int checked = 0;
  for (Projection p :
       {Projection::kQ, Projection::kV, Projection::kO, Projection::kDown}) {
    LoraPair* pair = adapter->Find(1, p);
    for (at::Tensor* param : {&pair->a, &pair->b}) {
      const at::Tensor grad = param->grad().clone();
      for (int64_t index :
           {int64_t{0}, param->numel() / 2, param->numel() - 1}) {
        double analytic = grad.view({-1})[index].item<double>();
        double plus, minus;
        {
          at::NoGradGuard no_grad;
          param->view({-1})[index] += eps;
          plus = loss_fn().item<double>();
          param->view({-1})[index] -= 2 * eps;
          minus = loss_fn().item<double>();
          param->view({-1})[index] += eps;
        }
        const double numeric = (plus - minus) / (2 * eps);
        EXPECT_NEAR(analytic, numeric, 1e-7 + 1e-5 * std::abs(numeric))
            << ProjectionName(p) << " element " << index;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 24);
  // Base weights get no gradient storage at all.
  EXPECT_FALSE(model.weights().layers[0][Projection::kQ].requires_grad());
  EXPECT_FALSE(model.weights().layers[0][Projection::kQ].grad().defined());
}

}  // namespace
}  // namespace openforce::lora
