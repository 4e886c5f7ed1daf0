// Llama forward pass; see llama_model.h.
#include "lora/llama_model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <exception>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "lora/internal/bf16_gemv.h"
#include "lora/internal/layer_checkpoint.h"

namespace openforce::lora {
namespace {

// Norms, softmax and logits run in fp32 as transformers does, or in fp64 when
// the model itself is fp64 (gradient checks).
at::ScalarType AccumulateType(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// y = x W^T + b. A single row (token-by-token generation) is a matrix-vector
// product that should stream each weight once. On the CPU, fp32 goes through
// sgemv: OpenBLAS's sgemm packs the whole weight even for one row (16 vs 49
// GB/s on the reference machine). bf16 goes through the AVX-512-BF16 kernel
// where the CPU has it, since libtorch's one-row bf16 matmul streams only 12-16
// GB/s there.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& bias) {
  const bool single_row = x.numel() == x.size(-1);
  if (single_row && weight.device().is_cpu() && !at::GradMode::is_enabled() &&
      x.scalar_type() == weight.scalar_type()) {
    at::Tensor y;
    if (weight.scalar_type() == at::kFloat) {
      y = at::mv(weight, x.reshape({-1}));
    } else if (weight.scalar_type() == at::kBFloat16 &&
               weight.is_contiguous() && internal::Bf16GemvAvailable()) {
      y = internal::Bf16Gemv(weight, x.reshape({-1})).to(at::kBFloat16);
    }
    if (y.defined()) {
      std::vector<int64_t> shape = x.sizes().vec();
      shape.back() = weight.size(0);
      if (bias.defined()) y = y + bias;
      return y.view(shape);
    }
  }
  return at::linear(x, weight, bias);
}

at::Tensor RotateHalf(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor Activate(const at::Tensor& x, Activation activation) {
  switch (activation) {
    case Activation::kSilu:
      return at::silu(x);
    case Activation::kGeluTanh:
      return at::gelu(x, "tanh");
    case Activation::kGelu:
      return at::gelu(x);
    case Activation::kRelu:
      return at::relu(x);
  }
  return at::silu(x);
}

at::Tensor Softcap(const at::Tensor& x, double cap) {
  return at::tanh(x / cap) * cap;
}

// Additive mask [1, group * seq, total]: the query at absolute position
// past + i sees keys j <= past + i, and with a window only j > past + i -
// window. Rows are ordered (group member, position) to match the grouped
// queries in Attention().
at::Tensor AttentionMask(int64_t past, int64_t seq, int64_t group,
                         int64_t window, at::ScalarType dtype,
                         const at::Device& device) {
  const int64_t total = past + seq;
  const auto long_options = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor query_pos = at::arange(past, total, long_options).unsqueeze(1);
  at::Tensor key_pos = at::arange(0, total, long_options).unsqueeze(0);
  at::Tensor blocked = key_pos > query_pos;
  if (window > 0) blocked = blocked.logical_or(key_pos <= query_pos - window);
  return at::zeros({group * seq, total},
                   at::TensorOptions().dtype(dtype).device(device))
      .masked_fill_(blocked.repeat({group, 1}),
                    -std::numeric_limits<float>::infinity())
      .unsqueeze(0);
}

// The adapter's tensors in `layer`, through which a checkpointed layer's
// gradients flow.
std::vector<at::Tensor> LayerParameters(const LoraAdapter* adapter,
                                        size_t layer) {
  std::vector<at::Tensor> parameters;
  if (adapter == nullptr) return parameters;
  for (Projection p : kAllProjections) {
    const LoraPair* pair = adapter->Find(layer, p);
    if (pair == nullptr) continue;
    parameters.push_back(pair->a);
    parameters.push_back(pair->b);
  }
  return parameters;
}

}  // namespace

struct LlamaModel::Context {
  int64_t past = 0;
  at::Tensor cos, sin;                 // [seq, rotary_dim] in the model dtype
  at::Tensor local_cos, local_sin;     // sliding layers, when they differ
  at::Tensor full_mask, sliding_mask;  // undefined for a single position
};

KvCache KvCache::Create(const LlamaConfig& config, int64_t batch,
                        int64_t capacity, at::ScalarType dtype,
                        const at::Device& device) {
  KvCache cache;
  cache.capacity = capacity;
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    cache.keys.push_back(at::empty(
        {batch, config.num_key_value_heads, capacity, config.head_dim},
        options));
    cache.values.push_back(at::empty(
        {batch, config.num_key_value_heads, capacity, config.head_dim},
        options));
  }
  return cache;
}

LlamaModel::LlamaModel(LlamaConfig config, LlamaWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  global_rotary_ = ComputeRotaryFrequencies(
      config_.rope_scaling, config_.rope_theta, config_.RotaryDim(),
      config_.max_position_embeddings, /*seq_len=*/0);
  if (config_.rope_local_base_freq > 0) {
    local_rotary_ = ComputeRotaryFrequencies(
        RopeScaling(), config_.rope_local_base_freq, config_.RotaryDim(),
        config_.max_position_embeddings, /*seq_len=*/0);
  }
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(
    const std::string& model_dir, const LoadOptions& options) {
  ASSIGN_OR_RETURN(LlamaConfig config, LoadLlamaConfig(model_dir));
  ASSIGN_OR_RETURN(LlamaWeights weights,
                   LoadLlamaWeights(model_dir, config, options));
  try {
    return std::make_unique<LlamaModel>(std::move(config), std::move(weights));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("set up model ", model_dir, ": ", e.what()));
  }
}

at::Tensor LlamaModel::RmsNorm(const at::Tensor& x,
                               const at::Tensor& weight) const {
  at::Tensor h = x.to(AccumulateType(x.scalar_type()));
  h = h * at::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + config_.rms_norm_eps);
  // Gemma scales by (1 + w) in fp32, then casts; Llama casts, then scales.
  if (config_.gemma_norms) {
    return (h * (1.0 + weight.to(h.scalar_type()))).to(x.scalar_type());
  }
  return weight * h.to(x.scalar_type());
}

