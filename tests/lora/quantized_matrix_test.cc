// Block-quantized base weights: the formats' codes on hand-computed blocks,
// determinism, error bounds on Gaussian weights, every CPU kernel against
// dequantize-then-fp32 on odd shapes, the linear layer's paths and gradients,
// and refusals.
#include "lora/quantized_matrix.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/weight_format.h"
#include "lora/internal/quantized_dequantize.h"
#include "lora/internal/quantized_gemv.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tensor_matchers.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::openforce::testing::TensorsNear;
using ::testing::HasSubstr;

constexpr WeightFormat kFormats[] = {WeightFormat::kQ8, WeightFormat::kQ4,
                                     WeightFormat::kNf4};

QuantizedMatrix Quantize(const at::Tensor& w, WeightFormat format) {
  absl::StatusOr<QuantizedMatrix> m = QuantizeMatrix(w, format);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.value_or(QuantizedMatrix());
}

double RelativeRmsError(const at::Tensor& w, WeightFormat format) {
  const at::Tensor back = DequantizeMatrix(Quantize(w, format), at::kFloat);
  return ((back - w).pow(2).mean().sqrt() / w.pow(2).mean().sqrt())
      .item<double>();
}

TEST(QuantizedMatrixTest, Q8StoresOneScalePerBlockOf32) {
  // Block 0 holds -127..-96 (amax 127: scale 1, codes = values); block 1
  // halves of 1 (scale 0.5 / 127 rounded to fp16); 40 columns: the second
  // block is padded.
  at::Tensor w = at::zeros({1, 40});
  for (int k = 0; k < 32; ++k) w[0][k] = -127 + k;
  for (int k = 32; k < 40; ++k) w[0][k] = (k % 2 == 0) ? 0.5 : -0.5;
  const QuantizedMatrix m = Quantize(w, WeightFormat::kQ8);
  EXPECT_EQ(m.codes.sizes(), (std::vector<int64_t>{1, 64}));
  EXPECT_EQ(m.codes[0][0].item<int>(), -127);
  EXPECT_EQ(m.codes[0][31].item<int>(), -96);
  EXPECT_EQ(m.codes[0][32].item<int>(), 127);
  EXPECT_EQ(m.codes[0][33].item<int>(), -127);
  EXPECT_EQ(m.codes[0][40].item<int>(), 0);  // padding
  EXPECT_EQ(m.scales[0][0].item<float>(), 1.0f);
  EXPECT_EQ(m.bytes(), 2 * (32 + 2));
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kQ8, 1, 40, 0), m.bytes());
  EXPECT_TRUE(TensorsNear(DequantizeMatrix(m, at::kFloat), w, 1e-3));
}

TEST(QuantizedMatrixTest, Q4MapsTheLargestMagnitudeToMinus8) {
  // -8..7 in one block of 32 (twice): scale 1, code = value + 8; byte j
  // holds element j (low nibble) and element j + 16 (high nibble).
  at::Tensor w = at::zeros({1, 32});
  for (int k = 0; k < 32; ++k) w[0][k] = -8 + (k % 16);
  const QuantizedMatrix m = Quantize(w, WeightFormat::kQ4);
  EXPECT_EQ(m.scales[0][0].item<float>(), 1.0f);
  for (int j = 0; j < 16; ++j)
    EXPECT_EQ(m.codes[0][j].item<int>(), j | (j << 4)) << j;
  EXPECT_TRUE(TensorsNear(DequantizeMatrix(m, at::kFloat), w, 0));
  // A positive extreme maps to -8 too, with a negative scale.
  const QuantizedMatrix flipped = Quantize(-w - 0.5, WeightFormat::kQ4);
  EXPECT_LT(flipped.scales[0][0].item<float>(), 0);
}

