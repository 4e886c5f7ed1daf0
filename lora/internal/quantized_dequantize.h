// Dequantizing block-quantized weights (quantized_matrix.h) on the CPU into a
// dense fp32 or bf16 matrix, for the products that are too long for the
// matrix-vector kernels: prompt prefill and training multiply by one layer's
// weight, dequantized just before. One pass over the codes with the block's
// scale in a register and a rounding to bf16 in the same loop, instead of
// ATen's chain of whole-matrix temporaries (unpacked nibbles, int64 level
// indices, fp32 copies). The values are bitwise those of the ATen path the
// GPU takes: exact products in fp32, then round-to-nearest-even.
#ifndef OPENFORCE_LORA_INTERNAL_QUANTIZED_DEQUANTIZE_H_
#define OPENFORCE_LORA_INTERNAL_QUANTIZED_DEQUANTIZE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "lora/internal/quantized_gemv.h"

namespace openforce::lora {
struct QuantizedMatrix;
}  // namespace openforce::lora

namespace openforce::lora::internal {

// Whether DequantizeOnCpu handles this matrix and dtype (CPU codes; fp32 or
// bf16 out).
bool CanDequantizeOnCpu(const QuantizedMatrix& matrix, at::ScalarType dtype);

// Rows `rows[0..n)` of the matrix (every row when `rows` is null, n = rows)
// as a dense [n, cols] CPU tensor of `dtype`, split over libtorch's intra-op
// threads. Rows must be in [0, matrix.rows); the caller checks.
at::Tensor DequantizeOnCpu(const QuantizedMatrix& matrix, const int64_t* rows,
                           int64_t n, at::ScalarType dtype);
at::Tensor DequantizeOnCpuWith(GemvIsa isa, const QuantizedMatrix& matrix,
                               const int64_t* rows, int64_t n,
                               at::ScalarType dtype);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_QUANTIZED_DEQUANTIZE_H_
