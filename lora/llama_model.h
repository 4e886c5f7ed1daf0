// The decoder-only Llama-family architecture as transformers' modeling code
// computes it (LlamaForCausalLM, Mistral, Qwen2, Qwen3, Gemma3ForCausalLM):
// token embedding (scaled for Gemma), RMSNorm in fp32 (w * x or (1 + w) * x),
// rotary position embeddings (rotate-half; scaled RoPE types; partial
// rotation; Gemma's second table for sliding layers), grouped-query attention
// with a causal or sliding-window mask (softmax in fp32; optional q/k norms,
// score softcapping), gated MLP (SiLU or GELU), the family's biases, tied or
// separate lm_head. LoRA adapters apply unmerged, PEFT-style: base(x) +
// B(A(dropout(x))) * scaling. A KV cache serves incremental generation; a
// sliding layer reads only its window of it. Functions here throw c10::Error;
// the public entry points of lora catch it.
#ifndef OPENFORCE_LORA_LLAMA_MODEL_H_
#define OPENFORCE_LORA_LLAMA_MODEL_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/checkpoint.h"
#include "lora/llama_config.h"
#include "lora/lora_adapter.h"
#include "lora/rotary.h"

namespace openforce::lora {

// Keys and values of every layer for the positions processed so far.
struct KvCache {
  std::vector<at::Tensor>
      keys;  // per layer [batch, kv_heads, capacity, head_dim]
  std::vector<at::Tensor> values;  // same
  int64_t length = 0;              // positions filled
  int64_t capacity = 0;

  static KvCache Create(const LlamaConfig& config, int64_t batch,
                        int64_t capacity, at::ScalarType dtype,
                        const at::Device& device);
};

struct ForwardOptions {
  const LoraAdapter* adapter = nullptr;  // applied unmerged when set
  bool training = false;  // LoRA dropout is active only while training
  at::Generator dropout_generator;  // required when training with dropout > 0
  KvCache* cache = nullptr;  // appended to; positions continue from its length
  bool last_position_only = false;  // logits for the final position only
  // Recompute each decoder layer's activations in the backward pass instead
  // of keeping them: memory for one layer instead of all, for one more
  // forward's compute. Only meaningful while gradients are recorded.
  bool gradient_checkpointing = false;
};

class LlamaModel {
 public:
  LlamaModel(LlamaConfig config, LlamaWeights weights);

  // Reads config.json and the weights of a Hugging Face model directory.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(
      const std::string& model_dir, const LoadOptions& options);

  // input_ids: [batch, seq] int64. Returns fp32 logits [batch, seq (or 1),
  // vocab].
  at::Tensor Forward(const at::Tensor& input_ids,
                     ForwardOptions& options) const;

  // What every layer of one forward shares: rotary tables and masks.
  struct Context;
  // One decoder layer: hidden states in, hidden states out.
  at::Tensor DecoderLayer(const at::Tensor& h, size_t layer,
                          const Context& context,
                          ForwardOptions& options) const;

  const LlamaConfig& config() const { return config_; }
  LlamaWeights& weights() { return weights_; }
  const LlamaWeights& weights() const { return weights_; }
  // The norms are never quantized: they carry the compute dtype and device.
  at::ScalarType dtype() const { return weights_.final_norm.scalar_type(); }
  at::Device device() const { return weights_.final_norm.device(); }

 private:
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight) const;
  at::Tensor Project(const at::Tensor& x, size_t layer, Projection projection,
                     const at::Tensor& bias, ForwardOptions& options) const;
  at::Tensor ApplyRotary(const at::Tensor& x, const at::Tensor& cos,
                         const at::Tensor& sin) const;
  at::Tensor Attention(const at::Tensor& x, size_t layer,
                       const Context& context, ForwardOptions& options) const;
  at::Tensor Mlp(const at::Tensor& x, size_t layer,
                 ForwardOptions& options) const;

  LlamaConfig config_;
  LlamaWeights weights_;
  // Fixed frequencies (every type but dynamic); sliding layers of Gemma use
  // local_rotary_.
  RotaryFrequencies global_rotary_;
  RotaryFrequencies local_rotary_;
};

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_LLAMA_MODEL_H_
