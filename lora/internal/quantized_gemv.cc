// Quantized matrix-vector kernels; see quantized_gemv.h. Each kernel handles
// R rows at once (independent accumulator chains, one load of x per block for
// all of them) and whole blocks only: x is zero-padded to whole blocks, and
// the padding's codes stand for zero in every format. The loops over the R
// rows carry "#pragma GCC unroll": without it GCC kept acc[] on the stack, a
// store-to-load chain per block that held the 4-bit kernels to half speed.
#include "lora/internal/quantized_gemv.h"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "lora/quantized_matrix.h"

// GCC 12 warns about _mm512_reduce_add_ps's internal _mm512_undefined_ps (GCC
// bug 105593); the value is never read uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace openforce::lora::internal {
namespace {

constexpr int64_t kNf4GroupBlocks = 256;
constexpr int64_t kRowsPerTask = 64;
// Each kernel reads four rows at once, so four streams share a few 4 KiB
// pages, which the hardware prefetcher does not follow well: each row's next
// lines are asked for explicitly. Where four rows take at most 16 KiB (rows
// of up to 4 KiB: the 1B and 7B models' attention and MLP inputs in q4 and
// q8), the kernel asks for the same line of the next four rows, so the next
// group is in flight when the current one ends (measured on 2048-column q4:
// 15 -> 24 GB/s, the bf16 kernel's speed); longer rows take a fixed distance.
constexpr int64_t kPrefetchBytes = 512;
constexpr int64_t kPrefetchRowGroupLimit = 16 << 10;

int64_t PrefetchOffset(int64_t code_stride) {
  return 4 * code_stride <= kPrefetchRowGroupLimit ? 4 * code_stride
                                                   : kPrefetchBytes;
}

// What every kernel reads: the matrix's raw arrays.
struct Operands {
  const uint8_t* codes;         // row r at codes + r * code_stride
  int64_t code_stride;          // bytes per row
  const uint16_t* half_scales;  // kQ8, kQ4: fp16 bits, [rows, blocks]
  const int8_t* absmax_codes;   // kNf4: [rows, blocks]
  const float* group_scales;    // kNf4
  float absmax_mean;            // kNf4
  int64_t blocks;
  const float* x;           // padded to blocks x block size
  int64_t prefetch_offset;  // bytes ahead of the line being read
};

float HalfToFloat(uint16_t bits) {
  return c10::detail::fp16_ieee_to_fp32_value(bits);
}

float BlockScale(const Operands& op, WeightFormat format, int64_t row,
                 int64_t b) {
  const int64_t i = row * op.blocks + b;
  if (format == WeightFormat::kNf4) {
    return Nf4BlockScale(op.absmax_codes[i],
                         op.group_scales[i / kNf4GroupBlocks], op.absmax_mean);
  }
  return HalfToFloat(op.half_scales[i]);
}

// ---- portable ----

void PortableRows(const Operands& op, WeightFormat format, float* y,
                  int64_t begin, int64_t end) {
  const float* levels = Nf4Levels();
  for (int64_t r = begin; r < end; ++r) {
    const uint8_t* row = op.codes + r * op.code_stride;
    float total = 0;
    for (int64_t b = 0; b < op.blocks; ++b) {
      float sum = 0;
      if (format == WeightFormat::kQ8) {
        const auto* c = reinterpret_cast<const int8_t*>(row) + b * 32;
        const float* x = op.x + b * 32;
        for (int k = 0; k < 32; ++k) sum += static_cast<float>(c[k]) * x[k];
      } else if (format == WeightFormat::kQ4) {
        const uint8_t* c = row + b * 16;
        const float* x = op.x + b * 32;
        for (int j = 0; j < 16; ++j) {
          sum += static_cast<float>((c[j] & 15) - 8) * x[j] +
                 static_cast<float>((c[j] >> 4) - 8) * x[j + 16];
        }
      } else {
        const uint8_t* c = row + b * 32;
        const float* x = op.x + b * 64;
        for (int j = 0; j < 32; ++j)
          sum += levels[c[j] & 15] * x[j] + levels[c[j] >> 4] * x[j + 32];
      }
      total += sum * BlockScale(op, format, r, b);
    }
    y[r] = total;
  }
}

// ---- AVX2 ----

#define OPENFORCE_AVX2 __attribute__((target("avx2,fma,f16c")))

OPENFORCE_AVX2 inline float Sum8(__m256 v) {
  const __m128 folded =
      _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  __m128 s = _mm_add_ps(folded, _mm_movehl_ps(folded, folded));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Eight int8 values at p (sign-extended) as fp32.
OPENFORCE_AVX2 inline __m256 Int8x8(const void* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(static_cast<const __m128i*>(p))));
}