TEST(QuantizedMatrixTest, Nf4CodesAreTheNearestLevelOfTheBlockAbsmax) {
  // One block of 64: each level times 3, four times over. The absmax is 3;
  // a single block's double quantization is exact (its mean).
  at::Tensor w = at::zeros({1, 64});
  for (int k = 0; k < 64; ++k) w[0][k] = 3 * Nf4Levels()[k % 16];
  const QuantizedMatrix m = Quantize(w, WeightFormat::kNf4);
  EXPECT_FLOAT_EQ(m.absmax_mean, 3.0f);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(m.codes[0][j].item<int>(), (j % 16) | ((j % 16) << 4)) << j;
  }
  EXPECT_TRUE(TensorsNear(DequantizeMatrix(m, at::kFloat), w, 1e-6));
  // Just past a midpoint rounds up, just below rounds down.
  const float mid = 1.5f * (Nf4Levels()[9] + Nf4Levels()[10]);
  at::Tensor near = at::zeros({1, 64});
  near[0][0] = 3;
  near[0][1] = mid + 1e-4;
  near[0][2] = mid - 1e-4;
  const QuantizedMatrix n = Quantize(near, WeightFormat::kNf4);
  EXPECT_EQ(n.codes[0][1].item<int>() & 15, 10);
  EXPECT_EQ(n.codes[0][2].item<int>() & 15, 9);
}

TEST(QuantizedMatrixTest, QuantizingIsDeterministicAndFollowsTheValues) {
  at::manual_seed(3);
  const at::Tensor w = at::randn({33, 200}) * 0.02;
  for (WeightFormat format : kFormats) {
    const QuantizedMatrix a = Quantize(w, format);
    const QuantizedMatrix b = Quantize(w.clone(), format);
    EXPECT_TRUE(at::equal(a.codes, b.codes)) << WeightFormatName(format);
    EXPECT_TRUE(at::equal(a.scales, b.scales)) << WeightFormatName(format);
    // A bf16 checkpoint quantizes as its exact fp32 values do.
    const at::Tensor bf16 = w.to(at::kBFloat16);
    EXPECT_TRUE(at::equal(Quantize(bf16, format).codes,
                          Quantize(bf16.to(at::kFloat), format).codes));
    EXPECT_EQ(a.bytes(), QuantizedMatrixBytes(format, 33, 200, 0))
        << WeightFormatName(format);
  }
}

TEST(QuantizedMatrixTest, ErrorOnGaussianWeightsIsWithinEachFormatsBound) {
  at::manual_seed(5);
  const at::Tensor w = at::randn({256, 1024}) * 0.02;
  const double q8 = RelativeRmsError(w, WeightFormat::kQ8);
  const double q4 = RelativeRmsError(w, WeightFormat::kQ4);
  const double nf4 = RelativeRmsError(w, WeightFormat::kNf4);
  EXPECT_LT(q8, 0.01);
  EXPECT_LT(q4, 0.10);
  EXPECT_LT(nf4, 0.10);
  // NF4's blocks are twice as long as Q4_0's (64 against 32) and its scales
  // are double-quantized: within 10% of Q4_0's error at 8% fewer bytes.
  EXPECT_LT(nf4, 1.1 * q4);
  EXPECT_LT(QuantizedMatrixBytes(WeightFormat::kNf4, 256, 1024, 0),
            0.93 * QuantizedMatrixBytes(WeightFormat::kQ4, 256, 1024, 0));
}

// Per row, the sum over blocks of 32 of (the block's amax of x / 254) x the
// sum of |w| over the block.
at::Tensor Int8InputErrorBound(const at::Tensor& w, const at::Tensor& x) {
  const int64_t cols = x.size(0), blocks = (cols + 31) / 32;
  at::Tensor bound = at::zeros({w.size(0)});
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * 32, n = std::min<int64_t>(32, cols - begin);
    const double half_step =
        x.narrow(0, begin, n).abs().max().item<double>() / 254.0;
    bound += w.narrow(1, begin, n).abs().sum(1) * half_step;
  }
  return bound;
}

