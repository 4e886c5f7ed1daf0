// generation_config.json: eos lists and the model's sampling defaults, as
// transformers' GenerationConfig reads them.
#include "lora/generation_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(GenerationConfigTest, ReadsLlama3InstructsEosListAndSampling) {
  // Llama-3.2-1B-Instruct's file.
  absl::StatusOr<GenerationConfig> config = ParseGenerationConfig(
      R"({"bos_token_id": 128000, "do_sample": true,
          "eos_token_id": [128001, 128008, 128009], "temperature": 0.6,
          "top_p": 0.9, "transformers_version": "4.45.0.dev0"})",
      "g.json");
  ASSERT_OK(config);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(128001, 128008, 128009));
  ASSERT_TRUE(config->sampling.has_value());
  EXPECT_FALSE(config->sampling->greedy);
  EXPECT_DOUBLE_EQ(config->sampling->temperature, 0.6);
  EXPECT_DOUBLE_EQ(config->sampling->top_p, 0.9);
  EXPECT_EQ(config->sampling->top_k, 50);  // transformers' default
}

TEST(GenerationConfigTest, GreedyWithoutDoSampleAndNothingWithoutFields) {
  absl::StatusOr<GenerationConfig> greedy = ParseGenerationConfig(
      R"({"eos_token_id": 2, "repetition_penalty": 1.1})", "g.json");
  ASSERT_OK(greedy);
  EXPECT_THAT(greedy->eos_token_ids, ElementsAre(2));
  ASSERT_TRUE(greedy->sampling.has_value());
  EXPECT_TRUE(greedy->sampling->greedy);
  EXPECT_DOUBLE_EQ(greedy->sampling->repetition_penalty, 1.1);
  absl::StatusOr<GenerationConfig> bare =
      ParseGenerationConfig(R"({"bos_token_id": 1})", "g.json");
  ASSERT_OK(bare);
  EXPECT_FALSE(bare->sampling.has_value());
  EXPECT_TRUE(bare->eos_token_ids.empty());
}

TEST(GenerationConfigTest, RefusesBadValuesAndMissingFileIsEmpty) {
  EXPECT_THAT(
      ParseGenerationConfig(R"({"eos_token_id": "x"})", "g.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("eos_token_id")));
  EXPECT_THAT(
      ParseGenerationConfig(R"({"do_sample": true, "top_p": 7})", "g.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("g.json")));
  testing::TempDir dir;
  absl::StatusOr<GenerationConfig> none = LoadGenerationConfig(dir.path());
  ASSERT_OK(none);
  EXPECT_FALSE(none->sampling.has_value());
}

}  // namespace
}  // namespace openforce::lora