// 16 int8 values in v as two vectors of eight fp32.
OPENFORCE_AVX2 inline void Int8x16(__m128i v, __m256* low, __m256* high) {
  *low = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
  *high = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
}

// NF4 levels of 16 indices (bytes 0..15 in v) as two vectors of eight.
OPENFORCE_AVX2 inline void Nf4x16(__m128i v, __m256 levels_low,
                                  __m256 levels_high, __m256* low,
                                  __m256* high) {
  const __m256i seven = _mm256_set1_epi32(7);
  for (int half = 0; half < 2; ++half) {
    const __m256i index =
        _mm256_cvtepu8_epi32(half == 0 ? v : _mm_srli_si128(v, 8));
    const __m256 from_low = _mm256_permutevar8x32_ps(levels_low, index);
    const __m256 from_high = _mm256_permutevar8x32_ps(levels_high, index);
    const __m256 upper = _mm256_castsi256_ps(_mm256_cmpgt_epi32(index, seven));
    (half == 0 ? *low : *high) = _mm256_blendv_ps(from_low, from_high, upper);
  }
}

// The block's scale, inside the vector code: a call to a function built
// without these target features would spill every vector register and mix
// SSE with AVX (measured: 100x slower).
OPENFORCE_AVX2 inline float Avx2BlockScale(const Operands& op,
                                           WeightFormat format, int64_t row,
                                           int64_t b) {
  const int64_t i = row * op.blocks + b;
  if (format == WeightFormat::kNf4) {
    return static_cast<float>(op.absmax_codes[i]) *
               op.group_scales[i / kNf4GroupBlocks] +
           op.absmax_mean;
  }
  return _cvtsh_ss(op.half_scales[i]);
}

template <int R, WeightFormat format>
OPENFORCE_AVX2 void Avx2Rows(const Operands& op, float* y, int64_t r) {
  __m256 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
  const __m128i mask = _mm_set1_epi8(15);
  const __m128i eight = _mm_set1_epi8(8);
  const __m256 levels_low = _mm256_loadu_ps(Nf4Levels());
  const __m256 levels_high = _mm256_loadu_ps(Nf4Levels() + 8);
  for (int64_t b = 0; b < op.blocks; ++b) {
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* row = op.codes + (r + i) * op.code_stride;
      _mm_prefetch(reinterpret_cast<const char*>(row) +
                       (format == WeightFormat::kQ4 ? b * 16 : b * 32) +
                       op.prefetch_offset,
                   _MM_HINT_T0);
      __m256 p;
      if (format == WeightFormat::kQ8) {
        const uint8_t* c = row + b * 32;
        const float* x = op.x + b * 32;
        p = _mm256_mul_ps(Int8x8(c), _mm256_loadu_ps(x));
        p = _mm256_fmadd_ps(Int8x8(c + 8), _mm256_loadu_ps(x + 8), p);
        p = _mm256_fmadd_ps(Int8x8(c + 16), _mm256_loadu_ps(x + 16), p);
        p = _mm256_fmadd_ps(Int8x8(c + 24), _mm256_loadu_ps(x + 24), p);
      } else if (format == WeightFormat::kQ4) {
        const __m128i c =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(c, mask), eight);
        const __m128i hi =
            _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(c, 4), mask), eight);
        const float* x = op.x + b * 32;
        __m256 a, bb;
        Int8x16(lo, &a, &bb);
        p = _mm256_mul_ps(a, _mm256_loadu_ps(x));
        p = _mm256_fmadd_ps(bb, _mm256_loadu_ps(x + 8), p);
        Int8x16(hi, &a, &bb);
        p = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + 16), p);
        p = _mm256_fmadd_ps(bb, _mm256_loadu_ps(x + 24), p);
      } else {
        const uint8_t* c = row + b * 32;
        const float* x = op.x + b * 64;
        p = _mm256_setzero_ps();
        for (int part = 0; part < 2; ++part) {
          const __m128i bytes =
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16 * part));
          __m256 a, bb;
          Nf4x16(_mm_and_si128(bytes, mask), levels_low, levels_high, &a, &bb);
          p = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + 16 * part), p);
          p = _mm256_fmadd_ps(bb, _mm256_loadu_ps(x + 16 * part + 8), p);
          Nf4x16(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), levels_low,
                 levels_high, &a, &bb);
          p = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + 32 + 16 * part), p);
          p = _mm256_fmadd_ps(bb, _mm256_loadu_ps(x + 40 + 16 * part), p);
        }
      }
      acc[i] = _mm256_fmadd_ps(
          p, _mm256_set1_ps(Avx2BlockScale(op, format, r + i, b)), acc[i]);
    }
  }
  for (int i = 0; i < R; ++i) y[r + i] = Sum8(acc[i]);
}

