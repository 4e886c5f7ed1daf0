// The gradient of a linear layer over a quantized frozen base (QLoRA): the
// backward pass dequantizes the weight again to compute grad_x = grad_y W,
// so autograd keeps the quantized codes it already shares with the model,
// never a dense copy of every layer's weight for the whole backward pass.
#ifndef OPENFORCE_LORA_INTERNAL_QUANTIZED_LINEAR_GRAD_H_
#define OPENFORCE_LORA_INTERNAL_QUANTIZED_LINEAR_GRAD_H_

#include <ATen/core/Tensor.h>

namespace openforce::lora {
struct QuantizedMatrix;
}  // namespace openforce::lora

namespace openforce::lora::internal {

// x [..., cols] times the matrix's transpose plus `bias` (if defined), in x's
// dtype, with a gradient to x when it requires one (the matrix and bias are
// frozen).
at::Tensor QuantizedLinearWithGrad(const at::Tensor& x,
                                   const QuantizedMatrix& matrix,
                                   const at::Tensor& bias);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_QUANTIZED_LINEAR_GRAD_H_
