// Llama weights in Hugging Face layout: loading a model directory (config.json
// plus model.safetensors or a sharded model.safetensors.index.json), writing
// one, and making seeded random weights for the tiny models tests and
// benchmarks build.
#ifndef OPENFORCE_LORA_CHECKPOINT_H_
#define OPENFORCE_LORA_CHECKPOINT_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/weight_format.h"
#include "lora/llama_config.h"
#include "lora/quantized_matrix.h"

namespace openforce::lora {

// The seven projections of a decoder layer, in PEFT's target-module vocabulary.
enum class Projection { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr Projection kAllProjections[] = {
    Projection::kQ,    Projection::kK,  Projection::kV,   Projection::kO,
    Projection::kGate, Projection::kUp, Projection::kDown};

// "q_proj", ..., "down_proj".
const char* ProjectionName(Projection projection);
// "self_attn.q_proj", ..., "mlp.down_proj": the module path inside a layer.
const char* ProjectionPath(Projection projection);
[[nodiscard]] absl::StatusOr<Projection> ParseProjection(
    const std::string& name);

struct LayerWeights {
  at::Tensor input_norm;  // [hidden]
  // Llama: before the MLP. Gemma 3: on the attention output.
  at::Tensor post_attention_norm;
  // Gemma 3 only: before and after the MLP.
  at::Tensor pre_feedforward_norm, post_feedforward_norm;
  // Qwen3 and Gemma 3: per-head norms of q and k, [head_dim].
  at::Tensor q_norm, k_norm;
  // Indexed by Projection: [out, in] as nn.Linear stores them.
  at::Tensor projection[7];
  // Indexed by Projection; defined only where the config has that bias.
  at::Tensor bias[7];
  // Indexed by Projection: the quantized form of a frozen base loaded with a
  // weight format; `projection` is then undefined (never both in memory).
  QuantizedMatrix quantized[7];

  at::Tensor& operator[](Projection p) {
    return projection[static_cast<int>(p)];
  }
  const at::Tensor& operator[](Projection p) const {
    return projection[static_cast<int>(p)];
  }
  const at::Tensor& Bias(Projection p) const {
    return bias[static_cast<int>(p)];
  }
  const QuantizedMatrix& Quantized(Projection p) const {
    return quantized[static_cast<int>(p)];
  }
};

// Whether `config`'s family puts a bias on `projection`.
bool HasBias(const LlamaConfig& config, Projection projection);

struct LlamaWeights {
  at::Tensor embed_tokens;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  at::Tensor final_norm;  // [hidden]
  at::Tensor
      lm_head;  // [vocab, hidden]; the same tensor as embed_tokens when tied
  // Set instead of embed_tokens and lm_head when they are quantized too
  // (LoadOptions.quantize_embeddings); one matrix when tied.
  QuantizedMatrix embed_tokens_quantized;
  QuantizedMatrix lm_head_quantized;
  // With a quantized base, as loaded: QuantizedBaseSha256 (the same on every
  // machine for the same files, format and embeddings choice; jobs record
  // it), and what became of the cache next to the model ("read", "written",
  // "none", or why it was ignored or not written).
  std::string quantized_sha256;
  std::string quantized_cache;
};

struct LoadOptions {
  // Weights are converted to this dtype (the compute dtype); F32 files loaded
  // as F32 on the CPU stay views of the memory-mapped file.
  at::ScalarType dtype = at::kFloat;
  std::string device = "cpu";
  // The seven projections of every layer quantized from the file's values
  // (weight_format.h); norms, embeddings and lm_head stay in `dtype`.
  WeightFormat quantization = WeightFormat::kNone;
  // With a quantization, also the embedding table and the output head (one
  // matrix when tied): on a 1B model with a 128k vocabulary the head is a
  // third of the bytes a decoded token reads. Lookups dequantize the rows
  // they read.
  bool quantize_embeddings = false;
  // With a quantization: map the quantized weights from the cache next to
  // the model (quantized_cache.h) when it matches the files as they are now,
  // and write one after quantizing. A cache that does not match is ignored
  // (LlamaWeights.quantized_cache says why) and, when writing, replaced; a
  // cache that cannot be written does not fail the load.
  bool read_quantized_cache = true;
  bool write_quantized_cache = false;
};

// Loads and validates a model directory: every expected tensor present with the
// shape config.json implies, nothing unexpected. Errors name the file and the
// tensor.
[[nodiscard]] absl::StatusOr<LlamaWeights> LoadLlamaWeights(
    const std::string& model_dir, const LlamaConfig& config,
    const LoadOptions& options);

// Replaces the seven projections of every layer (and with `embeddings`, the
// embedding table and output head) with their quantized form (what loading
// with LoadOptions does file by file), on the weights' device.
[[nodiscard]] absl::Status QuantizeBaseProjections(LlamaWeights* weights,
                                                   WeightFormat format,
                                                   bool embeddings = false);

// The quantized base's hash (QuantizedBaseSha256 over every quantized matrix
// by its Hugging Face tensor name); empty when nothing is quantized.
[[nodiscard]] absl::StatusOr<std::string> QuantizedBaseSha256(
    const LlamaWeights& weights);

// QuantizedBaseSha256 of the model in `model_dir` loaded with `options` (a
// quantization required): what each worker of a job computes when it loads
// the base. Reads a matching cache, and writes one when asked.
[[nodiscard]] absl::StatusOr<std::string> QuantizedBaseSha256OfModel(
    const std::string& model_dir, const LoadOptions& options);

// Writes config.json and model.safetensors with Hugging Face tensor names;
// with `num_shards` > 1, model-0000i-of-0000n.safetensors files of about equal
// size and model.safetensors.index.json, as transformers shards large models.
[[nodiscard]] absl::Status SaveLlamaCheckpoint(const std::string& model_dir,
                                               const LlamaConfig& config,
                                               const LlamaWeights& weights,
                                               int num_shards = 1);

// Seeded random weights, initialised as transformers does (normal with std
// `init_std`, 0.02 by default, for matrices and biases; ones for norms, zeros
// for Gemma's (1 + w) norms), in `dtype` on the CPU.
LlamaWeights RandomLlamaWeights(const LlamaConfig& config, uint64_t seed,
                                at::ScalarType dtype = at::kFloat,
                                double init_std = 0.02);

// The Hugging Face names and shapes of every tensor a checkpoint for `config`
// holds.
std::vector<std::pair<std::string, std::vector<int64_t>>> ExpectedTensors(
    const LlamaConfig& config);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_CHECKPOINT_H_