template <WeightFormat format>
OPENFORCE_AVX2 void Avx2RowRange(const Operands& op, float* y, int64_t begin,
                                 int64_t end) {
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) Avx2Rows<4, format>(op, y, r);
  for (; r < end; ++r) Avx2Rows<1, format>(op, y, r);
}

// ---- AVX-512 ----

#define OPENFORCE_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

OPENFORCE_AVX512 inline __m512 Int8x16To512(__m128i v) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v));
}

// The NF4 levels of 16 indices (bytes of `nibbles`).
OPENFORCE_AVX512 inline __m512 Nf4x16To512(__m128i nibbles, __m512 levels) {
  return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(nibbles), levels);
}

OPENFORCE_AVX512 inline float Avx512BlockScale(const Operands& op,
                                               WeightFormat format, int64_t row,
                                               int64_t b) {
  const int64_t i = row * op.blocks + b;
  if (format == WeightFormat::kNf4) {
    return static_cast<float>(op.absmax_codes[i]) *
               op.group_scales[i / kNf4GroupBlocks] +
           op.absmax_mean;
  }
  return _cvtsh_ss(op.half_scales[i]);
}

// The format is a template parameter: with no branch in the loop the
// compiler keeps the accumulators in registers.
template <int R, WeightFormat format>
OPENFORCE_AVX512 void Avx512Rows(const Operands& op, float* y, int64_t r) {
  __m512 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  const __m128i mask = _mm_set1_epi8(15);
  const __m128i eight = _mm_set1_epi8(8);
  const __m512 levels = _mm512_loadu_ps(Nf4Levels());
  for (int64_t b = 0; b < op.blocks; ++b) {
    if (format == WeightFormat::kNf4) {
      const float* x = op.x + b * 64;
      const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
      const __m512 x2 = _mm512_loadu_ps(x + 32), x3 = _mm512_loadu_ps(x + 48);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 32;
        _mm_prefetch(reinterpret_cast<const char*>(c) + op.prefetch_offset,
                     _MM_HINT_T0);
        const __m128i c0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
        const __m128i c1 =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 16));
        __m512 p =
            _mm512_mul_ps(Nf4x16To512(_mm_and_si128(c0, mask), levels), x0);
        p = _mm512_fmadd_ps(Nf4x16To512(_mm_and_si128(c1, mask), levels), x1,
                            p);
        p = _mm512_fmadd_ps(
            Nf4x16To512(_mm_and_si128(_mm_srli_epi16(c0, 4), mask), levels), x2,
            p);
        p = _mm512_fmadd_ps(
            Nf4x16To512(_mm_and_si128(_mm_srli_epi16(c1, 4), mask), levels), x3,
            p);
        acc[i] = _mm512_fmadd_ps(
            p, _mm512_set1_ps(Avx512BlockScale(op, format, r + i, b)), acc[i]);
      }
      continue;
    }
    const float* x = op.x + b * 32;
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* row = op.codes + (r + i) * op.code_stride;
      _mm_prefetch(reinterpret_cast<const char*>(row) +
                       (format == WeightFormat::kQ4 ? b * 16 : b * 32) +
                       op.prefetch_offset,
                   _MM_HINT_T0);
      __m128i lo, hi;
      if (format == WeightFormat::kQ8) {
        lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 32));
        hi = _mm_loadu_si128(
            reinterpret_cast<const __m128i*>(row + b * 32 + 16));
      } else {
        const __m128i c =
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
        lo = _mm_sub_epi8(_mm_and_si128(c, mask), eight);
        hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(c, 4), mask), eight);
      }
      const __m512 p = _mm512_fmadd_ps(Int8x16To512(hi), x1,
                                       _mm512_mul_ps(Int8x16To512(lo), x0));
      acc[i] = _mm512_fmadd_ps(
          p, _mm512_set1_ps(Avx512BlockScale(op, format, r + i, b)), acc[i]);
    }
  }
  for (int i = 0; i < R; ++i) y[r + i] = _mm512_reduce_add_ps(acc[i]);
}

template <WeightFormat format>
OPENFORCE_AVX512 void Avx512RowRange(const Operands& op, float* y,
                                     int64_t begin, int64_t end) {
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) Avx512Rows<4, format>(op, y, r);
  for (; r < end; ++r) Avx512Rows<1, format>(op, y, r);
}

// ---- AVX-512 VNNI (q4) ----

