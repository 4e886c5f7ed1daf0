// The interactive chat's history: rendered with the template for each reply,
// oldest turns dropped to fit, the system prompt kept.
#include "worker/chat_history.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce::worker {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

std::string Text(const lora::Tokenizer& tokenizer,
                 const std::vector<int64_t>& ids) {
  return *tokenizer.Decode(ids);
}

TEST(ChatHistoryTest, RendersEveryTurnAndDropsTheOldestToFit) {
  absl::StatusOr<lora::ChatTemplate> chat = lora::ChatTemplate::Parse(
      "{% for m in messages %}{{ m.role[0] }}:{{ m.content }};{% endfor %}"
      "{% if add_generation_prompt %}a:{% endif %}",
      "", "t");
  ASSERT_OK(chat);
  lora::ByteTokenizer tokenizer;
  ChatHistory history(&*chat, &tokenizer, "S", 21);
  absl::StatusOr<std::vector<int64_t>> first = history.PromptFor("hi");
  ASSERT_OK(first);
  EXPECT_EQ(Text(tokenizer, *first), "s:S;u:hi;a:");
  history.AddReply("yo");
  absl::StatusOr<std::vector<int64_t>> second = history.PromptFor("ok");
  ASSERT_OK(second);
  EXPECT_EQ(Text(tokenizer, *second), "s:S;u:hi;a:yo;u:ok;a:");  // 21 bytes
  EXPECT_EQ(history.dropped_turns(), 0);
  history.AddReply("fine");
  // 33 bytes with everything, 23 without hi/yo: both older turns go.
  absl::StatusOr<std::vector<int64_t>> third = history.PromptFor("go");
  ASSERT_OK(third);
  EXPECT_EQ(Text(tokenizer, *third), "s:S;u:go;a:");
  EXPECT_EQ(history.dropped_turns(), 2);
  // A message that cannot fit even alone is refused and forgotten.
  EXPECT_THAT(
      history.PromptFor(std::string(30, 'x')),
      StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("room for 21")));
  EXPECT_EQ(history.messages().back()["content"], "go");
}

}  // namespace
}  // namespace openforce::worker