// The VNNI kernels' bound per row: the input's int8 rounding and, for nf4,
// the int8 levels (each weight off by at most half of 1/127 of its block's
// absmax, the largest |w| of the block).
at::Tensor VnniErrorBound(WeightFormat format, const at::Tensor& dense,
                          const at::Tensor& x) {
  const int64_t rows = dense.size(0), cols = dense.size(1);
  at::Tensor level_error = at::zeros_like(dense);
  if (format == WeightFormat::kNf4) {
    for (int64_t begin = 0; begin < cols; begin += 64) {
      const int64_t n = std::min<int64_t>(64, cols - begin);
      level_error.narrow(1, begin, n)
          .copy_((dense.narrow(1, begin, n).abs().amax(1, true) / 254.0)
                     .expand({rows, n}));
    }
  }
  return Int8InputErrorBound(dense.abs() + level_error, x) * 1.01 +
         at::matmul(level_error, x.abs() * 1.01);
}

TEST(QuantizedMatrixTest, EveryKernelMatchesDequantizeThenMultiply) {
  at::manual_seed(9);
  // Odd shapes: rows not a multiple of the kernels' four, columns not a
  // multiple of any block; and one larger, aligned shape.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {7, 45}, {13, 100}, {1, 3}, {5, 200}, {130, 512}};
  for (const auto& [rows, cols] : shapes) {
    const at::Tensor w = at::randn({rows, cols});
    const at::Tensor x = at::randn({cols});
    for (WeightFormat format : kFormats) {
      const QuantizedMatrix m = Quantize(w, format);
      const at::Tensor expected =
          at::matmul(DequantizeMatrix(m, at::kDouble), x.to(at::kDouble))
              .to(at::kFloat);
      for (internal::GemvIsa isa : internal::AvailableGemvIsas()) {
        at::Tensor y = at::empty({rows});
        internal::QuantizedGemvWith(isa, m, x.data_ptr<float>(),
                                    y.data_ptr<float>());
        const std::string what =
            absl::StrCat(WeightFormatName(format), " ",
                         internal::GemvIsaName(isa), " ", rows, "x", cols);
        if (isa == internal::GemvIsa::kAvx512Vnni) {
          // The input is rounded to int8 per block of 32: each product is
          // off by at most |w| x half the block's step (amax / 127). NF4's
          // levels are int8 there too: each weight is off by at most half of
          // 1/127 of its block's absmax (the largest |w| of the block).
          const at::Tensor bound =
              VnniErrorBound(format, DequantizeMatrix(m, at::kFloat), x);
          EXPECT_TRUE(((y - expected).abs() <= bound + 1e-4 * std::sqrt(cols))
                          .all()
                          .item<bool>())
              << what << " max error "
              << (y - expected).abs().max().item<float>();
          continue;
        }
        EXPECT_TRUE(TensorsNear(y, expected, 1e-4 * std::sqrt(cols))) << what;
      }
    }
  }
}

TEST(QuantizedMatrixTest, CpuDequantizationIsBitwiseTheAtenPath) {
  at::manual_seed(10);
  // Rows that end mid-block (tails written one value at a time or masked)
  // and whole blocks. The fp64 request takes ATen's ops, the path a GPU runs.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {7, 45}, {3, 100}, {1, 3}, {33, 256}};
  for (const auto& [rows, cols] : shapes) {
    const at::Tensor w = at::randn({rows, cols}) * 0.05;
    for (WeightFormat format : kFormats) {
      const QuantizedMatrix m = Quantize(w, format);
      const at::Tensor reference = DequantizeMatrix(m, at::kDouble);
      const at::Tensor picked = at::tensor({rows - 1, int64_t{0}, rows / 2});
      for (internal::GemvIsa isa : internal::AvailableGemvIsas()) {
        const std::string what =
            absl::StrCat(WeightFormatName(format), " ",
                         internal::GemvIsaName(isa), " ", rows, "x", cols);
        const at::Tensor fp32 =
            internal::DequantizeOnCpuWith(isa, m, nullptr, rows, at::kFloat);
        EXPECT_TRUE(at::equal(fp32, reference.to(at::kFloat))) << what;
        const at::Tensor bf16 =
            internal::DequantizeOnCpuWith(isa, m, nullptr, rows, at::kBFloat16);
        EXPECT_TRUE(at::equal(bf16, reference.to(at::kFloat).to(at::kBFloat16)))
            << what;
        const at::Tensor some = internal::DequantizeOnCpuWith(
            isa, m, picked.data_ptr<int64_t>(), picked.numel(), at::kBFloat16);
        EXPECT_TRUE(at::equal(
            some, reference.index_select(0, picked).to(at::kBFloat16)))
            << what << " picked rows";
      }
      // The public entry points take this path for fp32 and bf16.
      EXPECT_TRUE(at::equal(DequantizeMatrix(m, at::kBFloat16),
                            reference.to(at::kFloat).to(at::kBFloat16)));
    }
  }
}