// Lambdas inside the kernels need the same target to be inlined there.
#define OPENFORCE_VNNI_LAMBDA                                            \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma," \
                        "f16c"),                                         \
                 always_inline))

#define OPENFORCE_VNNI                                        \
  __attribute__((                                             \
      target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma," \
             "f16c")))

// The input rounded to int8 per block of 32 (step amax / 127) and laid out as
// the q4 kernel reads two blocks of codes: [b 0-15, b+1 0-15, b 16-31,
// b+1 16-31]. Per lane of four bytes: the lane's block step and minus 8
// times the lane's sum (codes are read unsigned, q = w + 8). Padded to an
// even number of blocks with zeros.
struct Int8Activations {
  std::vector<int8_t> values;
  std::vector<int32_t> neg_bias;
  std::vector<float> steps;
};

// Rounds x to int8 per block of 32 elements: step amax / 127.
std::vector<float> Int8Steps(const float* x, int64_t blocks32) {
  std::vector<float> steps(blocks32);
  for (int64_t b = 0; b < blocks32; ++b) {
    float amax = 0;
    for (int k = 0; k < 32; ++k)
      amax = std::max(amax, std::fabs(x[b * 32 + k]));
    steps[b] = amax / 127.0f;
  }
  return steps;
}

int8_t RoundToStep(float value, float step) {
  return static_cast<int8_t>(step > 0 ? std::nearbyint(value / step) : 0.0f);
}

Int8Activations QuantizeActivationsForQ4(const float* x, int64_t blocks) {
  const int64_t pairs = (blocks + 1) / 2;
  const std::vector<float> steps = Int8Steps(x, blocks);
  Int8Activations a;
  a.values.assign(pairs * 64, 0);
  a.neg_bias.assign(pairs * 16, 0);
  a.steps.assign(pairs * 16, 0.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t pair = b / 2, second = b % 2;
    for (int k = 0; k < 32; ++k) {
      // Element k of the block: first or second half of the pair's vector.
      const int64_t position =
          pair * 64 + (k < 16 ? 0 : 32) + second * 16 + (k % 16);
      a.values[position] = RoundToStep(x[b * 32 + k], steps[b]);
    }
  }
  for (int64_t lane = 0; lane < pairs * 16; ++lane) {
    int32_t sum = 0;
    for (int k = 0; k < 4; ++k) sum += a.values[lane * 4 + k];
    a.neg_bias[lane] = -8 * sum;
    const int64_t block = (lane / 16) * 2 + (lane % 8) / 4;
    if (block < blocks) a.steps[lane] = steps[block];
  }
  return a;
}

// NF4's levels as int8, round(level x 127), offset by 127 so that vpdpbusd
// reads them unsigned; the offset comes back out through neg_bias. Each
// differs from its float level by at most half of 1/127 of the block absmax.
struct Nf4Int8Table {
  int8_t offset_levels[16];
};

Nf4Int8Table MakeNf4Int8Table() {
  Nf4Int8Table table;
  for (int i = 0; i < 16; ++i) {
    table.offset_levels[i] = static_cast<int8_t>(
        static_cast<uint8_t>(std::nearbyint(Nf4Levels()[i] * 127.0f) + 127.0f));
  }
  return table;
}

// The input in natural order (a 64-byte load holds elements 64k..64k+63),
// rounded to int8 per block of 32 and padded with zeros to a whole number of
// 64-element lines. Per lane of four: the step of the lane's block times
// `step_scale`, and -`offset` x the lane's sum (the weights are read unsigned,
// offset by `offset`).
Int8Activations QuantizeActivationsInOrder(const float* x, int64_t blocks32,
                                           int32_t offset, float step_scale) {
  const std::vector<float> steps = Int8Steps(x, blocks32);
  const int64_t padded = (blocks32 + 1) / 2 * 2;
  Int8Activations a;
  a.values.assign(padded * 32, 0);
  a.neg_bias.assign(padded * 8, 0);
  a.steps.assign(padded * 8, 0.0f);
  for (int64_t k = 0; k < blocks32 * 32; ++k)
    a.values[k] = RoundToStep(x[k], steps[k / 32]);
  for (int64_t lane = 0; lane < blocks32 * 8; ++lane) {
    int32_t sum = 0;
    for (int k = 0; k < 4; ++k) sum += a.values[lane * 4 + k];
    a.neg_bias[lane] = -offset * sum;
    a.steps[lane] = steps[lane / 8] * step_scale;
  }
  return a;
}

// q8: codes read unsigned as w + 128 (one xor per line).
Int8Activations QuantizeActivationsForQ8(const float* x, int64_t blocks) {
  return QuantizeActivationsInOrder(x, blocks, 128, 1.0f);
}

// nf4: 64-element blocks whose int8 levels are offset by 127, with the
// levels' scale 1/127 folded into the steps.
Int8Activations QuantizeActivationsForNf4(const float* x, int64_t blocks) {
  return QuantizeActivationsInOrder(x, blocks * 2, 127, 1.0f / 127.0f);
}

// Two 64-byte lines of int8 input from element `first` (a multiple of 64)
// with their lanes' biases and steps: what every VNNI kernel loads once per
// step and shares between its rows.
struct InputLines {
  __m512i x0, x1, bias0, bias1;
  __m512 steps0, steps1;
};

OPENFORCE_VNNI_LAMBDA inline InputLines LoadInputLines(const Int8Activations& a,
                                                       int64_t first) {
  InputLines in;
  in.x0 = _mm512_loadu_si512(a.values.data() + first);
  in.x1 = _mm512_loadu_si512(a.values.data() + first + 64);
  in.bias0 = _mm512_loadu_si512(a.neg_bias.data() + first / 4);
  in.bias1 = _mm512_loadu_si512(a.neg_bias.data() + first / 4 + 16);
  in.steps0 = _mm512_loadu_ps(a.steps.data() + first / 4);
  in.steps1 = _mm512_loadu_ps(a.steps.data() + first / 4 + 16);
  return in;
}

// acc += dot0 x the scales of the first two of four blocks (fp16, spread
// over the lanes by `first`) x steps0; acc2 likewise for the last two.
OPENFORCE_VNNI_LAMBDA inline void AccumulateFourBlocks(
    const uint16_t* half_scales, __m512i dot0, __m512i dot1, __m512i first,
    __m512i second, __m512 steps0, __m512 steps1, __m512* acc, __m512* acc2) {
  const __m512 four = _mm512_castps128_ps512(_mm_cvtph_ps(
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(half_scales))));
  *acc = _mm512_fmadd_ps(
      _mm512_cvtepi32_ps(dot0),
      _mm512_mul_ps(_mm512_permutexvar_ps(first, four), steps0), *acc);
  *acc2 = _mm512_fmadd_ps(
      _mm512_cvtepi32_ps(dot1),
      _mm512_mul_ps(_mm512_permutexvar_ps(second, four), steps1), *acc2);
}

template <int R>
OPENFORCE_VNNI void VnniQ4Rows(const Operands& op, const Int8Activations& a,
                               float* y, int64_t r) {
  __m512 acc[R], acc2[R];
  for (int i = 0; i < R; ++i) acc[i] = acc2[i] = _mm512_setzero_ps();
  const __m256i low = _mm256_set1_epi8(15);
  const __m512i low512 = _mm512_set1_epi8(15);
  const __m256i lanes =
      _mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  const __m512i first_pair =
      _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  const __m512i second_pair =
      _mm512_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3);
  int64_t b = 0;
  // Four blocks (a 64-byte line of codes, two pairs) per row and step: one
  // load of codes and one conversion of four fp16 scales.
  for (; b + 4 <= op.blocks; b += 4) {
    const auto [x0, x1, bias0, bias1, steps0, steps1] =
        LoadInputLines(a, b * 32);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 16;
      _mm_prefetch(reinterpret_cast<const char*>(c) + op.prefetch_offset,
                   _MM_HINT_T0);
      const __m512i codes = _mm512_loadu_si512(c);
      const __m512i lo = _mm512_and_si512(codes, low512);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(codes, 4), low512);
      // [lo, hi] of blocks b, b+1 and of blocks b+2, b+3.
      const __m512i w0 = _mm512_shuffle_i64x2(lo, hi, 0x44);
      const __m512i w1 = _mm512_shuffle_i64x2(lo, hi, 0xEE);
      const __m512i dot0 = _mm512_dpbusd_epi32(bias0, w0, x0);
      const __m512i dot1 = _mm512_dpbusd_epi32(bias1, w1, x1);
      AccumulateFourBlocks(op.half_scales + (r + i) * op.blocks + b, dot0, dot1,
                           first_pair, second_pair, steps0, steps1, &acc[i],
                           &acc2[i]);
    }
  }
  for (; b < op.blocks; b += 2) {
    const bool both = b + 1 < op.blocks;
    const __mmask32 bytes = both ? ~__mmask32{0} : __mmask32{0xFFFF};
    const int64_t pair = b / 2;
    const __m512i xv = _mm512_loadu_si512(a.values.data() + pair * 64);
    const __m512i bias = _mm512_loadu_si512(a.neg_bias.data() + pair * 16);
    const __m512 steps = _mm512_loadu_ps(a.steps.data() + pair * 16);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 16;
      const __m256i codes = _mm256_maskz_loadu_epi8(bytes, c);
      const __m512i w = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_and_si256(codes, low)),
          _mm256_and_si256(_mm256_srli_epi16(codes, 4), low), 1);
      const __m512i dot = _mm512_dpbusd_epi32(bias, w, xv);
      const uint16_t* h = op.half_scales + (r + i) * op.blocks + b;
      const uint32_t two = both ? (static_cast<uint32_t>(h[1]) << 16) | h[0]
                                : static_cast<uint32_t>(h[0]);
      const __m256i halves = _mm256_permutexvar_epi16(
          lanes,
          _mm256_castsi128_si256(_mm_cvtsi32_si128(static_cast<int>(two))));
      const __m512 scale = _mm512_mul_ps(_mm512_cvtph_ps(halves), steps);
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[i]);
    }
  }
  for (int i = 0; i < R; ++i)
    y[r + i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i], acc2[i]));
}

