// Autoregressive generation for one sequence: KV cache (or full recomputation,
// for checking it), greedy or sampled decoding with temperature, top-k, top-p
// and repetition penalty, stop tokens, a token limit and a per-token streaming
// callback.
#ifndef OPENFORCE_LORA_GENERATION_H_
#define OPENFORCE_LORA_GENERATION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/llama_model.h"
#include "lora/sampling.h"

namespace openforce::lora {

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  SamplingOptions sampling;
  std::vector<int64_t>
      stop_tokens;  // generation ends after emitting one of these
  bool use_kv_cache = true;
  const LoraAdapter* adapter = nullptr;  // applied unmerged
  // Called with each new token as it is chosen; returning false stops
  // generation.
  std::function<bool(int64_t token)> on_token;
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // generated tokens only, a stop token included
  std::string stop_reason;      // "max_new_tokens", "stop_token" or "callback"
  double prefill_seconds = 0;
  double decode_seconds = 0;  // for tokens after the first
};

[[nodiscard]] absl::StatusOr<GenerationResult> Generate(
    const LlamaModel& model, const std::vector<int64_t>& prompt,
    const GenerationOptions& options);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_GENERATION_H_
