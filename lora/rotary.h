// Rotary position embeddings as transformers' modeling_rope_utils computes
// them: inverse frequencies for the rope types default, linear, dynamic (NTK,
// recomputed from the sequence length), llama3 and yarn, and the attention
// factor yarn multiplies cos and sin by. Throws c10::Error like the model code.
#ifndef OPENFORCE_LORA_ROTARY_H_
#define OPENFORCE_LORA_ROTARY_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "lora/llama_config.h"

namespace openforce::lora {

struct RotaryFrequencies {
  at::Tensor inv_freq;  // [dim / 2] fp32, on the CPU
  double attention_factor = 1.0;
};

// `dim` is the rotated width of a head, `base` the rope theta. `seq_len` is the
// number of positions the current forward reaches (only dynamic uses it).
RotaryFrequencies ComputeRotaryFrequencies(const RopeScaling& scaling,
                                           double base, int64_t dim,
                                           int64_t max_position_embeddings,
                                           int64_t seq_len);

// cos and sin tables [positions, dim] in fp32, laid out cat(freqs, freqs) as
// transformers' rotate-half convention expects, scaled by the attention factor.
void RotaryTables(const RotaryFrequencies& frequencies,
                  const at::Tensor& positions, at::Tensor* cos,
                  at::Tensor* sin);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_ROTARY_H_