at::Tensor LlamaModel::Project(const at::Tensor& x, size_t layer,
                               Projection projection, const at::Tensor& bias,
                               ForwardOptions& options) const {
  const LayerWeights& w = weights_.layers[layer];
  at::Tensor y = w.Quantized(projection).defined()
                     ? QuantizedLinear(x, w.Quantized(projection), bias)
                     : Linear(x, w[projection], bias);
  if (options.adapter == nullptr) return y;
  const LoraPair* pair = options.adapter->Find(layer, projection);
  if (pair == nullptr) return y;
  // PEFT: the LoRA branch runs in the adapter's dtype (fp32) and is added in
  // the result's dtype.
  at::Tensor h = x.to(pair->a.scalar_type());
  const double dropout = options.adapter->config().dropout;
  if (options.training && dropout > 0) {
    at::Tensor keep =
        at::empty_like(h).bernoulli_(1.0 - dropout, options.dropout_generator);
    h = h * keep / (1.0 - dropout);
  }
  at::Tensor lora = at::linear(at::linear(h, pair->a), pair->b) *
                    options.adapter->config().Scaling();
  return (y + lora.to(y.scalar_type()));
}

at::Tensor LlamaModel::ApplyRotary(const at::Tensor& x, const at::Tensor& cos,
                                   const at::Tensor& sin) const {
  const int64_t rotary = cos.size(-1);
  if (rotary == x.size(-1)) return x * cos + RotateHalf(x) * sin;
  // Partial rotation: the first `rotary` values of each head turn, the rest
  // pass through.
  at::Tensor turned = x.narrow(-1, 0, rotary);
  at::Tensor passed = x.narrow(-1, rotary, x.size(-1) - rotary);
  return at::cat({turned * cos + RotateHalf(turned) * sin, passed}, -1);
}

