// `openforce-worker infer`: generation on this machine with no network, from a
// Hugging Face model directory and an optional PEFT adapter. Torch-free; the
// work happens in lora/inference.h.
#ifndef OPENFORCE_WORKER_INFER_COMMAND_H_
#define OPENFORCE_WORKER_INFER_COMMAND_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lora/inference.h"

namespace openforce::worker {

// "1,2,3" -> {1, 2, 3}; InvalidArgument naming the bad element.
[[nodiscard]] absl::StatusOr<std::vector<int64_t>> ParseTokenIds(
    const std::vector<std::string>& parts);

// Runs `request`, streaming text to `out` as it is generated; with `json`,
// prints one JSON object with the prompt and generated ids, the text and
// timings instead.
[[nodiscard]] absl::Status RunInferCommand(
    const lora::InferenceRequest& request, bool json, std::ostream& out);

// An adapter pulled from a coordinator records the base model it was trained
// on (openforce_adapter.json); FailedPrecondition naming both hashes when
// `model_dir` is another model. Adapters without that record (from PEFT)
// pass: there is nothing to compare.
[[nodiscard]] absl::Status CheckAdapterBaseModel(const std::string& adapter_dir,
                                                 const std::string& model_dir);

struct ChatOptions {
  std::string system;  // the system prompt (templated chat only)
  // Send each line as raw text, as before chat templates: for base models,
  // and forced when the model has no chat template.
  bool raw = false;
  bool prompt_marks = false;  // "> " before each prompt, for terminals
};

// Interactive chat: loads once, then answers each line of `in` (a user
// message), streaming the reply to `out` and ending it with the token rate.
// With the model's chat template, the whole conversation (system prompt and
// history, the oldest turns dropped when the context would overflow) is
// rendered for each reply, which stops at the template's end-of-turn token
// or any eos id. "/quit" or end of input stops; "/reset" forgets the history.
[[nodiscard]] absl::Status RunChat(const lora::InferenceRequest& request,
                                   const ChatOptions& options, std::istream& in,
                                   std::ostream& out);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_INFER_COMMAND_H_
