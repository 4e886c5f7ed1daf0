// How the next token is chosen during generation. Torch-free so that
// command-line code can fill it without including libtorch.
#ifndef OPENFORCE_LORA_SAMPLING_H_
#define OPENFORCE_LORA_SAMPLING_H_

#include <cstdint>

#include "absl/status/status.h"

namespace openforce::lora {

struct SamplingOptions {
  bool greedy = true;  // argmax; the other fields are ignored
  double temperature = 1.0;
  int64_t top_k = 0;   // 0: no top-k filter
  double top_p = 1.0;  // nucleus threshold; 1: no filter
  double repetition_penalty =
      1.0;  // > 1 discourages tokens already in the sequence
  uint64_t seed = 0;
};

// InvalidArgument naming the field when a value is out of range.
[[nodiscard]] absl::Status ValidateSamplingOptions(
    const SamplingOptions& options);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_SAMPLING_H_
