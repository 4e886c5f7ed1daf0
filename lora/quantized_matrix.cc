// Quantizing, dequantizing and multiplying block-quantized weights; see
// quantized_matrix.h. Built with -ffp-contract=off: the quantization must not
// depend on whether a compiler fuses a multiply and an add.
#include "lora/quantized_matrix.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lora/internal/quantized_dequantize.h"
#include "lora/internal/quantized_gemv.h"
#include "lora/internal/quantized_linear_grad.h"

namespace openforce::lora {
namespace {

constexpr float kNf4Levels[16] = {-1.0f,
                                  -0.6961928009986877f,
                                  -0.5250730514526367f,
                                  -0.39491748809814453f,
                                  -0.28444138169288635f,
                                  -0.18477343022823334f,
                                  -0.09105003625154495f,
                                  0.0f,
                                  0.07958029955625534f,
                                  0.16093020141124725f,
                                  0.24611230194568634f,
                                  0.33791524171829224f,
                                  0.44070982933044434f,
                                  0.5626170039176941f,
                                  0.7229568362236023f,
                                  1.0f};

// Blocks of absmax values sharing one fp32 scale (QLoRA's second level).
constexpr int64_t kNf4GroupBlocks = 256;

// Rows per task when quantizing: each row is independent, so the codes do not
// depend on how rows are split over threads.
constexpr int64_t kRowsPerTask = 16;

// Activation rows at most this many multiply through the quantized kernels;
// more dequantize the weight once and use a matrix product.
constexpr int64_t kMaxGemvRows = 4;

// Midpoints between neighbouring NF4 levels, ascending.
struct Nf4Midpoints {
  float values[15];
  Nf4Midpoints() {
    for (int i = 0; i < 15; ++i)
      values[i] = 0.5f * (kNf4Levels[i] + kNf4Levels[i + 1]);
  }
};

// The nearest NF4 level to v (ties to the lower level): the number of
// midpoints below v, counted without branches so that the loop vectorizes.
uint8_t NearestNf4(float v, const Nf4Midpoints& midpoints) {
  int index = 0;
  for (int i = 0; i < 15; ++i) index += v > midpoints.values[i] ? 1 : 0;
  return static_cast<uint8_t>(index);
}

// Round half to even, as std::nearbyint in the default rounding mode, for
// |v| < 2^22: adding 1.5 x 2^23 leaves no fraction bits, so the addition
// itself rounds. Plain float arithmetic (this file has no FMA contraction),
// so it vectorizes where nearbyint would be a library call per element.
inline float RoundHalfEven(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 x 2^23
  return (v + kMagic) - kMagic;
}

float RoundToHalf(float value, uint16_t* bits) {
  const c10::Half half(value);
  *bits = half.x;
  return static_cast<float>(half);
}

void QuantizeQ8Row(const float* x, int64_t cols, int64_t blocks, int8_t* codes,
                   uint16_t* scales) {
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * 32, end = std::min(cols, begin + 32);
    float amax = 0;
    for (int64_t k = begin; k < end; ++k)
      amax = std::max(amax, std::fabs(x[k]));
    const float d = RoundToHalf(amax / 127.0f, &scales[b]);
    for (int64_t k = begin; k < end; ++k) {
      // |x / d| <= 127.5 (d is amax / 127 rounded to fp16), well inside
      // RoundHalfEven's range.
      const float q = d > 0 ? RoundHalfEven(x[k] / d) : 0.0f;
      codes[k] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
    }
  }
}

void QuantizeQ4Row(const float* x, int64_t cols, int64_t blocks, uint8_t* codes,
                   uint16_t* scales) {
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * 32, end = std::min(cols, begin + 32);
    // The value of largest magnitude maps to -8 exactly, as in Q4_0: the
    // asymmetric range [-8, 7] spends its extra level on that side.
    float extreme = 0;
    for (int64_t k = begin; k < end; ++k) {
      if (std::fabs(x[k]) > std::fabs(extreme)) extreme = x[k];
    }
    const float d = RoundToHalf(extreme / -8.0f, &scales[b]);
    uint8_t q[32];
    for (int k = 0; k < 32; ++k) {
      const int64_t index = begin + k;
      float code = 8;
      if (index < end && d != 0) {
        code = std::clamp(RoundHalfEven(x[index] / d) + 8.0f, 0.0f, 15.0f);
      }
      q[k] = static_cast<uint8_t>(code);
    }
    for (int j = 0; j < 16; ++j)
      codes[b * 16 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}

QuantizedMatrix QuantizeNf4(const at::Tensor& w, int64_t blocks) {
  const int64_t rows = w.size(0), cols = w.size(1);
  const float* x = w.data_ptr<float>();
  const int64_t total = rows * blocks;
  std::vector<float> absmax(total, 0.0f);
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t first = b * 64, last = std::min(cols, first + 64);
        float amax = 0;
        for (int64_t k = first; k < last; ++k)
          amax = std::max(amax, std::fabs(x[r * cols + k]));
        absmax[r * blocks + b] = amax;
      }
    }
  });
  // One sum in a fixed order: the mean is the same on every machine.
  double sum = 0;
  for (int64_t i = 0; i < total; ++i) sum += absmax[i];
  QuantizedMatrix m;
  m.format = WeightFormat::kNf4;
  m.rows = rows;
  m.cols = cols;
  m.absmax_mean = static_cast<float>(sum / static_cast<double>(total));
  const int64_t groups = (total + kNf4GroupBlocks - 1) / kNf4GroupBlocks;
  m.group_scales = at::zeros({groups}, at::kFloat);
  m.scales = at::zeros({rows, blocks}, at::kChar);
  m.codes = at::zeros({rows, blocks * 32}, at::kByte);
  float* group_scales = m.group_scales.data_ptr<float>();
  int8_t* absmax_codes = m.scales.data_ptr<int8_t>();
  uint8_t* codes = m.codes.data_ptr<uint8_t>();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * kNf4GroupBlocks;
    const int64_t end = std::min(total, begin + kNf4GroupBlocks);
    float deviation = 0;
    for (int64_t i = begin; i < end; ++i)
      deviation = std::max(deviation, std::fabs(absmax[i] - m.absmax_mean));
    const float scale = deviation / 127.0f;
    group_scales[g] = scale;
    for (int64_t i = begin; i < end; ++i) {
      const float q =
          scale > 0 ? RoundHalfEven((absmax[i] - m.absmax_mean) / scale) : 0;
      absmax_codes[i] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
    }
  }
  const Nf4Midpoints midpoints;
  const float mean = m.absmax_mean;
  at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t i = r * blocks + b;
        // The absmax as the kernels will read it back, so that the codes
        // fit the scale actually stored.
        const float amax = internal::Nf4BlockScale(
            absmax_codes[i], group_scales[i / kNf4GroupBlocks], mean);
        uint8_t q[64];
        for (int k = 0; k < 64; ++k) {
          const int64_t col = b * 64 + k;
          q[k] = 7;  // level 0.0
          if (col < cols && amax > 0)
            q[k] = NearestNf4(x[r * cols + col] / amax, midpoints);
        }
        uint8_t* out = codes + r * blocks * 32 + b * 32;
        for (int j = 0; j < 32; ++j)
          out[j] = static_cast<uint8_t>(q[j] | (q[j + 32] << 4));
      }
    }
  });
  return m;
}

