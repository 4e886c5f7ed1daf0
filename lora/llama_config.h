// The Hugging Face config.json of the decoder-only causal LMs this engine runs:
// Llama 1/2/3.x, Mistral, Qwen2/2.5, Qwen3 and Gemma 3 (text). Parsing with
// validation (every value that would change the computation is either
// understood or refused, naming the field), and writing for the checkpoints
// tests build. The families share one struct: they differ only in the switches
// below, as transformers' modeling code shows.
#ifndef OPENFORCE_LORA_LLAMA_CONFIG_H_
#define OPENFORCE_LORA_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/memory_estimate.h"

namespace openforce::lora {

// modeling_rope_utils' rope types.
enum class RopeType { kDefault, kLinear, kDynamic, kLlama3, kYarn };

// config.json's `rope_scaling` (or a family's fixed local RoPE).
struct RopeScaling {
  RopeType type = RopeType::kDefault;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and yarn; 0 means config.json's max_position_embeddings.
  int64_t original_max_position_embeddings = 0;
  // yarn. attention_factor 0: derived from factor (and mscale, mscale_all_dim).
  double attention_factor = 0;
  double beta_fast = 32;
  double beta_slow = 1;
  double mscale = 0;
  double mscale_all_dim = 0;
  bool truncate = true;
};

const char* RopeTypeName(RopeType type);

enum class Activation { kSilu, kGeluTanh, kGelu, kRelu };

struct LlamaConfig {
  std::string model_type =
      "llama";  // llama, mistral, qwen2, qwen3, gemma3_text
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
  Activation hidden_act = Activation::kSilu;

  // Rotary embeddings over the first head_dim * partial_rotary_factor values
  // of each head.
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double partial_rotary_factor = 1.0;
  // Gemma 3: sliding layers use their own unscaled RoPE with this base.
  double rope_local_base_freq = 0;

  // Biases: q/k/v (Llama attention_bias, Qwen2 always), o (Llama
  // attention_bias, Qwen3, Gemma 3), gate/up/down (Llama mlp_bias).
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;

  // Sliding-window attention: a sliding layer's query at position i sees keys
  // j with i - sliding_window < j <= i. layer_is_sliding has one entry per
  // layer (all false without a window).
  int64_t sliding_window = 0;
  std::vector<bool> layer_is_sliding;

  // Per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3).
  bool qk_norm = false;
  // Gemma 3: RMSNorm scales by (1 + weight); embeddings are multiplied by
  // sqrt(hidden_size); attention output and MLP output have their own norms
  // (post_attention_layernorm, pre/post_feedforward_layernorm).
  bool gemma_norms = false;
  // Attention scores scale by query_pre_attn_scalar^-0.5 when set (Gemma),
  // else head_dim^-0.5.
  double query_pre_attn_scalar = 0;
  // x -> cap * tanh(x / cap) on attention scores / final logits when set.
  double attn_logit_softcapping = 0;
  double final_logit_softcapping = 0;

  bool tie_word_embeddings = false;
  std::vector<int64_t> bos_token_ids;
  std::vector<int64_t> eos_token_ids;  // config.json allows one id or a list
  std::string torch_dtype = "float32";

  // head_dim * partial_rotary_factor: the rotated values of each head.
  int64_t RotaryDim() const;
  double AttentionScale() const;
  bool HasSlidingLayers() const;
  ModelShape Shape() const;
};

// Parses config.json text; `source` names it in errors. Refuses what this
// engine would compute wrongly, naming the field, its value and what is
// supported: another architecture, another activation, an unknown RoPE type,
// inconsistent sizes.
[[nodiscard]] absl::StatusOr<LlamaConfig> ParseLlamaConfig(
    const std::string& json_text, const std::string& source);
[[nodiscard]] absl::StatusOr<LlamaConfig> LoadLlamaConfig(
    const std::string& model_dir);

// config.json text as transformers writes it for the config's family.
std::string LlamaConfigToJson(const LlamaConfig& config);

// The family defaults transformers' config classes apply, for tests that build
// a model of `model_type`: Qwen2 q/k/v bias, Gemma 3 norms and activation.
void ApplyFamilyDefaults(LlamaConfig* config);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_LLAMA_CONFIG_H_
