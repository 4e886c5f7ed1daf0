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

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_INFER_COMMAND_H_