// Low then high nibbles of each block's bytes: [rows, blocks, 2 x half].
at::Tensor UnpackNibbles(const at::Tensor& codes, int64_t rows,
                         int64_t blocks) {
  const at::Tensor bytes = codes.view({rows, blocks, -1});
  return at::cat(
      {at::bitwise_and(bytes, 15), at::bitwise_right_shift(bytes, 4)}, -1);
}

}  // namespace

const float* Nf4Levels() { return kNf4Levels; }

int64_t QuantizedMatrix::blocks_per_row() const {
  const int64_t block = WeightFormatBlockSize(format);
  return (cols + block - 1) / block;
}

int64_t QuantizedMatrix::bytes() const {
  int64_t total = 0;
  for (const at::Tensor* t : {&codes, &scales, &group_scales}) {
    if (t->defined()) total += t->numel() * t->element_size();
  }
  if (format == WeightFormat::kNf4) total += sizeof(absmax_mean);
  return total;
}

QuantizedMatrix QuantizedMatrix::To(const at::Device& device) const {
  QuantizedMatrix moved = *this;
  for (at::Tensor* t : {&moved.codes, &moved.scales, &moved.group_scales}) {
    if (t->defined()) *t = t->to(device);
  }
  return moved;
}

absl::StatusOr<QuantizedMatrix> QuantizeMatrix(const at::Tensor& weight,
                                               WeightFormat format) {
  if (format == WeightFormat::kNone) {
    return absl::InvalidArgumentError(
        "quantizing needs a format (q8, q4, nf4)");
  }
  if (weight.dim() != 2 || weight.size(0) == 0 || weight.size(1) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("only non-empty 2-D weights are quantized; got ",
                     weight.dim(), " dimensions"));
  }
  if (weight.scalar_type() != at::kFloat && weight.scalar_type() != at::kHalf &&
      weight.scalar_type() != at::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights of type ", c10::toString(weight.scalar_type()),
                     " are not quantized (F32, F16 or BF16 are)"));
  }
  const at::Tensor w = weight.detach().to(at::kCPU).to(at::kFloat).contiguous();
  // A plain loop rather than at::isfinite: no temporary as large as the
  // matrix's element count (a 7B load quantizes 224 of them).
  const float* values = w.data_ptr<float>();
  bool finite = true;
  for (int64_t k = 0, n = w.numel(); k < n; ++k)
    finite &= std::fabs(values[k]) <= std::numeric_limits<float>::max();
  if (!finite) {
    return absl::InvalidArgumentError(
        "the weight holds NaN or infinite values");
  }
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t blocks = (cols + WeightFormatBlockSize(format) - 1) /
                         WeightFormatBlockSize(format);
  if (format == WeightFormat::kNf4) return QuantizeNf4(w, blocks);
  QuantizedMatrix m;
  m.format = format;
  m.rows = rows;
  m.cols = cols;
  m.scales = at::zeros({rows, blocks}, at::kHalf);
  auto* scales = reinterpret_cast<uint16_t*>(m.scales.data_ptr<at::Half>());
  const float* x = w.data_ptr<float>();
  if (format == WeightFormat::kQ8) {
    m.codes = at::zeros({rows, blocks * 32}, at::kChar);
    int8_t* codes = m.codes.data_ptr<int8_t>();
    at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        QuantizeQ8Row(x + r * cols, cols, blocks, codes + r * blocks * 32,
                      scales + r * blocks);
      }
    });
  } else {
    m.codes = at::zeros({rows, blocks * 16}, at::kByte);
    uint8_t* codes = m.codes.data_ptr<uint8_t>();
    at::parallel_for(0, rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        QuantizeQ4Row(x + r * cols, cols, blocks, codes + r * blocks * 16,
                      scales + r * blocks);
      }
    });
  }
  return m;
}

