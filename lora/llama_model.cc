// Llama forward pass; see llama_model.h.
#include "lora/llama_model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <exception>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "lora/internal/bf16_gemv.h"

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

}  // namespace

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
  const int64_t dim = config_.head_dim;
  inv_freq_ =
      1.0 / at::pow(config_.rope_theta,
                    at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong))
                            .to(at::kFloat) /
                        static_cast<double>(dim));
  inv_freq_ = inv_freq_.to(device());
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
  // transformers: normalise in fp32, cast back, then scale.
  at::Tensor h = x.to(AccumulateType(x.scalar_type()));
  h = h * at::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + config_.rms_norm_eps);
  return weight * h.to(x.scalar_type());
}

at::Tensor LlamaModel::Project(const at::Tensor& x, size_t layer,
                               Projection projection, const at::Tensor& bias,
                               ForwardOptions& options) const {
  at::Tensor y = Linear(x, weights_.layers[layer][projection], bias);
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

at::Tensor LlamaModel::Attention(const at::Tensor& x, size_t layer,
                                 const at::Tensor& cos, const at::Tensor& sin,
                                 const at::Tensor& causal_mask, int64_t past,
                                 ForwardOptions& options) const {
  const int64_t batch = x.size(0), seq = x.size(1);
  const int64_t heads = config_.num_attention_heads,
                kv_heads = config_.num_key_value_heads;
  const int64_t dim = config_.head_dim, group = heads / kv_heads;
  const LayerWeights& w = weights_.layers[layer];

  at::Tensor q = Project(x, layer, Projection::kQ, w.q_bias, options)
                     .view({batch, seq, heads, dim})
                     .transpose(1, 2);
  at::Tensor k = Project(x, layer, Projection::kK, w.k_bias, options)
                     .view({batch, seq, kv_heads, dim})
                     .transpose(1, 2);
  at::Tensor v = Project(x, layer, Projection::kV, w.v_bias, options)
                     .view({batch, seq, kv_heads, dim})
                     .transpose(1, 2);
  q = q * cos + RotateHalf(q) * sin;
  k = k * cos + RotateHalf(k) * sin;

  int64_t total = seq;
  if (options.cache != nullptr) {
    KvCache& cache = *options.cache;
    cache.keys[layer].narrow(2, past, seq).copy_(k);
    cache.values[layer].narrow(2, past, seq).copy_(v);
    total = past + seq;
    k = cache.keys[layer].narrow(2, 0, total);
    v = cache.values[layer].narrow(2, 0, total);
  }

  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  const at::ScalarType accumulate = AccumulateType(q.scalar_type());
  at::Tensor out;
  if (seq == 1 && !at::GradMode::is_enabled()) {
    // One new position while generating: broadcast products read the cached
    // keys and values in place. A batched matmul would first copy the cache
    // slice (its rows are strided by the cache capacity) and pay per-matrix
    // dispatch for 1-row products.
    at::Tensor grouped_q = q.reshape({batch, kv_heads, group, 1, dim});
    at::Tensor scores =
        (grouped_q * k.unsqueeze(2)).sum(-1).mul_(scale);  // [b, kv, g, t]
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
    // as transformers' repeat_kv. Scale and causal mask ride along in baddbmm:
    // no separate division or masked_fill in the forward pass, and none in the
    // backward pass either.
    at::Tensor grouped_q = q.reshape({batch * kv_heads, group * seq, dim});
    at::Tensor keys_t =
        k.reshape({batch * kv_heads, total, dim}).transpose(1, 2);
    at::Tensor scores =
        causal_mask.defined()
            ? at::baddbmm(causal_mask, grouped_q, keys_t, 1.0, scale)
            : at::bmm(grouped_q, keys_t).mul_(scale);
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
  return Project(out, layer, Projection::kO, at::Tensor(), options);
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
  at::Tensor h = at::embedding(weights_.embed_tokens, ids);

  at::Tensor positions = at::arange(
      past, past + seq, at::TensorOptions().dtype(at::kFloat).device(device()));
  at::Tensor freqs = at::outer(positions, inv_freq_);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos =
      emb.cos().to(dtype());  // [seq, dim], broadcast over batch and heads
  at::Tensor sin = emb.sin().to(dtype());

  // Additive causal mask, shared by every layer: the query at absolute position
  // past + i sees keys at positions <= past + i. Rows are ordered (group
  // member, position) to match the grouped queries in Attention(). A single new
  // position sees everything.
  at::Tensor causal_mask;
  if (seq > 1) {
    const int64_t total = past + seq;
    const int64_t group =
        config_.num_attention_heads / config_.num_key_value_heads;
    const auto long_options =
        at::TensorOptions().dtype(at::kLong).device(device());
    at::Tensor query_pos = at::arange(past, total, long_options);
    at::Tensor key_pos = at::arange(0, total, long_options);
    at::Tensor blocked =
        (key_pos.unsqueeze(0) > query_pos.unsqueeze(1)).repeat({group, 1});
    causal_mask =
        at::zeros({group * seq, total},
                  at::TensorOptions().dtype(dtype()).device(device()))
            .masked_fill_(blocked, -std::numeric_limits<float>::infinity())
            .unsqueeze(0);
  }

  for (size_t layer = 0; layer < weights_.layers.size(); ++layer) {
    const LayerWeights& w = weights_.layers[layer];
    h = h + Attention(RmsNorm(h, w.input_norm), layer, cos, sin, causal_mask,
                      past, options);
    at::Tensor x = RmsNorm(h, w.post_attention_norm);
    at::Tensor gate =
        Project(x, layer, Projection::kGate, at::Tensor(), options);
    at::Tensor up = Project(x, layer, Projection::kUp, at::Tensor(), options);
    h = h + Project(at::silu(gate) * up, layer, Projection::kDown, at::Tensor(),
                    options);
  }
  if (options.cache != nullptr) options.cache->length = past + seq;
  if (options.last_position_only) h = h.narrow(1, seq - 1, 1);
  h = RmsNorm(h, weights_.final_norm);
  return Linear(h, weights_.lm_head, at::Tensor()).to(AccumulateType(dtype()));
}

}  // namespace openforce::lora
