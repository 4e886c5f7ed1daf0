// Training data: JSONL records ({"text"} or {"prompt", "completion"}),
// tokenised into examples whose labels mask what the loss must not see (prompt
// tokens, padding), then packed into full sequences or padded one example per
// sequence. Torch-free.
#ifndef OPENFORCE_LORA_DATASET_H_
#define OPENFORCE_LORA_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/tokenizer.h"

namespace openforce::lora {

inline constexpr int64_t kIgnoreLabel =
    -100;  // as PyTorch's cross_entropy ignore_index

struct TrainingRecord {
  std::string prompt;      // empty for {"text"} records
  std::string completion;  // the text, or the completion
};

// Parses JSONL; each non-blank line is {"text": ...} or {"prompt": ...,
// "completion": ...}. Errors name `source` and the line number.
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
};

// bos + prompt + completion + eos; prompt and bos are masked out of the labels.
[[nodiscard]] absl::StatusOr<std::vector<Example>> TokenizeRecords(
    const std::vector<TrainingRecord>& records, const Tokenizer& tokenizer,
    const TokenizeOptions& options);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_DATASET_H_