namespace {

// Rows `rows` (int64 [n]; undefined: every row) of the matrix as fp32
// [n, blocks, block].
at::Tensor DequantizeBlocks(const QuantizedMatrix& m, const at::Tensor& rows) {
  TORCH_CHECK(m.defined(), "dequantizing an empty quantized matrix");
  const int64_t blocks = m.blocks_per_row();
  const bool all = !rows.defined();
  const at::Tensor codes = all ? m.codes : m.codes.index_select(0, rows);
  const at::Tensor scales = all ? m.scales : m.scales.index_select(0, rows);
  const int64_t n = codes.size(0);
  switch (m.format) {
    case WeightFormat::kQ8:
      return codes.to(at::kFloat).view({n, blocks, 32}) *
             scales.to(at::kFloat).unsqueeze(-1);
    case WeightFormat::kQ4:
      return (UnpackNibbles(codes, n, blocks).to(at::kFloat) - 8) *
             scales.to(at::kFloat).unsqueeze(-1);
    case WeightFormat::kNf4: {
      const at::Tensor levels =
          at::from_blob(const_cast<float*>(kNf4Levels), {16}, at::kFloat)
              .to(m.codes.device());
      // Each block's group: its index in the whole matrix / 256.
      const at::Tensor row_index =
          all ? at::arange(m.rows, m.codes.options().dtype(at::kLong)) : rows;
      const at::Tensor block_index =
          row_index.unsqueeze(1) * blocks +
          at::arange(blocks, row_index.options()).unsqueeze(0);
      const at::Tensor group = m.group_scales.index(
          {at::floor_divide(block_index, kNf4GroupBlocks)});
      const at::Tensor absmax = scales.to(at::kFloat) * group + m.absmax_mean;
      return levels.index({UnpackNibbles(codes, n, blocks).to(at::kLong)}) *
             absmax.unsqueeze(-1);
    }
    case WeightFormat::kNone:
      break;
  }
  TORCH_CHECK(false, "dequantizing a matrix without a format");
}

}  // namespace