at::Tensor LlamaModel::Attention(const at::Tensor& x, size_t layer,
                                 const Context& context,
                                 ForwardOptions& options) const {
  const int64_t batch = x.size(0), seq = x.size(1);
  const int64_t heads = config_.num_attention_heads,
                kv_heads = config_.num_key_value_heads;
  const int64_t dim = config_.head_dim, group = heads / kv_heads;
  const LayerWeights& w = weights_.layers[layer];
  const bool sliding =
      config_.sliding_window > 0 && config_.layer_is_sliding[layer];

  at::Tensor q =
      Project(x, layer, Projection::kQ, w.Bias(Projection::kQ), options)
          .view({batch, seq, heads, dim});
  at::Tensor k =
      Project(x, layer, Projection::kK, w.Bias(Projection::kK), options)
          .view({batch, seq, kv_heads, dim});
  at::Tensor v =
      Project(x, layer, Projection::kV, w.Bias(Projection::kV), options)
          .view({batch, seq, kv_heads, dim})
          .transpose(1, 2);
  if (config_.qk_norm) {
    q = RmsNorm(q, w.q_norm);
    k = RmsNorm(k, w.k_norm);
  }
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  const bool local = sliding && context.local_cos.defined();
  q = ApplyRotary(q, local ? context.local_cos : context.cos,
                  local ? context.local_sin : context.sin);
  k = ApplyRotary(k, local ? context.local_cos : context.cos,
                  local ? context.local_sin : context.sin);

  const int64_t past = context.past;
  int64_t total = seq;
  if (options.cache != nullptr) {
    KvCache& cache = *options.cache;
    cache.keys[layer].narrow(2, past, seq).copy_(k);
    cache.values[layer].narrow(2, past, seq).copy_(v);
    total = past + seq;
    k = cache.keys[layer].narrow(2, 0, total);
    v = cache.values[layer].narrow(2, 0, total);
  }

  const double scale = config_.AttentionScale();
  const double softcap = config_.attn_logit_softcapping;
  const at::ScalarType accumulate = AccumulateType(q.scalar_type());
  if (seq == 1 && sliding && total > config_.sliding_window) {
    // A single new position needs no mask: a sliding layer reads only the
    // last sliding_window keys of the cache.
    const int64_t first = total - config_.sliding_window;
    k = k.narrow(2, first, config_.sliding_window);
    v = v.narrow(2, first, config_.sliding_window);
    total = config_.sliding_window;
  }
  at::Tensor out;
  if (seq == 1 && !at::GradMode::is_enabled()) {
    // One new position while generating: broadcast products read the cached
    // keys and values in place. A batched matmul would first copy the cache
    // slice (its rows are strided by the cache capacity) and pay per-matrix
    // dispatch for 1-row products.
    at::Tensor grouped_q = q.reshape({batch, kv_heads, group, 1, dim});
    at::Tensor scores =
        (grouped_q * k.unsqueeze(2)).sum(-1).mul_(scale);  // [b, kv, g, t]
    if (softcap > 0) scores = Softcap(scores, softcap);
    at::Tensor probs =
        accumulate == scores.scalar_type()
            ? at::softmax(scores, -1)
            : at::softmax(scores, -1, accumulate).to(v.scalar_type());
    out = (probs.unsqueeze(-1) * v.unsqueeze(2))
              .sum(3)
              .reshape({batch, seq, heads * dim});
  } else {
    // Grouped-query attention without materialising repeated keys: the `group`
    // query heads that share kv head j become extra rows of one batched matmul
    // against that head. Query head h = j * group + r uses kv head j, exactly
    // as transformers' repeat_kv. Scale and mask ride along in baddbmm: no
    // separate division or masked_fill in the forward pass, and none in the
    // backward pass either.
    const at::Tensor& mask = sliding ? context.sliding_mask : context.full_mask;
    at::Tensor grouped_q = q.reshape({batch * kv_heads, group * seq, dim});
    at::Tensor keys_t =
        k.reshape({batch * kv_heads, total, dim}).transpose(1, 2);
    at::Tensor scores;
    if (softcap > 0) {
      scores = Softcap(at::bmm(grouped_q, keys_t).mul_(scale), softcap);
      if (mask.defined()) scores = scores + mask;
    } else {
      scores = mask.defined() ? at::baddbmm(mask, grouped_q, keys_t, 1.0, scale)
                              : at::bmm(grouped_q, keys_t).mul_(scale);
    }
    // Softmax in fp32 (fp64 for an fp64 model); already-fp32 scores skip the
    // dtype argument, whose kernels are several times slower in libtorch 1.13.
    at::Tensor probs =
        accumulate == scores.scalar_type()
            ? at::softmax(scores, -1)
            : at::softmax(scores, -1, accumulate).to(q.scalar_type());
    out = at::bmm(probs, v.reshape({batch * kv_heads, total, dim}))
              .view({batch, heads, seq, dim})
              .transpose(1, 2)
              .reshape({batch, seq, heads * dim});
  }
  return Project(out, layer, Projection::kO, w.Bias(Projection::kO), options);
}

at::Tensor LlamaModel::Mlp(const at::Tensor& x, size_t layer,
                           ForwardOptions& options) const {
  const LayerWeights& w = weights_.layers[layer];
  at::Tensor gate =
      Project(x, layer, Projection::kGate, w.Bias(Projection::kGate), options);
  at::Tensor up =
      Project(x, layer, Projection::kUp, w.Bias(Projection::kUp), options);
  return Project(Activate(gate, config_.hidden_act) * up, layer,
                 Projection::kDown, w.Bias(Projection::kDown), options);
}

