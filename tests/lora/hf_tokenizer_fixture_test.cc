// Conformance with ../shared/fixtures/tokenizers/*: for every row of every
// family's encode.json (made by Hugging Face's Rust tokenizers), the same ids,
// the same tokens, and both decodes, exactly. Families are discovered, so a
// new one is tested without a change here.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
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

TEST(HfTokenizerFixtures, EveryFamilyIsPresent) {
  const std::vector<std::string> names = Families();
  for (const char* family : {"gemma3", "llama3", "mistral", "qwen3"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), family), names.end())
        << family;
  }
}

}  // namespace
}  // namespace openforce::lora
