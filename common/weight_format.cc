// Naming and sizing the weight formats; see weight_format.h.
#include "common/weight_format.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace openforce {

absl::StatusOr<WeightFormat> ParseWeightFormat(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(text);
  if (name.empty() || name == "none" || name == "bf16" || name == "fp32" ||
      name == "f32") {
    return WeightFormat::kNone;
  }
  if (name == "q8" || name == "q8_0") return WeightFormat::kQ8;
  if (name == "q4" || name == "q4_0") return WeightFormat::kQ4;
  if (name == "nf4") return WeightFormat::kNf4;
  return absl::InvalidArgumentError(absl::StrCat(
      "weight format '", text, "' is not one of none, q8, q4, nf4"));
}

absl::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kNone:
      return "none";
    case WeightFormat::kQ8:
      return "q8";
    case WeightFormat::kQ4:
      return "q4";
    case WeightFormat::kNf4:
      return "nf4";
  }
  return "unknown";
}

int64_t WeightFormatBlockSize(WeightFormat format) {
  switch (format) {
    case WeightFormat::kNone:
      return 1;
    case WeightFormat::kQ8:
    case WeightFormat::kQ4:
      return 32;
    case WeightFormat::kNf4:
      return 64;
  }
  return 1;
}

int64_t QuantizedMatrixBytes(WeightFormat format, int64_t rows, int64_t cols,
                             int64_t dtype_bytes) {
  const int64_t block = WeightFormatBlockSize(format);
  const int64_t blocks = (cols + block - 1) / block;
  switch (format) {
    case WeightFormat::kNone:
      return rows * cols * dtype_bytes;
    case WeightFormat::kQ8:
      return rows * blocks * (32 + 2);
    case WeightFormat::kQ4:
      return rows * blocks * (16 + 2);
    case WeightFormat::kNf4: {
      const int64_t total_blocks = rows * blocks;
      // Codes, one int8 absmax per block, one fp32 scale per 256 blocks and
      // the fp32 mean.
      return total_blocks * 32 + total_blocks +
             4 * ((total_blocks + 255) / 256) + 4;
    }
  }
  return 0;
}

}  // namespace openforce