at::Tensor LlamaModel::DecoderLayer(const at::Tensor& h, size_t layer,
                                    const Context& context,
                                    ForwardOptions& options) const {
  const LayerWeights& w = weights_.layers[layer];
  if (config_.gemma_norms) {
    // Gemma 3: each block's output is normalised before the residual add.
    at::Tensor attended =
        RmsNorm(Attention(RmsNorm(h, w.input_norm), layer, context, options),
                w.post_attention_norm);
    at::Tensor mid = h + attended;
    return mid +
           RmsNorm(Mlp(RmsNorm(mid, w.pre_feedforward_norm), layer, options),
                   w.post_feedforward_norm);
  }
  at::Tensor mid =
      h + Attention(RmsNorm(h, w.input_norm), layer, context, options);
  return mid + Mlp(RmsNorm(mid, w.post_attention_norm), layer, options);
}

at::Tensor LlamaModel::Forward(const at::Tensor& input_ids,
                               ForwardOptions& options) const {
  TORCH_CHECK(input_ids.dim() == 2, "input_ids must be [batch, seq]");
  const int64_t seq = input_ids.size(1);
  const int64_t past = options.cache != nullptr ? options.cache->length : 0;
  if (options.cache != nullptr) {
    TORCH_CHECK(past + seq <= options.cache->capacity, "KV cache holds ",
                options.cache->capacity, " positions; ", past + seq,
                " requested");
  }
  at::Tensor ids = input_ids.to(device(), at::kLong);
  at::Tensor h =
      weights_.embed_tokens_quantized.defined()
          ? DequantizeRows(weights_.embed_tokens_quantized, ids, dtype())
          : at::embedding(weights_.embed_tokens, ids);
  if (config_.gemma_norms) {
    // Gemma scales embeddings by sqrt(hidden) rounded to the weights' dtype.
    h = h *
        at::scalar_tensor(std::sqrt(static_cast<double>(config_.hidden_size)),
                          at::TensorOptions().dtype(at::kFloat))
            .to(dtype())
            .to(device());
  }

  Context context;
  context.past = past;
  at::Tensor positions = at::arange(
      past, past + seq, at::TensorOptions().dtype(at::kFloat).device(device()));
  const RotaryFrequencies rotary =
      config_.rope_scaling.type == RopeType::kDynamic
          ? ComputeRotaryFrequencies(
                config_.rope_scaling, config_.rope_theta, config_.RotaryDim(),
                config_.max_position_embeddings, past + seq)
          : global_rotary_;
  RotaryTables(rotary, positions, &context.cos, &context.sin);
  context.cos = context.cos.to(dtype());
  context.sin = context.sin.to(dtype());
  if (local_rotary_.inv_freq.defined()) {
    RotaryTables(local_rotary_, positions, &context.local_cos,
                 &context.local_sin);
    context.local_cos = context.local_cos.to(dtype());
    context.local_sin = context.local_sin.to(dtype());
  }
  if (seq > 1) {
    const int64_t group =
        config_.num_attention_heads / config_.num_key_value_heads;
    context.full_mask = AttentionMask(past, seq, group, 0, dtype(), device());
    if (config_.HasSlidingLayers()) {
      context.sliding_mask = AttentionMask(
          past, seq, group, config_.sliding_window, dtype(), device());
    }
  }

  const bool checkpointing =
      options.gradient_checkpointing && at::GradMode::is_enabled();
  for (size_t layer = 0; layer < weights_.layers.size(); ++layer) {
    if (!checkpointing) {
      h = DecoderLayer(h, layer, context, options);
      continue;
    }
    // The recomputation runs after Forward returns: capture copies.
    ForwardOptions layer_options;
    layer_options.adapter = options.adapter;
    layer_options.training = options.training;
    h = internal::CheckpointedLayer(
        h,
        [this, layer, context, layer_options](const at::Tensor& input,
                                              at::Generator generator) {
          ForwardOptions recompute = layer_options;
          recompute.dropout_generator = std::move(generator);
          return DecoderLayer(input, layer, context, recompute);
        },
        LayerParameters(options.adapter, layer), options.dropout_generator);
  }
  if (options.cache != nullptr) options.cache->length = past + seq;
  if (options.last_position_only) h = h.narrow(1, seq - 1, 1);
  h = RmsNorm(h, weights_.final_norm);
  at::Tensor logits =
      (weights_.lm_head_quantized.defined()
           ? QuantizedLinear(h, weights_.lm_head_quantized, at::Tensor())
           : Linear(h, weights_.lm_head, at::Tensor()))
          .to(AccumulateType(dtype()));
  if (config_.final_logit_softcapping > 0) {
    logits = Softcap(logits, config_.final_logit_softcapping);
  }
  return logits;
}

}  // namespace openforce::lora
