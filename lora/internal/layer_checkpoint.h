// Gradient checkpointing for one decoder layer: the forward pass runs without
// recording, keeping only the layer's input; the backward pass runs the layer
// again with recording on and differentiates that. Peak activation memory
// becomes one layer's instead of every layer's, for one more forward pass of
// compute. Dropout draws the same masks in the recomputation (the generator is
// cloned before the layer runs).
#ifndef OPENFORCE_LORA_INTERNAL_LAYER_CHECKPOINT_H_
#define OPENFORCE_LORA_INTERNAL_LAYER_CHECKPOINT_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace openforce::lora::internal {

// `layer(input, generator)` must be a pure function of its input, the
// parameters and the generator's state, and must stay callable until the
// backward pass has run (capture by value). Gradients flow to `input` and to
// each of `parameters` (leaves that require grad).
at::Tensor CheckpointedLayer(
    const at::Tensor& input,
    std::function<at::Tensor(const at::Tensor&, at::Generator)> layer,
    std::vector<at::Tensor> parameters, const at::Generator& generator);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_LAYER_CHECKPOINT_H_
