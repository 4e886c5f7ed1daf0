// Parameter counts and memory estimates for Llama-family models: how many bytes
// inference and LoRA training need for a model shape, dtype, LoRA config, batch
// and sequence length. The scheduler leases a unit only when this fits a
// worker's free memory minus its owner's headroom; `openforce-worker probe`
// uses it to advise what a machine can run.
#ifndef OPENFORCE_COMMON_MEMORY_ESTIMATE_H_
#define OPENFORCE_COMMON_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/weight_format.h"

namespace openforce {

// The fields of a Hugging Face LlamaForCausalLM config.json that decide sizes.
struct ModelShape {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // grouped-query attention when < heads
  int64_t head_dim = 0;             // 0: hidden_size / num_attention_heads
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases, as Qwen2 has
};

enum class DType { kFloat32, kFloat16, kBFloat16 };
int64_t DTypeBytes(DType dtype);
absl::string_view DTypeName(DType dtype);
[[nodiscard]] absl::StatusOr<DType> ParseDType(absl::string_view name);

// The seven Llama projections LoRA can wrap, by their Hugging Face module
// names.
inline constexpr absl::string_view kLoraTargetModules[] = {
    "q_proj",    "k_proj",  "v_proj",   "o_proj",
    "gate_proj", "up_proj", "down_proj"};

struct LoraShape {
  int64_t rank = 8;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
};

// InvalidArgument naming the field when a size is not positive or heads do not
// divide.
[[nodiscard]] absl::Status ValidateModelShape(const ModelShape& shape);

// Exact parameter count of the base model (embeddings, all layers, norms,
// lm_head unless tied). The shape must be valid.
int64_t BaseParameterCount(const ModelShape& shape);

// Exact trainable parameter count of LoRA on `lora.target_modules` of every
// layer.
[[nodiscard]] absl::StatusOr<int64_t> LoraParameterCount(
    const ModelShape& shape, const LoraShape& lora);

// Bytes of the frozen base: the seven projections of every layer in
// `base_format` (quantized blocks, weight_format.h) or `dtype`; norms,
// biases, embeddings and the output head in `dtype`. With a quantized base,
// also the one projection dequantized at a time into `dtype` (twice: the
// forward's and the backward's). The shape must be valid.
int64_t BaseWeightBytes(const ModelShape& shape, DType dtype,
                        WeightFormat base_format);

struct MemoryEstimate {
  uint64_t weights_bytes = 0;
  uint64_t kv_cache_bytes = 0;
  uint64_t activation_bytes = 0;
  // LoRA parameters, gradients and AdamW moments, all fp32.
  uint64_t adapter_state_bytes = 0;
  // Runtime workspace: allocator slack, library buffers, a CUDA context.
  uint64_t runtime_overhead_bytes = 0;

  uint64_t total_bytes() const {
    return weights_bytes + kv_cache_bytes + activation_bytes +
           adapter_state_bytes + runtime_overhead_bytes;
  }
};

inline constexpr uint64_t kRuntimeOverheadBytes = 512ull * 1024 * 1024;

// Generation with a KV cache: prompt and output together fill
// `sequence_length`.
[[nodiscard]] absl::StatusOr<MemoryEstimate> EstimateInferenceMemory(
    const ModelShape& shape, DType weight_dtype, int64_t batch_size,
    int64_t sequence_length, WeightFormat base_format = WeightFormat::kNone);

// One LoRA training step (QLoRA with a quantized `base_format`): frozen
// weights as BaseWeightBytes counts them, activations kept
// for the backward pass in the same dtype (eager attention keeps its
// probabilities), fp32 logits for the loss, fp32 LoRA state. With
// `gradient_checkpointing` only each layer's input is kept, plus one layer's
// activations while it is recomputed.
[[nodiscard]] absl::StatusOr<MemoryEstimate> EstimateTrainingMemory(
    const ModelShape& shape, DType weight_dtype, const LoraShape& lora,
    int64_t batch_size, int64_t sequence_length,
    bool gradient_checkpointing = false,
    WeightFormat base_format = WeightFormat::kNone);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_MEMORY_ESTIMATE_H_
