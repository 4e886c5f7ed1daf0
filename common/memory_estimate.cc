// Parameter counts and memory estimates; see memory_estimate.h.
#include "common/memory_estimate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace openforce {
namespace {

int64_t HeadDim(const ModelShape& shape) {
  return shape.head_dim > 0 ? shape.head_dim
                            : shape.hidden_size / shape.num_attention_heads;
}

struct ProjectionShape {
  int64_t in = 0;
  int64_t out = 0;
};

// In/out features of one Llama projection by its module name.
absl::StatusOr<ProjectionShape> Projection(const ModelShape& shape,
                                           absl::string_view module) {
  const int64_t q_width = shape.num_attention_heads * HeadDim(shape);
  const int64_t kv_width = shape.num_key_value_heads * HeadDim(shape);
  if (module == "q_proj") return ProjectionShape{shape.hidden_size, q_width};
  if (module == "k_proj") return ProjectionShape{shape.hidden_size, kv_width};
  if (module == "v_proj") return ProjectionShape{shape.hidden_size, kv_width};
  if (module == "o_proj") return ProjectionShape{q_width, shape.hidden_size};
  if (module == "gate_proj") {
    return ProjectionShape{shape.hidden_size, shape.intermediate_size};
  }
  if (module == "up_proj")
    return ProjectionShape{shape.hidden_size, shape.intermediate_size};
  if (module == "down_proj") {
    return ProjectionShape{shape.intermediate_size, shape.hidden_size};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown LoRA target module '", module,
      "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"));
}

absl::Status CheckPositive(absl::string_view name, int64_t value) {
  if (value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be positive, got ", value));
  }
  return absl::OkStatus();
}

absl::Status ValidateWorkload(int64_t batch_size, int64_t sequence_length) {
  RETURN_IF_ERROR(CheckPositive("batch size", batch_size));
  return CheckPositive("sequence length", sequence_length);
}

uint64_t ToBytes(int64_t elements, int64_t bytes_per_element) {
  return static_cast<uint64_t>(elements) *
         static_cast<uint64_t>(bytes_per_element);
}

}  // namespace

int64_t DTypeBytes(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "float32" || name == "fp32" || name == "f32")
    return DType::kFloat32;
  if (name == "float16" || name == "fp16" || name == "f16")
    return DType::kFloat16;
  if (name == "bfloat16" || name == "bf16") return DType::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", name, "' (float32, float16, bfloat16)"));
}

absl::Status ValidateModelShape(const ModelShape& shape) {
  RETURN_IF_ERROR(CheckPositive("vocab_size", shape.vocab_size));
  RETURN_IF_ERROR(CheckPositive("hidden_size", shape.hidden_size));
  RETURN_IF_ERROR(CheckPositive("intermediate_size", shape.intermediate_size));
  RETURN_IF_ERROR(CheckPositive("num_hidden_layers", shape.num_hidden_layers));
  RETURN_IF_ERROR(
      CheckPositive("num_attention_heads", shape.num_attention_heads));
  RETURN_IF_ERROR(
      CheckPositive("num_key_value_heads", shape.num_key_value_heads));
  if (shape.head_dim < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must not be negative, got ", shape.head_dim));
  }
  if (shape.head_dim == 0 &&
      shape.hidden_size % shape.num_attention_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("hidden_size ", shape.hidden_size,
                     " is not divisible by num_attention_heads ",
                     shape.num_attention_heads));
  }
  if (shape.num_attention_heads % shape.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_attention_heads ", shape.num_attention_heads,
                     " is not divisible by num_key_value_heads ",
                     shape.num_key_value_heads));
  }
  return absl::OkStatus();
}

int64_t BaseParameterCount(const ModelShape& shape) {
  const int64_t h = shape.hidden_size;
  const int64_t q_width = shape.num_attention_heads * HeadDim(shape);
  const int64_t kv_width = shape.num_key_value_heads * HeadDim(shape);
  int64_t attention = h * q_width + 2 * h * kv_width + q_width * h;
  if (shape.attention_bias) attention += q_width + 2 * kv_width;
  const int64_t mlp = 3 * h * shape.intermediate_size;
  const int64_t norms = 2 * h;
  const int64_t per_layer = attention + mlp + norms;
  const int64_t embeddings = shape.vocab_size * h;
  const int64_t lm_head = shape.tie_word_embeddings ? 0 : shape.vocab_size * h;
  return embeddings + shape.num_hidden_layers * per_layer + h + lm_head;
}

absl::StatusOr<int64_t> LoraParameterCount(const ModelShape& shape,
                                           const LoraShape& lora) {
  RETURN_IF_ERROR(ValidateModelShape(shape));
  RETURN_IF_ERROR(CheckPositive("LoRA rank", lora.rank));
  if (lora.target_modules.empty()) {
    return absl::InvalidArgumentError("LoRA has no target modules");
  }
  int64_t per_layer = 0;
  for (size_t i = 0; i < lora.target_modules.size(); ++i) {
    const std::string& module = lora.target_modules[i];
    if (std::find(lora.target_modules.begin(), lora.target_modules.begin() + i,
                  module) != lora.target_modules.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("LoRA target module '", module, "' is listed twice"));
    }
    ASSIGN_OR_RETURN(ProjectionShape projection, Projection(shape, module));
    per_layer += lora.rank * (projection.in + projection.out);
  }
  return per_layer * shape.num_hidden_layers;
}