OPENFORCE_VNNI void VnniQ4RowRange(const Operands& op, const Int8Activations& a,
                                   float* y, int64_t begin, int64_t end) {
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) VnniQ4Rows<4>(op, a, y, r);
  for (; r < end; ++r) VnniQ4Rows<1>(op, a, y, r);
}

// q8 against the int8 input: two 64-byte lines (four blocks) per row and
// step, the codes flipped to unsigned with one xor, one conversion of four
// fp16 scales; a leftover block at a time with 256-bit operations.
template <int R>
OPENFORCE_VNNI void VnniQ8Rows(const Operands& op, const Int8Activations& a,
                               float* y, int64_t r) {
  __m512 acc[R], acc2[R];
  __m256 tail[R];
  for (int i = 0; i < R; ++i) {
    acc[i] = acc2[i] = _mm512_setzero_ps();
    tail[i] = _mm256_setzero_ps();
  }
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i first_pair =
      _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i second_pair =
      _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  int64_t b = 0;
  for (; b + 4 <= op.blocks; b += 4) {
    const auto [x0, x1, bias0, bias1, steps0, steps1] =
        LoadInputLines(a, b * 32);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 32;
      _mm_prefetch(reinterpret_cast<const char*>(c) + op.prefetch_offset,
                   _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c) + op.prefetch_offset + 64,
                   _MM_HINT_T0);
      const __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(c), flip);
      const __m512i w1 = _mm512_xor_si512(_mm512_loadu_si512(c + 64), flip);
      const __m512i dot0 = _mm512_dpbusd_epi32(bias0, w0, x0);
      const __m512i dot1 = _mm512_dpbusd_epi32(bias1, w1, x1);
      AccumulateFourBlocks(op.half_scales + (r + i) * op.blocks + b, dot0, dot1,
                           first_pair, second_pair, steps0, steps1, &acc[i],
                           &acc2[i]);
    }
  }
  for (; b < op.blocks; ++b) {
    const __m256i xv = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(a.values.data() + b * 32));
    const __m256i bias = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(a.neg_bias.data() + b * 8));
    const float step = a.steps[b * 8];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 32;
      const __m256i w = _mm256_xor_si256(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)),
          _mm512_castsi512_si256(flip));
      const __m256i dot = _mm256_dpbusd_epi32(bias, w, xv);
      tail[i] = _mm256_fmadd_ps(
          _mm256_cvtepi32_ps(dot),
          _mm256_set1_ps(_cvtsh_ss(op.half_scales[(r + i) * op.blocks + b]) *
                         step),
          tail[i]);
    }
  }
  for (int i = 0; i < R; ++i) {
    y[r + i] =
        _mm512_reduce_add_ps(_mm512_add_ps(acc[i], acc2[i])) + Sum8(tail[i]);
  }
}

