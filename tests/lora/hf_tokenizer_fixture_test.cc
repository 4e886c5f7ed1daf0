// Conformance with ../shared/fixtures/tokenizers/*: for every row of every
// family's encode.json (made by Hugging Face's Rust tokenizers), the same ids,
// the same tokens, and both decodes, exactly. Families are discovered, so a
// new one is tested without a change here.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/file_util.h"
#include "lora/dataset.h"
#include "lora/hf_tokenizer.h"
#include "lora/tokenizer.h"
#include "tests/testing/status_matchers.h"

namespace openforce::lora {
namespace {

const std::string kTokenizers = OPENFORCE_FIXTURE_DIR "/tokenizers";

std::vector<std::string> Families() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kTokenizers)) {
    if (std::filesystem::exists(entry.path() / "encode.json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

class HfTokenizerFixtureTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = kTokenizers + "/" + GetParam();
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir_);
    ASSERT_OK(tokenizer);
    tokenizer_ = *std::move(tokenizer);
    absl::StatusOr<std::string> rows = ReadFileToString(dir_ + "/encode.json");
    ASSERT_OK(rows);
    rows_ = nlohmann::json::parse(*rows);
    ASSERT_FALSE(rows_.empty());
  }

  std::string dir_;
  std::unique_ptr<Tokenizer> tokenizer_;
  nlohmann::json rows_;
};

TEST_P(HfTokenizerFixtureTest, EncodesEveryRowExactly) {
  int failures = 0;
  for (const nlohmann::json& row : rows_) {
    const std::string text = row["text"].get<std::string>();
    const bool special = row["add_special_tokens"].get<bool>();
    absl::StatusOr<std::vector<int64_t>> ids =
        tokenizer_->Encode(text, special);
    ASSERT_OK(ids);
    const auto expected = row["ids"].get<std::vector<int64_t>>();
    if (*ids != expected) ++failures;
    EXPECT_EQ(*ids, expected)
        << row["id"] << " (" << row["category"] << ", add_special_tokens "
        << special << "): " << row["text"];
    if (*ids != expected) continue;
    std::vector<std::string> tokens;
    for (int64_t id : *ids) tokens.push_back(*tokenizer_->IdToToken(id));
    EXPECT_EQ(tokens, row["tokens"].get<std::vector<std::string>>())
        << row["id"];
  }
  EXPECT_EQ(failures, 0);
}

TEST_P(HfTokenizerFixtureTest, DecodesEveryRowExactly) {
  for (const nlohmann::json& row : rows_) {
    const auto ids = row["ids"].get<std::vector<int64_t>>();
    absl::StatusOr<std::string> decoded =
        tokenizer_->DecodeTokens(ids, /*skip_special_tokens=*/false);
    ASSERT_OK(decoded);
    EXPECT_EQ(*decoded, row["decoded"].get<std::string>()) << row["id"];
    absl::StatusOr<std::string> skipped =
        tokenizer_->DecodeTokens(ids, /*skip_special_tokens=*/true);
    ASSERT_OK(skipped);
    EXPECT_EQ(*skipped, row["decoded_skip_special"].get<std::string>())
        << row["id"];
  }
}

INSTANTIATE_TEST_SUITE_P(Families, HfTokenizerFixtureTest,
                         ::testing::ValuesIn(Families()));

// tokenizer_config.json names the special tokens training and generation use.
TEST(HfTokenizerFixtures, SpecialTokensComeFromTokenizerConfig) {
  struct Expected {
    const char* family;
    std::optional<int64_t> bos, eos;
  };
  for (const Expected& expected :
       {Expected{"llama3", 128000, 128009},
        Expected{"qwen3", std::nullopt, 151645}, Expected{"mistral", 1, 2},
        Expected{"gemma3", 2, 106}}) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        LoadTokenizer(kTokenizers + "/" + expected.family);
    ASSERT_OK(tokenizer);
    EXPECT_EQ((*tokenizer)->bos_id(), expected.bos) << expected.family;
    EXPECT_EQ((*tokenizer)->eos_id(), expected.eos) << expected.family;
  }
}

// A prompt/completion dataset tokenizes with a tokenizer.json model: the
// prompt with its special tokens (masked), the completion, then eos.
TEST(HfTokenizerFixtures, DatasetRecordsTokenizeWithEachFamily) {
  for (const std::string& family : Families()) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        LoadTokenizer(kTokenizers + "/" + family);
    ASSERT_OK(tokenizer);
    TokenizeOptions options;
    options.sequence_length = 64;
    absl::StatusOr<std::vector<Example>> examples = TokenizeRecords(
        {{"Capital of France?", " Paris."}}, **tokenizer, options);
    ASSERT_OK(examples);
    const std::vector<int64_t> prompt =
        *(*tokenizer)->Encode("Capital of France?", true);
    const std::vector<int64_t> completion =
        *(*tokenizer)->Encode(" Paris.", false);
    const Example& example = examples->front();
    std::vector<int64_t> expected = prompt;
    expected.insert(expected.end(), completion.begin(), completion.end());
    if ((*tokenizer)->eos_id()) expected.push_back(*(*tokenizer)->eos_id());
    ASSERT_GE(example.input_ids.size(), expected.size());
    EXPECT_EQ(std::vector<int64_t>(example.input_ids.begin(),
                                   example.input_ids.begin() + expected.size()),
              expected)
        << family;
    for (size_t i = 0; i < prompt.size(); ++i) {
      EXPECT_EQ(example.labels[i], kIgnoreLabel) << family;
    }
    EXPECT_EQ(example.labels[prompt.size()], completion.front()) << family;
  }
}

TEST(HfTokenizerFixtures, EveryFamilyIsPresent) {
  const std::vector<std::string> names = Families();
  for (const char* family : {"gemma3", "llama3", "mistral", "qwen3"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), family), names.end())
        << family;
  }
}

}  // namespace
}  // namespace openforce::lora
