// A model directory's generation_config.json, as transformers saves it: the
// end-of-sequence ids that stop generation (Llama 3 instruct lists several)
// and the sampling defaults the model's authors chose (do_sample,
// temperature, top_k, top_p, repetition_penalty). Torch-free.
#ifndef OPENFORCE_LORA_GENERATION_CONFIG_H_
#define OPENFORCE_LORA_GENERATION_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/sampling.h"

namespace openforce::lora {

struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;  // empty when the file names none
  // Set when the file says how to sample; greedy when do_sample is false.
  std::optional<SamplingOptions> sampling;
};

// Parses generation_config.json text; `source` names it in errors.
[[nodiscard]] absl::StatusOr<GenerationConfig> ParseGenerationConfig(
    const std::string& json_text, const std::string& source);

// `model_dir`/generation_config.json, or an empty config when there is none.
[[nodiscard]] absl::StatusOr<GenerationConfig> LoadGenerationConfig(
    const std::string& model_dir);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_GENERATION_CONFIG_H_
