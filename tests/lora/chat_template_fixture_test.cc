// Conformance with ../shared/fixtures/tokenizers/*/chat.json: every row
// rendered through the family's own chat template (tokenizer_config.json)
// equals what transformers' apply_chat_template produced, and its ids (no
// special tokens added) equal the reference tokenizer's.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "lora/chat_template.h"
#include "lora/tokenizer.h"
#include "tests/testing/status_matchers.h"

namespace openforce::lora {
namespace {

const std::string kTokenizers = OPENFORCE_FIXTURE_DIR "/tokenizers";

std::vector<std::string> ChatFamilies() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kTokenizers)) {
    if (std::filesystem::exists(entry.path() / "chat.json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

class ChatTemplateFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateFixtureTest, RendersEveryRowExactly) {
  const std::string dir = kTokenizers + "/" + GetParam();
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load(dir);
  ASSERT_OK(chat);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir);
  ASSERT_OK(tokenizer);
  absl::StatusOr<std::string> text = ReadFileToString(dir + "/chat.json");
  ASSERT_OK(text);
  const nlohmann::ordered_json rows = nlohmann::ordered_json::parse(*text);
  ASSERT_FALSE(rows.empty());
  for (const nlohmann::ordered_json& row : rows) {
    nlohmann::ordered_json conversation = {
        {"messages", row["messages"]},
        {"tools", row["tools"]},
        {"add_generation_prompt", row["add_generation_prompt"]}};
    for (const auto& [key, value] : row["template_vars"].items()) {
      conversation[key] = value;
    }
    absl::StatusOr<std::string> rendered = chat->Render(conversation);
    ASSERT_OK(rendered) << row["name"];
    EXPECT_EQ(*rendered, row["rendered"].get<std::string>())
        << GetParam() << " " << row["name"] << " generation prompt "
        << row["add_generation_prompt"];
    absl::StatusOr<std::vector<int64_t>> ids =
        (*tokenizer)->Encode(*rendered, /*add_bos=*/false);
    ASSERT_OK(ids);
    EXPECT_EQ(*ids, row["ids"].get<std::vector<int64_t>>())
        << GetParam() << " " << row["name"];
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ChatTemplateFixtureTest,
                         ::testing::ValuesIn(ChatFamilies()));

TEST(ChatTemplateFixtures, EveryTemplatedFamilyIsPresent) {
  const std::vector<std::string> names = ChatFamilies();
  for (const char* family : {"gemma3", "llama3", "qwen3"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), family), names.end())
        << family;
  }
}

}  // namespace
}  // namespace openforce::lora
