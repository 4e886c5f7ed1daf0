// The conversation of `infer --interactive`: a system prompt and the turns so
// far, rendered with the model's chat template for each reply. When the
// prompt and the reply's token budget would not fit the model's context, the
// oldest turns (a user message and its answer) go first; the system prompt
// stays. Torch-free.
#ifndef OPENFORCE_WORKER_CHAT_HISTORY_H_
#define OPENFORCE_WORKER_CHAT_HISTORY_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/chat_template.h"
#include "lora/tokenizer.h"

namespace openforce::worker {

class ChatHistory {
 public:
  // `max_prompt_tokens`: the context length less the reply's budget.
  ChatHistory(const lora::ChatTemplate* chat_template,
              const lora::Tokenizer* tokenizer, const std::string& system,
              int64_t max_prompt_tokens);

  // Adds the user's message and returns the prompt ids for the answer (the
  // template's generation prompt included). OutOfRange, with the history left
  // as it was, when even that message alone does not fit.
  [[nodiscard]] absl::StatusOr<std::vector<int64_t>> PromptFor(
      const std::string& user_text);
  // Records the model's answer to the last message.
  void AddReply(const std::string& assistant_text);

  // Turns dropped so far to stay within the context.
  int dropped_turns() const { return dropped_turns_; }
  const nlohmann::ordered_json& messages() const { return messages_; }

 private:
  absl::StatusOr<std::vector<int64_t>> Render() const;

  const lora::ChatTemplate* chat_template_;
  const lora::Tokenizer* tokenizer_;
  bool has_system_ = false;
  int64_t max_prompt_tokens_;
  nlohmann::ordered_json messages_ = nlohmann::ordered_json::array();
  int dropped_turns_ = 0;
};

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_CHAT_HISTORY_H_