TEST(QuantizedMatrixTest, LinearTakesTheKernelOrTheDequantizedProduct) {
  at::manual_seed(13);
  const at::Tensor w = at::randn({24, 70}) * 0.1;
  const at::Tensor bias = at::randn({24});
  for (WeightFormat format : kFormats) {
    const QuantizedMatrix m = Quantize(w, format);
    const at::Tensor dense = DequantizeMatrix(m, at::kFloat);
    // One position (decode, the kernel) and many (prefill, a matmul).
    for (int64_t positions : {1, 9}) {
      const at::Tensor x = at::randn({2, positions, 70});
      double tolerance = 1e-4;
      if (positions == 1 &&
          internal::BestGemvIsa() == internal::GemvIsa::kAvx512Vnni) {
        // Decode rounds to int8 (see the kernel test).
        tolerance += std::max(
            VnniErrorBound(format, dense, x[0][0]).max().item<double>(),
            VnniErrorBound(format, dense, x[1][0]).max().item<double>());
      }
      EXPECT_TRUE(TensorsNear(QuantizedLinear(x, m, bias),
                              at::linear(x, dense, bias), tolerance))
          << WeightFormatName(format) << " " << positions;
    }
    // bf16 activations come back bf16.
    const at::Tensor x16 = at::randn({1, 1, 70}).to(at::kBFloat16);
    const at::Tensor y16 = QuantizedLinear(x16, m, at::Tensor());
    EXPECT_EQ(y16.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(TensorsNear(y16.to(at::kFloat),
                            at::linear(x16.to(at::kFloat), dense), 0.05));
    // Gradients reach the input through the dequantized weight.
    const at::Tensor x = at::randn({3, 70}).requires_grad_(true);
    QuantizedLinear(x, m, bias).sum().backward();
    EXPECT_TRUE(TensorsNear(x.grad(), dense.sum(0).expand({3, 70}), 1e-5));
  }
}

TEST(QuantizedMatrixTest, RowLookupMatchesTheDenseRows) {
  // 300 rows of 128: 600 NF4 blocks, three groups of double-quantized
  // scales, so rows past the first group read their own group's scale.
  at::manual_seed(17);
  const at::Tensor w = at::randn({300, 128});
  const at::Tensor ids =
      at::tensor(std::vector<int64_t>{5, 299, 0, 150, 150, 42}, at::kLong)
          .view({2, 3});
  for (WeightFormat format : kFormats) {
    const QuantizedMatrix m = Quantize(w, format);
    const at::Tensor dense = DequantizeMatrix(m, at::kFloat);
    const at::Tensor rows = DequantizeRows(m, ids, at::kBFloat16);
    EXPECT_EQ(rows.sizes(), (std::vector<int64_t>{2, 3, 128}));
    EXPECT_EQ(rows.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(TensorsNear(
        rows.to(at::kFloat),
        dense.index_select(0, ids.view(-1)).view({2, 3, 128}), 0.02))
        << WeightFormatName(format);
  }
}

TEST(QuantizedMatrixTest, RefusesWhatItCannotQuantizeByName) {
  EXPECT_THAT(QuantizeMatrix(at::ones({2, 2}), WeightFormat::kNone),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("needs a format")));
  EXPECT_THAT(QuantizeMatrix(at::ones({4}), WeightFormat::kQ8),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("got 1 dimensions")));
  at::Tensor nan = at::ones({2, 40});
  nan[1][33] = NAN;
  EXPECT_THAT(QuantizeMatrix(nan, WeightFormat::kQ4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));
  EXPECT_THAT(QuantizeMatrix(at::ones({2, 2}, at::kInt), WeightFormat::kNf4),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("F32, F16 or BF16")));
}

}  // namespace
}  // namespace openforce::lora
