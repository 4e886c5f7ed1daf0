// CPU dequantization of whole rows; see quantized_dequantize.h. Each block is
// expanded into 32 or 64 fp32 values (the codes converted in vector
// registers, times the block's scale: a product that is exact for q8 and q4
// and one rounding for nf4, as on the ATen path), then written as fp32 or
// rounded to bf16. Built with -ffp-contract=off so the nf4 scale
// (code x group scale + mean) rounds twice, as it does everywhere else.
#include "lora/internal/quantized_dequantize.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "lora/quantized_matrix.h"

// GCC 12 warns about the AVX-512 conversion intrinsics' internal
// _mm512_undefined_* values (GCC bug 105593); they are never read.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace openforce::lora::internal {
namespace {

constexpr int64_t kNf4GroupBlocks = 256;
// Rows per task: enough work per thread wake-up for the shortest rows.
constexpr int64_t kRowsPerTask = 16;

struct Rows {
  WeightFormat format;
  const uint8_t* codes;  // row r at codes + r * code_stride
  int64_t code_stride;
  int64_t blocks;
  int64_t cols;
  bool bf16;  // else fp32
};

// Every block's scale of row `row`, in fp32: the fp16 scale of q8 and q4, the
// double-quantized absmax of nf4.
void RowScales(const QuantizedMatrix& m, int64_t row, float* scales) {
  const int64_t blocks = m.blocks_per_row();
  if (m.format == WeightFormat::kNf4) {
    const int8_t* codes = m.scales.data_ptr<int8_t>() + row * blocks;
    const float* groups = m.group_scales.data_ptr<float>();
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t i = row * blocks + b;
      scales[b] =
          Nf4BlockScale(codes[b], groups[i / kNf4GroupBlocks], m.absmax_mean);
    }
    return;
  }
  const auto* halves =
      reinterpret_cast<const uint16_t*>(m.scales.data_ptr<at::Half>()) +
      row * blocks;
  for (int64_t b = 0; b < blocks; ++b)
    scales[b] = c10::detail::fp16_ieee_to_fp32_value(halves[b]);
}

// The first n of `values` written to `out` (element offset `at`) as fp32 or
// bf16, one at a time: the tails of rows whose length is not whole blocks.
void EmitScalar(const float* values, int64_t n, bool bf16, void* out,
                int64_t at) {
  if (bf16) {
    auto* dst = static_cast<c10::BFloat16*>(out) + at;
    for (int64_t k = 0; k < n; ++k) dst[k] = c10::BFloat16(values[k]);
  } else {
    std::memcpy(static_cast<float*>(out) + at, values, n * sizeof(float));
  }
}

// ---- portable ----

void PortableBlock(WeightFormat format, const uint8_t* c, float scale,
                   float* values) {
  if (format == WeightFormat::kQ8) {
    for (int k = 0; k < 32; ++k)
      values[k] = static_cast<float>(static_cast<int8_t>(c[k])) * scale;
  } else if (format == WeightFormat::kQ4) {
    for (int j = 0; j < 16; ++j) {
      values[j] = static_cast<float>((c[j] & 15) - 8) * scale;
      values[j + 16] = static_cast<float>((c[j] >> 4) - 8) * scale;
    }
  } else {
    const float* levels = Nf4Levels();
    for (int j = 0; j < 32; ++j) {
      values[j] = levels[c[j] & 15] * scale;
      values[j + 32] = levels[c[j] >> 4] * scale;
    }
  }
}

void PortableRow(const Rows& rows, int64_t row, const float* scales, void* out,
                 int64_t at) {
  const int64_t block = WeightFormatBlockSize(rows.format);
  const int64_t bytes_per_block = rows.code_stride / rows.blocks;
  float values[64];
  for (int64_t b = 0; b < rows.blocks; ++b) {
    PortableBlock(rows.format,
                  rows.codes + row * rows.code_stride + b * bytes_per_block,
                  scales[b], values);
    EmitScalar(values, std::min(block, rows.cols - b * block), rows.bf16, out,
               at + b * block);
  }
}

// ---- AVX2 ----

#define OPENFORCE_AVX2 __attribute__((target("avx2,fma,f16c")))

// Eight fp32 rounded to bf16 (nearest, ties to even: ATen's rounding for
// finite values), as eight 16-bit lanes.
OPENFORCE_AVX2 inline __m128i Avx2ToBf16(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i odd =
      _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))),
      16);
  // Values fit in 16 bits, so unsigned saturation keeps them.
  return _mm_packus_epi32(_mm256_castsi256_si128(rounded),
                          _mm256_extracti128_si256(rounded, 1));
}

