// Matrix-vector product for bf16 weights on CPUs with AVX-512-BF16.
// Token-by-token generation reads every weight once per token, so it is bound
// by memory bandwidth; in libtorch 1.13 a one-row bf16 matmul (oneDNN) streams
// about 12-16 GB/s on the reference machine. This kernel streams each weight
// row once with vdpbf16ps (bf16 pairs multiplied exactly, summed in fp32): 1.6x
// faster on a 12-layer decode sequence there.
#ifndef OPENFORCE_LORA_INTERNAL_BF16_GEMV_H_
#define OPENFORCE_LORA_INTERNAL_BF16_GEMV_H_

#include <ATen/core/Tensor.h>

namespace openforce::lora::internal {

// True when this CPU has AVX-512-BF16 (checked once).
bool Bf16GemvAvailable();

// weight: [out, in] bf16, contiguous, CPU. x: [in] bf16 CPU. Returns W x as
// [out] fp32. Call only when Bf16GemvAvailable().
at::Tensor Bf16Gemv(const at::Tensor& weight, const at::Tensor& x);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_BF16_GEMV_H_
