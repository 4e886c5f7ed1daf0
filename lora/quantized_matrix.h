// A frozen base projection quantized by blocks along its input dimension
// (weight_format.h), how it is made from a full-precision weight
// (deterministically: the same bytes on every machine, so a job's workers
// share one quantized base), turned back into a dense weight, and multiplied
// by activations. Decode (one token) runs the CPU kernels of
// internal/quantized_gemv.h, which read only the quantized bytes; longer
// inputs, and every input on a GPU, dequantize this one matrix into the
// activations' dtype and multiply it there, never the whole model at once.
#ifndef OPENFORCE_LORA_QUANTIZED_MATRIX_H_
#define OPENFORCE_LORA_QUANTIZED_MATRIX_H_

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/weight_format.h"

namespace openforce::lora {

struct QuantizedMatrix {
  WeightFormat format = WeightFormat::kNone;
  int64_t rows = 0;  // out features
  int64_t cols = 0;  // in features; rows are padded to whole blocks
  // kQ8: int8 [rows, blocks * 32]. kQ4: uint8 [rows, blocks * 16], byte j of
  // a block holding element j (low nibble) and j + 16 (high). kNf4: uint8
  // [rows, blocks * 32], byte j holding element j and j + 32.
  at::Tensor codes;
  // kQ8, kQ4: fp16 [rows, blocks]. kNf4: int8 [rows, blocks], the absmax of
  // each block as (code x group_scales[b / 256] + absmax_mean).
  at::Tensor scales;
  at::Tensor group_scales;  // kNf4: fp32 [ceil(rows * blocks / 256)]
  float absmax_mean = 0;    // kNf4

  bool defined() const { return codes.defined(); }
  int64_t blocks_per_row() const;
  // Bytes of codes and scales: what a token's decode reads.
  int64_t bytes() const;
  // The same matrix with its tensors on `device`.
  QuantizedMatrix To(const at::Device& device) const;
};

// Quantizes `weight` ([out, in], F32, F16 or BF16, any device; computed on
// the CPU in fp32 with round-to-nearest-even, so the result is bitwise the
// same everywhere). InvalidArgument for a format of kNone, a weight that is
// not 2-D, or one holding NaN or infinity.
[[nodiscard]] absl::StatusOr<QuantizedMatrix> QuantizeMatrix(
    const at::Tensor& weight, WeightFormat format);

// The dense [rows, cols] weight the codes stand for, in `dtype`, on the
// matrix's device. Throws c10::Error (lora's internals do; the public entry
// points catch it).
at::Tensor DequantizeMatrix(const QuantizedMatrix& matrix,
                            at::ScalarType dtype);

// Rows `ids` (int64, any shape) of the dense matrix, [..., cols] in `dtype`:
// an embedding lookup into a quantized table. Ids must be in [0, rows).
at::Tensor DequantizeRows(const QuantizedMatrix& matrix, const at::Tensor& ids,
                          at::ScalarType dtype);

// x [..., cols] times the matrix's transpose (nn.Linear), plus `bias` if
// defined, in x's dtype. Gradients flow to x (through the dequantized
// weight), never to the matrix.
at::Tensor QuantizedLinear(const at::Tensor& x, const QuantizedMatrix& matrix,
                           const at::Tensor& bias);

// The 16 NormalFloat-4 levels (QLoRA, Dettmers et al. 2023), ascending.
const float* Nf4Levels();

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_QUANTIZED_MATRIX_H_
