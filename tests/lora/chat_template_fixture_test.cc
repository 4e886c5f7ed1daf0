// Conformance with ../shared/fixtures/tokenizers/*/chat.json: every row
// rendered through the family's own chat template (tokenizer_config.json)
// equals what transformers' apply_chat_template produced, and its ids (no
// special tokens added) equal the reference tokenizer's.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "lora/chat_template.h"
#include "lora/dataset.h"
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

// A conversational record is the reference rendering's ids, with labels on
// exactly the assistant turn and its end-of-turn token.
TEST_P(ChatTemplateFixtureTest, ConversationsLearnOnlyAssistantTurns) {
  const std::string dir = kTokenizers + "/" + GetParam();
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load(dir);
  ASSERT_OK(chat);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer(dir);
  ASSERT_OK(tokenizer);
  const nlohmann::ordered_json rows =
      nlohmann::ordered_json::parse(*ReadFileToString(dir + "/chat.json"));
  const nlohmann::ordered_json* reference = nullptr;
  for (const auto& row : rows) {
    if (row["name"] == "system_multi_turn_ends_with_assistant" &&
        row["add_generation_prompt"] == false) {
      reference = &row;
    }
  }
  ASSERT_NE(reference, nullptr);
  const nlohmann::ordered_json& messages = (*reference)["messages"];
  const std::string jsonl =
      nlohmann::ordered_json{{"messages", messages}}.dump() + "\n";
  absl::StatusOr<std::vector<TrainingRecord>> records =
      ParseJsonl(jsonl, "chat.jsonl");
  ASSERT_OK(records);
  TokenizeOptions options;
  options.sequence_length = 512;
  options.chat_template = &*chat;
  absl::StatusOr<std::vector<Example>> examples =
      TokenizeRecords(*records, **tokenizer, options);
  ASSERT_OK(examples);
  const Example& example = examples->front();
  const auto expected_ids = (*reference)["ids"].get<std::vector<int64_t>>();
  ASSERT_GE(example.input_ids.size(), expected_ids.size());
  EXPECT_EQ(
      std::vector<int64_t>(example.input_ids.begin(),
                           example.input_ids.begin() + expected_ids.size()),
      expected_ids);
  // The unmasked labels: one contiguous run, the assistant's content and the
  // tokenizer's eos (the template's end of turn).
  std::vector<size_t> learned;
  for (size_t i = 0; i < example.labels.size(); ++i) {
    if (example.labels[i] != kIgnoreLabel) {
      EXPECT_EQ(example.labels[i], example.input_ids[i]);
      learned.push_back(i);
    }
  }
  ASSERT_FALSE(learned.empty());
  EXPECT_EQ(learned.back() - learned.front() + 1, learned.size());
  std::string assistant;
  for (const auto& message : messages) {
    if (message["role"] == "assistant") assistant = message["content"];
  }
  const std::string eos = *(*tokenizer)->IdToToken(*(*tokenizer)->eos_id());
  std::vector<int64_t> expected_learned =
      *(*tokenizer)->Encode(assistant, false);
  expected_learned.push_back(*(*tokenizer)->eos_id());
  std::vector<int64_t> got;
  for (size_t i : learned) got.push_back(example.input_ids[i]);
  EXPECT_EQ(got, expected_learned) << GetParam() << " eos " << eos;
  EXPECT_EQ(learned.back() + 1 <= expected_ids.size(), true);
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
