// The Hugging Face config.json of a Llama-family causal LM (Llama 1/2,
// TinyLlama, Mistral without sliding window, Qwen2 with its attention bias):
// parsing with validation, and writing for the tiny checkpoints tests build.
#ifndef OPENFORCE_LORA_LLAMA_CONFIG_H_
#define OPENFORCE_LORA_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/memory_estimate.h"

namespace openforce::lora {

struct LlamaConfig {
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim =
      0;  // hidden_size / num_attention_heads unless config.json sets it
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool attention_bias = false;
  bool tie_word_embeddings = false;
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;  // config.json allows one id or a list
  std::string torch_dtype = "float32";

  ModelShape Shape() const;
};

// Parses config.json text; `source` names it in errors. Rejects what this
// engine would compute wrongly: another architecture, an activation other than
// SiLU, RoPE scaling, and inconsistent sizes.
[[nodiscard]] absl::StatusOr<LlamaConfig> ParseLlamaConfig(
    const std::string& json_text, const std::string& source);
[[nodiscard]] absl::StatusOr<LlamaConfig> LoadLlamaConfig(
    const std::string& model_dir);

// config.json text as transformers writes it for LlamaForCausalLM.
std::string LlamaConfigToJson(const LlamaConfig& config);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_LLAMA_CONFIG_H_
