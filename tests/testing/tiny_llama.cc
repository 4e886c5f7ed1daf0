// Tiny checkpoints for tests; see tiny_llama.h.
#include "tests/testing/tiny_llama.h"

#include <stdexcept>

#include "lora/tokenizer.h"

namespace openforce::testing {

lora::LlamaConfig TinyLlamaConfig() {
  lora::LlamaConfig config;
  config.vocab_size = 259;
  config.hidden_size = 32;
  config.intermediate_size = 64;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 8;
  config.max_position_embeddings = 256;
  config.rms_norm_eps = 1e-5;
  config.bos_token_ids = {1};
  config.eos_token_ids = {2};
  return config;
}

std::string WriteTinyLlama(const std::string& dir,
                           const lora::LlamaConfig& config, uint64_t seed,
                           double init_std) {
  lora::LlamaWeights weights =
      lora::RandomLlamaWeights(config, seed, at::kFloat, init_std);
  absl::Status saved = lora::SaveLlamaCheckpoint(dir, config, weights);
  if (saved.ok()) saved = lora::WriteByteTokenizerMarker(dir);
  if (!saved.ok()) throw std::runtime_error(std::string(saved.message()));
  return dir;
}

lora::LlamaConfig Llama32OneBConfig() {
  lora::LlamaConfig config;
  config.model_type = "llama";
  config.vocab_size = 128256;
  config.hidden_size = 2048;
  config.intermediate_size = 8192;
  config.num_hidden_layers = 16;
  config.num_attention_heads = 32;
  config.num_key_value_heads = 8;
  config.head_dim = 64;
  config.max_position_embeddings = 131072;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 500000;
  config.rope_scaling.type = lora::RopeType::kLlama3;
  config.rope_scaling.factor = 32;
  config.rope_scaling.low_freq_factor = 1;
  config.rope_scaling.high_freq_factor = 4;
  config.rope_scaling.original_max_position_embeddings = 8192;
  config.tie_word_embeddings = true;
  config.bos_token_ids = {128000};
  config.eos_token_ids = {128001};
  config.torch_dtype = "bfloat16";
  config.layer_is_sliding.assign(16, false);
  return config;
}

}  // namespace openforce::testing
