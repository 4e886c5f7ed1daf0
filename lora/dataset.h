// Training data: JSONL records ({"text"}, {"prompt", "completion"}, or a
// conversation {"messages": [{"role", "content"}, ...]} as OpenAI's
// fine-tuning API and TRL write them), tokenised into examples whose labels
// mask what the loss must not see (prompts, every turn but the assistant's,
// padding), then packed into full sequences or padded one example per
// sequence. Conversations are rendered with the model's chat template.
// Torch-free.
#ifndef OPENFORCE_LORA_DATASET_H_
#define OPENFORCE_LORA_DATASET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/chat_template.h"
#include "lora/tokenizer.h"

namespace openforce::lora {

inline constexpr int64_t kIgnoreLabel =
    -100;  // as PyTorch's cross_entropy ignore_index

struct TrainingRecord {
  TrainingRecord() = default;
  TrainingRecord(std::string prompt_text, std::string completion_text)
      : prompt(std::move(prompt_text)),
        completion(std::move(completion_text)) {}

  std::string prompt;      // empty for {"text"} records
  std::string completion;  // the text, or the completion
  // For {"messages": ...} records: {"messages": [...]} as JSON text, keys in
  // the order written.
  std::string conversation;
  int line = 0;  // in the JSONL file, for errors
};

// Parses JSONL; each non-blank line is {"text": ...}, {"prompt": ...,
// "completion": ...} or {"messages": [...]} (roles system, user, assistant,
// tool; string contents; at least one assistant turn to learn from). Errors
// name `source`, the line number and what is wrong.
[[nodiscard]] absl::StatusOr<std::vector<TrainingRecord>> ParseJsonl(
    const std::string& text, const std::string& source);
[[nodiscard]] absl::StatusOr<std::vector<TrainingRecord>> ReadJsonl(
    const std::string& path);

// One training sequence: ids and, position by position, the label the loss
// compares with (the same id, or kIgnoreLabel).
struct Example {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
};

struct TokenizeOptions {
  int64_t sequence_length = 256;
  // true: concatenate every example and cut the stream into full sequences;
  // false: one example per sequence, truncated and padded.
  bool packing = false;
  int64_t pad_id = 0;
  // Renders {"messages"} records; they are refused without one.
  const ChatTemplate* chat_template = nullptr;
};

// A conversation rendered with `chat_template`, tokenised segment by segment
// so that exactly the assistant turns (each with the end-of-turn token that
// follows it, when that is the tokenizer's eos) carry labels.
[[nodiscard]] absl::StatusOr<Example> TokenizeConversation(
    const std::string& conversation_json, const ChatTemplate& chat_template,
    const Tokenizer& tokenizer);

// bos + prompt + completion + eos; prompt and bos are masked out of the labels.
[[nodiscard]] absl::StatusOr<std::vector<Example>> TokenizeRecords(
    const std::vector<TrainingRecord>& records, const Tokenizer& tokenizer,
    const TokenizeOptions& options);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_DATASET_H_
