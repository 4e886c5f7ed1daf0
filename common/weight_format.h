// How a model's frozen base projections are stored in memory: in the compute
// dtype, or quantized by blocks along the input dimension (weight-only; the
// activations, norms, embeddings and LoRA stay in higher precision). Torch-free
// so the coordinator and the memory estimator can name and size the formats.
#ifndef OPENFORCE_COMMON_WEIGHT_FORMAT_H_
#define OPENFORCE_COMMON_WEIGHT_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce {

// Append-only: the values travel in job specs.
enum class WeightFormat {
  kNone = 0,  // the compute dtype (fp32 or bf16)
  // int8 codes, one fp16 scale per block of 32 (llama.cpp's Q8_0):
  // 8.5 bits per weight.
  kQ8 = 1,
  // 4-bit codes q in [0, 15] meaning (q - 8) x scale, one fp16 scale per
  // block of 32 (llama.cpp's Q4_0): 4.5 bits per weight.
  kQ4 = 2,
  // QLoRA's NormalFloat-4: 4-bit indices into the 16 quantiles of a normal
  // distribution scaled by each block of 64's absolute maximum; the absmax
  // values themselves quantized to int8 around their mean, one fp32 scale
  // per 256 blocks (double quantization): about 4.13 bits per weight.
  kNf4 = 3,
};

// "none" (also "", "bf16", "fp32", "f32"), "q8", "q4", "nf4". InvalidArgument
// names what was given and what is accepted.
[[nodiscard]] absl::StatusOr<WeightFormat> ParseWeightFormat(
    absl::string_view text);
// "none", "q8", "q4", "nf4".
absl::string_view WeightFormatName(WeightFormat format);

// Values per block along a row.
int64_t WeightFormatBlockSize(WeightFormat format);

// Bytes an [rows, cols] matrix takes in `format` (codes and scales; rows are
// padded to whole blocks). For kNone, `dtype_bytes` per value.
int64_t QuantizedMatrixBytes(WeightFormat format, int64_t rows, int64_t cols,
                             int64_t dtype_bytes);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_WEIGHT_FORMAT_H_