OPENFORCE_VNNI void VnniQ8RowRange(const Operands& op, const Int8Activations& a,
                                   float* y, int64_t begin, int64_t end) {
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) VnniQ8Rows<4>(op, a, y, r);
  for (; r < end; ++r) VnniQ8Rows<1>(op, a, y, r);
}

// `absmax`: each of the R rows' block absmax values, [R, blocks].
template <int R>
OPENFORCE_VNNI void VnniNf4Rows(const Operands& op, const Int8Activations& a,
                                const Nf4Int8Table& table, const float* absmax,
                                float* y, int64_t r) {
  __m512 acc[R], acc2[R];
  for (int i = 0; i < R; ++i) acc[i] = acc2[i] = _mm512_setzero_ps();
  const __m256i low = _mm256_set1_epi8(15);
  const __m512i low512 = _mm512_set1_epi8(15);
  const __m512i levels = _mm512_broadcast_i32x4(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(table.offset_levels)));
  int64_t b = 0;
  // Two blocks (a 64-byte line of codes) per row and step.
  for (; b + 2 <= op.blocks; b += 2) {
    const auto [x0, x1, bias0, bias1, steps0, steps1] =
        LoadInputLines(a, b * 64);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 32;
      _mm_prefetch(reinterpret_cast<const char*>(c) + op.prefetch_offset,
                   _MM_HINT_T0);
      const __m512i codes = _mm512_loadu_si512(c);
      const __m512i lo = _mm512_and_si512(codes, low512);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(codes, 4), low512);
      // Elements 0-63 of block b, then of block b + 1.
      const __m512i w0 =
          _mm512_shuffle_epi8(levels, _mm512_shuffle_i64x2(lo, hi, 0x44));
      const __m512i w1 =
          _mm512_shuffle_epi8(levels, _mm512_shuffle_i64x2(lo, hi, 0xEE));
      const __m512i dot0 = _mm512_dpbusd_epi32(bias0, w0, x0);
      const __m512i dot1 = _mm512_dpbusd_epi32(bias1, w1, x1);
      const float* row_absmax = absmax + i * op.blocks + b;
      acc[i] = _mm512_fmadd_ps(
          _mm512_cvtepi32_ps(dot0),
          _mm512_mul_ps(_mm512_set1_ps(row_absmax[0]), steps0), acc[i]);
      acc2[i] = _mm512_fmadd_ps(
          _mm512_cvtepi32_ps(dot1),
          _mm512_mul_ps(_mm512_set1_ps(row_absmax[1]), steps1), acc2[i]);
    }
  }
  for (; b < op.blocks; ++b) {
    const __m512i xv = _mm512_loadu_si512(a.values.data() + b * 64);
    const __m512i bias = _mm512_loadu_si512(a.neg_bias.data() + b * 16);
    const __m512 steps = _mm512_loadu_ps(a.steps.data() + b * 16);
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const uint8_t* c = op.codes + (r + i) * op.code_stride + b * 32;
      const __m256i codes =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
      const __m512i index = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_and_si256(codes, low)),
          _mm256_and_si256(_mm256_srli_epi16(codes, 4), low), 1);
      const __m512i w = _mm512_shuffle_epi8(levels, index);
      const __m512i dot = _mm512_dpbusd_epi32(bias, w, xv);
      acc[i] = _mm512_fmadd_ps(
          _mm512_cvtepi32_ps(dot),
          _mm512_mul_ps(_mm512_set1_ps(absmax[i * op.blocks + b]), steps),
          acc[i]);
    }
  }
  for (int i = 0; i < R; ++i)
    y[r + i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i], acc2[i]));
}

