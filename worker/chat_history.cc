// Chat history; see chat_history.h.
#include "worker/chat_history.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace openforce::worker {

ChatHistory::ChatHistory(const lora::ChatTemplate* chat_template,
                         const lora::Tokenizer* tokenizer,
                         const std::string& system, int64_t max_prompt_tokens)
    : chat_template_(chat_template),
      tokenizer_(tokenizer),
      has_system_(!system.empty()),
      max_prompt_tokens_(max_prompt_tokens) {
  if (has_system_) {
    messages_.push_back({{"role", "system"}, {"content", system}});
  }
}

absl::StatusOr<std::vector<int64_t>> ChatHistory::Render() const {
  const nlohmann::ordered_json conversation = {{"messages", messages_},
                                               {"add_generation_prompt", true}};
  ASSIGN_OR_RETURN(std::string prompt, chat_template_->Render(conversation));
  return tokenizer_->Encode(prompt, /*add_bos=*/false);
}

absl::StatusOr<std::vector<int64_t>> ChatHistory::PromptFor(
    const std::string& user_text) {
  // Restored when the message cannot be answered at all.
  const nlohmann::ordered_json before = messages_;
  const int dropped_before = dropped_turns_;
  messages_.push_back({{"role", "user"}, {"content", user_text}});
  const size_t first_turn = has_system_ ? 1 : 0;
  while (true) {
    absl::StatusOr<std::vector<int64_t>> ids = Render();
    if (!ids.ok()) {
      messages_ = before;
      dropped_turns_ = dropped_before;
      return ids.status();
    }
    if (static_cast<int64_t>(ids->size()) <= max_prompt_tokens_) return ids;
    // Only the new message left: it cannot fit at all.
    if (messages_.size() <= first_turn + 1) {
      messages_ = before;
      dropped_turns_ = dropped_before;
      return absl::OutOfRangeError(absl::StrCat("the message needs ",
                                                ids->size(),
                                                " prompt tokens; the context "
                                                "leaves room for ",
                                                max_prompt_tokens_));
    }
    // Drop the oldest user message and the answer that followed it.
    messages_.erase(messages_.begin() + first_turn);
    if (messages_.size() > first_turn + 1 &&
        messages_[first_turn]["role"] == "assistant") {
      messages_.erase(messages_.begin() + first_turn);
    }
    ++dropped_turns_;
  }
}

void ChatHistory::AddReply(const std::string& assistant_text) {
  messages_.push_back({{"role", "assistant"}, {"content", assistant_text}});
}

}  // namespace openforce::worker