OPENFORCE_AVX2 inline __m256 Avx2Int8x8(__m128i v) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

template <WeightFormat format>
OPENFORCE_AVX2 void Avx2Block(const uint8_t* c, float scale, float* values) {
  const __m256 s = _mm256_set1_ps(scale);
  if (format == WeightFormat::kQ8) {
    for (int k = 0; k < 32; k += 8) {
      const __m128i v =
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + k));
      _mm256_storeu_ps(values + k, _mm256_mul_ps(Avx2Int8x8(v), s));
    }
  } else if (format == WeightFormat::kQ4) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
    const __m128i mask = _mm_set1_epi8(15), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight);
    const __m128i hi =
        _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight);
    _mm256_storeu_ps(values, _mm256_mul_ps(Avx2Int8x8(lo), s));
    _mm256_storeu_ps(values + 8,
                     _mm256_mul_ps(Avx2Int8x8(_mm_srli_si128(lo, 8)), s));
    _mm256_storeu_ps(values + 16, _mm256_mul_ps(Avx2Int8x8(hi), s));
    _mm256_storeu_ps(values + 24,
                     _mm256_mul_ps(Avx2Int8x8(_mm_srli_si128(hi, 8)), s));
  } else {
    const __m256 levels_low = _mm256_loadu_ps(Nf4Levels());
    const __m256 levels_high = _mm256_loadu_ps(Nf4Levels() + 8);
    const __m256i seven = _mm256_set1_epi32(7);
    for (int k = 0; k < 32; k += 8) {
      const __m256i bytes = _mm256_cvtepu8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + k)));
      for (int half = 0; half < 2; ++half) {
        const __m256i index =
            half == 0 ? _mm256_and_si256(bytes, _mm256_set1_epi32(15))
                      : _mm256_srli_epi32(bytes, 4);
        const __m256 level = _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(levels_low, index),
            _mm256_permutevar8x32_ps(levels_high, index),
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(index, seven)));
        _mm256_storeu_ps(values + k + 32 * half, _mm256_mul_ps(level, s));
      }
    }
  }
}

template <WeightFormat format>
OPENFORCE_AVX2 void Avx2Row(const Rows& rows, int64_t row, const float* scales,
                            void* out, int64_t at) {
  constexpr int64_t block = format == WeightFormat::kNf4 ? 64 : 32;
  constexpr int64_t bytes_per_block = format == WeightFormat::kQ4 ? 16 : 32;
  alignas(32) float values[64];
  for (int64_t b = 0; b < rows.blocks; ++b) {
    Avx2Block<format>(rows.codes + row * rows.code_stride + b * bytes_per_block,
                      scales[b], values);
    const int64_t n = std::min(block, rows.cols - b * block);
    const int64_t offset = at + b * block;
    if (n < block) {
      EmitScalar(values, n, rows.bf16, out, offset);
    } else if (rows.bf16) {
      auto* dst = static_cast<uint16_t*>(out) + offset;
      for (int64_t k = 0; k < block; k += 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + k),
                         Avx2ToBf16(_mm256_load_ps(values + k)));
      }
    } else {
      std::memcpy(static_cast<float*>(out) + offset, values,
                  block * sizeof(float));
    }
  }
}

// ---- AVX-512 ----

#define OPENFORCE_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

OPENFORCE_AVX512 inline __m256i Avx512ToBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd =
      _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))),
      16));
}

// Sixteen values of chunk `part` of a block (16 elements each).
template <WeightFormat format>
OPENFORCE_AVX512 inline __m512 Avx512Chunk(const uint8_t* c, int part,
                                           __m512 scale, __m512 levels) {
  const __m128i mask = _mm_set1_epi8(15);
  if (format == WeightFormat::kQ8) {
    const __m128i v =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * part));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), scale);
  }
  if (format == WeightFormat::kQ4) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
    const __m128i nibbles =
        _mm_and_si128(part == 0 ? bytes : _mm_srli_epi16(bytes, 4), mask);
    const __m128i q = _mm_sub_epi8(nibbles, _mm_set1_epi8(8));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), scale);
  }
  // nf4: parts 0 and 1 are the low nibbles of bytes 0-15 and 16-31, parts 2
  // and 3 their high nibbles.
  const __m128i bytes =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * (part % 2)));
  const __m128i nibbles =
      _mm_and_si128(part < 2 ? bytes : _mm_srli_epi16(bytes, 4), mask);
  return _mm512_mul_ps(
      _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(nibbles), levels), scale);
}