OPENFORCE_VNNI void VnniNf4RowRange(const Operands& op,
                                    const Int8Activations& a,
                                    const Nf4Int8Table& table, float* y,
                                    int64_t begin, int64_t end) {
  // The double-quantized absmax of four rows' blocks, decoded once per row
  // group instead of in the kernel's inner loop: 16 at a time (an aligned
  // run of 16 blocks shares one group scale, as groups hold 256 blocks).
  // GCC leaves the plain loop scalar, which cost as much as the kernel.
  static_assert(kNf4GroupBlocks % 16 == 0, "16 blocks never straddle groups");
  std::vector<float> absmax(4 * op.blocks);
  auto decode = [&](int64_t r, int rows) OPENFORCE_VNNI_LAMBDA {
    const int64_t first = r * op.blocks, count = rows * op.blocks;
    auto one = [&](int64_t k) OPENFORCE_VNNI_LAMBDA {
      absmax[k] = std::fma(static_cast<float>(op.absmax_codes[first + k]),
                           op.group_scales[(first + k) / kNf4GroupBlocks],
                           op.absmax_mean);
    };
    const __m512 mean = _mm512_set1_ps(op.absmax_mean);
    int64_t k = 0;
    for (; k < count && (first + k) % 16 != 0; ++k) one(k);
    for (; k + 16 <= count; k += 16) {
      const int64_t index = first + k;
      const __m512 codes =
          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
              reinterpret_cast<const __m128i*>(op.absmax_codes + index))));
      _mm512_storeu_ps(
          absmax.data() + k,
          _mm512_fmadd_ps(
              codes, _mm512_set1_ps(op.group_scales[index / kNf4GroupBlocks]),
              mean));
    }
    for (; k < count; ++k) one(k);
  };
  int64_t r = begin;
  for (; r + 4 <= end; r += 4) {
    decode(r, 4);
    VnniNf4Rows<4>(op, a, table, absmax.data(), y, r);
  }
  for (; r < end; ++r) {
    decode(r, 1);
    VnniNf4Rows<1>(op, a, table, absmax.data(), y, r);
  }
}

}  // namespace