int64_t BaseWeightBytes(const ModelShape& shape, DType dtype,
                        WeightFormat base_format) {
  const int64_t bytes = DTypeBytes(dtype);
  if (base_format == WeightFormat::kNone)
    return BaseParameterCount(shape) * bytes;
  int64_t projections = 0, dense_projections = 0, largest = 0;
  for (absl::string_view module : kLoraTargetModules) {
    const ProjectionShape p = Projection(shape, module).value();
    projections += QuantizedMatrixBytes(base_format, p.out, p.in, bytes);
    dense_projections += p.out * p.in;
    largest = std::max(largest, p.out * p.in);
  }
  const int64_t rest =
      BaseParameterCount(shape) - shape.num_hidden_layers * dense_projections;
  return shape.num_hidden_layers * projections + rest * bytes +
         2 * largest * bytes;
}

absl::StatusOr<MemoryEstimate> EstimateInferenceMemory(
    const ModelShape& shape, DType weight_dtype, int64_t batch_size,
    int64_t sequence_length, WeightFormat base_format) {
  RETURN_IF_ERROR(ValidateModelShape(shape));
  RETURN_IF_ERROR(ValidateWorkload(batch_size, sequence_length));
  const int64_t bytes = DTypeBytes(weight_dtype);
  const int64_t tokens = batch_size * sequence_length;
  MemoryEstimate estimate;
  estimate.weights_bytes =
      static_cast<uint64_t>(BaseWeightBytes(shape, weight_dtype, base_format));
  estimate.kv_cache_bytes =
      ToBytes(2 * shape.num_hidden_layers * shape.num_key_value_heads *
                  HeadDim(shape) * tokens,
              bytes);
  // The prompt's prefill is the peak: one layer's working set for every prompt
  // token (hidden states, q/k/v, the MLP's two intermediate tensors and their
  // product), the attention scores of one layer, and fp32 logits for the last
  // position.
  const int64_t per_token = 4 * shape.hidden_size + 3 * shape.intermediate_size;
  const int64_t scores = batch_size * shape.num_attention_heads *
                         sequence_length * sequence_length;
  estimate.activation_bytes = ToBytes(tokens * per_token, bytes) +
                              ToBytes(scores, 4) +
                              ToBytes(batch_size * shape.vocab_size, 4);
  estimate.runtime_overhead_bytes = kRuntimeOverheadBytes;
  return estimate;
}

absl::StatusOr<MemoryEstimate> EstimateTrainingMemory(
    const ModelShape& shape, DType weight_dtype, const LoraShape& lora,
    int64_t batch_size, int64_t sequence_length, bool gradient_checkpointing,
    WeightFormat base_format) {
  RETURN_IF_ERROR(ValidateWorkload(batch_size, sequence_length));
  ASSIGN_OR_RETURN(int64_t lora_parameters, LoraParameterCount(shape, lora));
  const int64_t bytes = DTypeBytes(weight_dtype);
  const int64_t tokens = batch_size * sequence_length;
  const int64_t h = shape.hidden_size;
  const int64_t kv_width = shape.num_key_value_heads * HeadDim(shape);
  const int64_t i = shape.intermediate_size;
  MemoryEstimate estimate;
  estimate.weights_bytes =
      static_cast<uint64_t>(BaseWeightBytes(shape, weight_dtype, base_format));
  // Tensors autograd keeps per layer and token: two RMSNorm inputs and outputs
  // (4h), q/k/v before and after rotary embedding (2h + 4kv), the attention
  // output and the residual (2h), gate, up, SiLU(gate) and their product (4i)
  // plus down's input (i), and each LoRA target's input and rank-r
  // intermediate.
  int64_t per_token_layer = 8 * h + 4 * kv_width + 5 * i;
  for (const std::string& module : lora.target_modules) {
    ASSIGN_OR_RETURN(ProjectionShape projection, Projection(shape, module));
    per_token_layer += projection.in + lora.rank;
  }
  // Eager attention keeps its softmax output (heads x seq per token) for
  // backward; computed in fp32 and cast, both copies stay.
  const int64_t probabilities_per_token =
      shape.num_attention_heads * sequence_length;
  const int64_t probabilities_fp32_per_token =
      bytes == 4 ? 0 : probabilities_per_token;
  const int64_t per_layer =
      tokens * (per_token_layer + probabilities_per_token +
                probabilities_fp32_per_token * 4 / bytes);
  // Logits: lm_head's output in the weights' dtype, then fp32 logits, the
  // cross-entropy's log-softmax and the logits' gradient.
  const int64_t logits = tokens * shape.vocab_size;
  // With checkpointing only each layer's input is kept; one layer at a time is
  // recomputed with everything above during the backward pass.
  const int64_t kept = gradient_checkpointing
                           ? shape.num_hidden_layers * tokens * h + per_layer
                           : shape.num_hidden_layers * per_layer;
  estimate.activation_bytes =
      ToBytes(kept, bytes) + ToBytes(logits, 3 * 4 + bytes);
  // Parameter, gradient, and AdamW's two moments, fp32.
  estimate.adapter_state_bytes = ToBytes(lora_parameters, 16);
  estimate.runtime_overhead_bytes = kRuntimeOverheadBytes;
  return estimate;
}

}  // namespace openforce