template <WeightFormat format>
OPENFORCE_AVX512 void Avx512Row(const Rows& rows, int64_t row,
                                const float* scales, void* out, int64_t at) {
  constexpr int64_t block = format == WeightFormat::kNf4 ? 64 : 32;
  constexpr int64_t bytes_per_block = format == WeightFormat::kQ4 ? 16 : 32;
  constexpr int parts = static_cast<int>(block / 16);
  const __m512 levels = _mm512_loadu_ps(Nf4Levels());
  const uint8_t* codes = rows.codes + row * rows.code_stride;
  for (int64_t b = 0; b < rows.blocks; ++b) {
    const uint8_t* c = codes + b * bytes_per_block;
    const __m512 scale = _mm512_set1_ps(scales[b]);
    const int64_t n = std::min(block, rows.cols - b * block);
    const int64_t offset = at + b * block;
    for (int part = 0; part < parts; ++part) {
      const int64_t count = std::clamp<int64_t>(n - 16 * part, 0, 16);
      if (count == 0) break;
      const __mmask16 keep = static_cast<__mmask16>((1u << count) - 1);
      const __m512 v = Avx512Chunk<format>(c, part, scale, levels);
      if (rows.bf16) {
        _mm256_mask_storeu_epi16(
            static_cast<uint16_t*>(out) + offset + 16 * part, keep,
            Avx512ToBf16(v));
      } else {
        _mm512_mask_storeu_ps(static_cast<float*>(out) + offset + 16 * part,
                              keep, v);
      }
    }
  }
}

void DequantizeRow(GemvIsa isa, const Rows& rows, int64_t row,
                   const float* scales, void* out, int64_t at) {
  switch (isa) {
    case GemvIsa::kAvx512:
    case GemvIsa::kAvx512Vnni:
      if (rows.format == WeightFormat::kQ8) {
        Avx512Row<WeightFormat::kQ8>(rows, row, scales, out, at);
      } else if (rows.format == WeightFormat::kQ4) {
        Avx512Row<WeightFormat::kQ4>(rows, row, scales, out, at);
      } else {
        Avx512Row<WeightFormat::kNf4>(rows, row, scales, out, at);
      }
      return;
    case GemvIsa::kAvx2:
      if (rows.format == WeightFormat::kQ8) {
        Avx2Row<WeightFormat::kQ8>(rows, row, scales, out, at);
      } else if (rows.format == WeightFormat::kQ4) {
        Avx2Row<WeightFormat::kQ4>(rows, row, scales, out, at);
      } else {
        Avx2Row<WeightFormat::kNf4>(rows, row, scales, out, at);
      }
      return;
    case GemvIsa::kPortable:
      PortableRow(rows, row, scales, out, at);
      return;
  }
}

}  // namespace

bool CanDequantizeOnCpu(const QuantizedMatrix& m, at::ScalarType dtype) {
  return m.defined() && m.codes.device().is_cpu() &&
         m.format != WeightFormat::kNone &&
         (dtype == at::kFloat || dtype == at::kBFloat16);
}

at::Tensor DequantizeOnCpu(const QuantizedMatrix& m, const int64_t* rows,
                           int64_t n, at::ScalarType dtype) {
  return DequantizeOnCpuWith(BestGemvIsa(), m, rows, n, dtype);
}

at::Tensor DequantizeOnCpuWith(GemvIsa isa, const QuantizedMatrix& m,
                               const int64_t* rows, int64_t n,
                               at::ScalarType dtype) {
  TORCH_CHECK(CanDequantizeOnCpu(m, dtype),
              "the CPU dequantization takes CPU codes into fp32 or bf16");
  at::Tensor out = at::empty({n, m.cols}, at::TensorOptions().dtype(dtype));
  Rows source{};
  source.format = m.format;
  source.codes = static_cast<const uint8_t*>(m.codes.data_ptr());
  source.code_stride = m.codes.size(1);
  source.blocks = m.blocks_per_row();
  source.cols = m.cols;
  source.bf16 = dtype == at::kBFloat16;
  void* data = out.data_ptr();
  at::parallel_for(0, n, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> scales(source.blocks);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t row = rows == nullptr ? i : rows[i];
      RowScales(m, row, scales.data());
      DequantizeRow(isa, source, row, scales.data(), data, i * m.cols);
    }
  });
  return out;
}

}  // namespace openforce::lora::internal