GemvIsa BestGemvIsa() {
  static const GemvIsa best = [] {
    const std::vector<GemvIsa> isas = AvailableGemvIsas();
    return isas.back();
  }();
  return best;
}

std::vector<GemvIsa> AvailableGemvIsas() {
  __builtin_cpu_init();
  std::vector<GemvIsa> isas = {GemvIsa::kPortable};
  const bool avx2 = __builtin_cpu_supports("avx2") &&
                    __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx2) isas.push_back(GemvIsa::kAvx2);
  if (avx2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    isas.push_back(GemvIsa::kAvx512);
  if (isas.back() == GemvIsa::kAvx512 && __builtin_cpu_supports("avx512vnni"))
    isas.push_back(GemvIsa::kAvx512Vnni);
  return isas;
}

const char* GemvIsaName(GemvIsa isa) {
  switch (isa) {
    case GemvIsa::kPortable:
      return "portable";
    case GemvIsa::kAvx2:
      return "avx2";
    case GemvIsa::kAvx512:
      return "avx512";
    case GemvIsa::kAvx512Vnni:
      return "avx512-vnni";
  }
  return "unknown";
}

void QuantizedGemv(const QuantizedMatrix& matrix, const float* x, float* y) {
  QuantizedGemvWith(BestGemvIsa(), matrix, x, y);
}

void QuantizedGemvWith(GemvIsa isa, const QuantizedMatrix& m, const float* x,
                       float* y) {
  const int64_t block = WeightFormatBlockSize(m.format);
  const int64_t blocks = m.blocks_per_row();
  std::vector<float> padded;
  const float* input = x;
  if (m.cols != blocks * block) {
    padded.assign(blocks * block, 0.0f);
    std::memcpy(padded.data(), x, m.cols * sizeof(float));
    input = padded.data();
  }
  Operands op{};
  op.codes = static_cast<const uint8_t*>(m.codes.data_ptr());
  op.code_stride = m.codes.size(1);
  op.blocks = blocks;
  op.x = input;
  op.prefetch_offset = PrefetchOffset(op.code_stride);
  if (m.format == WeightFormat::kNf4) {
    op.absmax_codes = m.scales.data_ptr<int8_t>();
    op.group_scales = m.group_scales.data_ptr<float>();
    op.absmax_mean = m.absmax_mean;
  } else {
    op.half_scales =
        reinterpret_cast<const uint16_t*>(m.scales.data_ptr<at::Half>());
  }
  const WeightFormat format = m.format;
  Int8Activations activations;
  static const Nf4Int8Table nf4_table = MakeNf4Int8Table();
  if (isa == GemvIsa::kAvx512Vnni) {
    activations = format == WeightFormat::kQ8
                      ? QuantizeActivationsForQ8(input, blocks)
                  : format == WeightFormat::kQ4
                      ? QuantizeActivationsForQ4(input, blocks)
                      : QuantizeActivationsForNf4(input, blocks);
  }
  at::parallel_for(0, m.rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    switch (isa) {
      case GemvIsa::kAvx512Vnni:
        if (format == WeightFormat::kQ8) {
          VnniQ8RowRange(op, activations, y, begin, end);
        } else if (format == WeightFormat::kQ4) {
          VnniQ4RowRange(op, activations, y, begin, end);
        } else {
          VnniNf4RowRange(op, activations, nf4_table, y, begin, end);
        }
        break;
      case GemvIsa::kAvx512:
        if (format == WeightFormat::kQ8) {
          Avx512RowRange<WeightFormat::kQ8>(op, y, begin, end);
        } else if (format == WeightFormat::kQ4) {
          Avx512RowRange<WeightFormat::kQ4>(op, y, begin, end);
        } else {
          Avx512RowRange<WeightFormat::kNf4>(op, y, begin, end);
        }
        break;
      case GemvIsa::kAvx2:
        if (format == WeightFormat::kQ8) {
          Avx2RowRange<WeightFormat::kQ8>(op, y, begin, end);
        } else if (format == WeightFormat::kQ4) {
          Avx2RowRange<WeightFormat::kQ4>(op, y, begin, end);
        } else {
          Avx2RowRange<WeightFormat::kNf4>(op, y, begin, end);
        }
        break;
      case GemvIsa::kPortable:
        PortableRows(op, format, y, begin, end);
        break;
    }
  });
}

}  // namespace openforce::lora::internal
