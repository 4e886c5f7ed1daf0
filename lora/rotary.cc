// Rotary frequencies; see rotary.h. Each branch follows the function of the
// same rope type in transformers' modeling_rope_utils.py, in fp32 where it
// computes in fp32, so tables agree to the last bits.
#include "lora/rotary.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace openforce::lora {
namespace {

at::Tensor DefaultInvFreq(double base, int64_t dim) {
  at::Tensor exponents =
      at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong))
          .to(at::kFloat) /
      static_cast<double>(dim);
  return 1.0 / at::pow(base, exponents);
}

double YarnMscale(double scale, double mscale) {
  if (scale <= 1) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

// The dimension index at which a wavelength completes `rotations` turns over
// the original context.
double YarnCorrectionDim(double rotations, int64_t dim, double base,
                         double original_max) {
  return (static_cast<double>(dim) *
          std::log(original_max / (rotations * 2 * M_PI))) /
         (2 * std::log(base));
}

}  // namespace

RotaryFrequencies ComputeRotaryFrequencies(const RopeScaling& scaling,
                                           double base, int64_t dim,
                                           int64_t max_position_embeddings,
                                           int64_t seq_len) {
  RotaryFrequencies out;
  const double original_max =
      scaling.original_max_position_embeddings > 0
          ? static_cast<double>(scaling.original_max_position_embeddings)
          : static_cast<double>(max_position_embeddings);
  const double factor = scaling.factor;
  switch (scaling.type) {
    case RopeType::kDefault:
      out.inv_freq = DefaultInvFreq(base, dim);
      break;
    case RopeType::kLinear:
      out.inv_freq = DefaultInvFreq(base, dim) / factor;
      break;
    case RopeType::kDynamic: {
      // NTK-aware: beyond the original context the base grows with the
      // sequence; within it, plain RoPE.
      const double len = std::max(static_cast<double>(seq_len), original_max);
      const double scaled_base =
          base * std::pow(factor * len / original_max - (factor - 1),
                          static_cast<double>(dim) / (dim - 2));
      out.inv_freq = DefaultInvFreq(scaled_base, dim);
      break;
    }
    case RopeType::kLlama3: {
      at::Tensor inv_freq = DefaultInvFreq(base, dim);
      const double old_context =
          static_cast<double>(scaling.original_max_position_embeddings);
      const double low_freq_wavelen = old_context / scaling.low_freq_factor;
      const double high_freq_wavelen = old_context / scaling.high_freq_factor;
      at::Tensor wavelen = 2 * M_PI / inv_freq;
      at::Tensor scaled =
          at::where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq);
      at::Tensor smooth = (old_context / wavelen - scaling.low_freq_factor) /
                          (scaling.high_freq_factor - scaling.low_freq_factor);
      at::Tensor smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      at::Tensor medium =
          at::logical_not(wavelen < high_freq_wavelen)
              .logical_and(at::logical_not(wavelen > low_freq_wavelen));
      out.inv_freq = at::where(medium, smoothed, scaled);
      break;
    }
    case RopeType::kYarn: {
      if (scaling.attention_factor > 0) {
        out.attention_factor = scaling.attention_factor;
      } else if (scaling.mscale > 0 && scaling.mscale_all_dim > 0) {
        out.attention_factor = YarnMscale(factor, scaling.mscale) /
                               YarnMscale(factor, scaling.mscale_all_dim);
      } else {
        out.attention_factor = YarnMscale(factor, 1.0);
      }
      double low =
          YarnCorrectionDim(scaling.beta_fast, dim, base, original_max);
      double high =
          YarnCorrectionDim(scaling.beta_slow, dim, base, original_max);
      if (scaling.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;  // as transformers: no zero division
      at::Tensor pos_freqs = at::pow(
          base, at::arange(0, dim, 2, at::TensorOptions().dtype(at::kFloat)) /
                    static_cast<double>(dim));
      at::Tensor extrapolation = 1.0 / pos_freqs;
      at::Tensor interpolation = 1.0 / (factor * pos_freqs);
      at::Tensor ramp = at::clamp(
          (at::arange(dim / 2, at::TensorOptions().dtype(at::kFloat)) - low) /
              (high - low),
          0, 1);
      at::Tensor extrapolation_factor = 1 - ramp;
      out.inv_freq = interpolation * (1 - extrapolation_factor) +
                     extrapolation * extrapolation_factor;
      break;
    }
  }
  return out;
}

void RotaryTables(const RotaryFrequencies& frequencies,
                  const at::Tensor& positions, at::Tensor* cos,
                  at::Tensor* sin) {
  at::Tensor freqs = at::outer(positions.to(at::kFloat),
                               frequencies.inv_freq.to(positions.device()));
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  *cos = emb.cos();
  *sin = emb.sin();
  if (frequencies.attention_factor != 1.0) {
    *cos = *cos * frequencies.attention_factor;
    *sin = *sin * frequencies.attention_factor;
  }
}

}  // namespace openforce::lora