at::Tensor DequantizeMatrix(const QuantizedMatrix& m, at::ScalarType dtype) {
  if (internal::CanDequantizeOnCpu(m, dtype)) {
    return internal::DequantizeOnCpu(m, nullptr, m.rows, dtype);
  }
  return DequantizeBlocks(m, at::Tensor())
      .view({m.rows, -1})
      .narrow(1, 0, m.cols)
      .to(dtype)
      .contiguous();
}

at::Tensor DequantizeRows(const QuantizedMatrix& m, const at::Tensor& ids,
                          at::ScalarType dtype) {
  const at::Tensor flat =
      ids.reshape({-1}).to(m.codes.device(), at::kLong).contiguous();
  std::vector<int64_t> shape(ids.sizes().begin(), ids.sizes().end());
  shape.push_back(m.cols);
  if (internal::CanDequantizeOnCpu(m, dtype)) {
    TORCH_CHECK(flat.numel() == 0 || (flat.min().item<int64_t>() >= 0 &&
                                      flat.max().item<int64_t>() < m.rows),
                "row ids must be in [0, ", m.rows, ")");
    return internal::DequantizeOnCpu(m, flat.data_ptr<int64_t>(), flat.numel(),
                                     dtype)
        .view(shape);
  }
  return DequantizeBlocks(m, flat)
      .view({flat.size(0), -1})
      .narrow(1, 0, m.cols)
      .to(dtype)
      .reshape(shape);
}

at::Tensor QuantizedLinear(const at::Tensor& x, const QuantizedMatrix& m,
                           const at::Tensor& bias) {
  TORCH_CHECK(x.size(-1) == m.cols, "input has ", x.size(-1),
              " features; the quantized weight takes ", m.cols);
  const int64_t vectors = x.numel() / m.cols;
  const bool needs_grad = at::GradMode::is_enabled() && x.requires_grad();
  if (x.device().is_cpu() && m.codes.device().is_cpu() && !needs_grad &&
      vectors <= kMaxGemvRows) {
    // Decoding runs this for every projection of every token: plain
    // pointers into one contiguous input and output, no per-row tensors.
    const at::Tensor input = x.to(at::kFloat).contiguous();
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = m.rows;
    at::Tensor y = at::empty(shape, at::kFloat);
    const float* in = input.data_ptr<float>();
    float* out = y.data_ptr<float>();
    for (int64_t v = 0; v < vectors; ++v)
      internal::QuantizedGemv(m, in + v * m.cols, out + v * m.rows);
    if (bias.defined()) y = y + bias.to(at::kFloat);
    return y.to(x.scalar_type());
  }
  if (needs_grad) return internal::QuantizedLinearWithGrad(x, m, bias);
  return at::linear(x, DequantizeMatrix(m, x.scalar_type()), bias);
}

}  // namespace openforce::lora
