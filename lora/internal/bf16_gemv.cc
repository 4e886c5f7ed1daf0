// AVX-512-BF16 matrix-vector product; see bf16_gemv.h.
#include "lora/internal/bf16_gemv.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <immintrin.h>

#include <cstdint>
#include <cstring>

// GCC 12 warns about _mm512_reduce_add_ps's internal _mm512_undefined_ps (GCC
// bug 105593); the value is never read uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace openforce::lora::internal {
namespace {

float Bf16ToFloat(uint16_t bits) {
  const uint32_t widened = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &widened, sizeof(value));
  return value;
}

// Rows [begin, end) of y = W x, four rows at a time so that four accumulator
// chains hide the latency of vdpbf16ps.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void GemvRows(
    const uint16_t* weight, const uint16_t* x, float* y, int64_t in,
    int64_t begin, int64_t end) {
  const int64_t vector_end = in - in % 32;
  int64_t row = begin;
  for (; row + 4 <= end; row += 4) {
    const uint16_t* w0 = weight + row * in;
    const uint16_t* w1 = w0 + in;
    const uint16_t* w2 = w1 + in;
    const uint16_t* w3 = w2 + in;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int64_t i = 0; i < vector_end; i += 32) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i);
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(w0 + i), xv);
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(w1 + i), xv);
      a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(w2 + i), xv);
      a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(w3 + i), xv);
    }
    float sums[4] = {_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1),
                     _mm512_reduce_add_ps(a2), _mm512_reduce_add_ps(a3)};
    for (int64_t i = vector_end; i < in; ++i) {
      const float xi = Bf16ToFloat(x[i]);
      sums[0] += Bf16ToFloat(w0[i]) * xi;
      sums[1] += Bf16ToFloat(w1[i]) * xi;
      sums[2] += Bf16ToFloat(w2[i]) * xi;
      sums[3] += Bf16ToFloat(w3[i]) * xi;
    }
    std::memcpy(y + row, sums, sizeof(sums));
  }
  for (; row < end; ++row) {
    const uint16_t* w = weight + row * in;
    float sum = 0;
    for (int64_t i = 0; i < in; ++i)
      sum += Bf16ToFloat(w[i]) * Bf16ToFloat(x[i]);
    y[row] = sum;
  }
}

}  // namespace

bool Bf16GemvAvailable() {
  static const bool available = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512bw");
  }();
  return available;
}

at::Tensor Bf16Gemv(const at::Tensor& weight, const at::Tensor& x) {
  RECORD_FUNCTION("openforce::Bf16Gemv", std::vector<c10::IValue>());
  TORCH_CHECK(
      weight.scalar_type() == at::kBFloat16 && x.scalar_type() == at::kBFloat16,
      "Bf16Gemv takes bf16 tensors");
  TORCH_CHECK(
      weight.dim() == 2 && weight.is_contiguous() && weight.device().is_cpu(),
      "Bf16Gemv needs a contiguous 2-D CPU weight");
  const int64_t out = weight.size(0), in = weight.size(1);
  const at::Tensor input = x.contiguous();
  TORCH_CHECK(input.numel() == in, "Bf16Gemv: x has ", input.numel(),
              " elements, weight ", in, " columns");
  at::Tensor y = at::empty({out}, at::TensorOptions().dtype(at::kFloat));
  const auto* w =
      reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
  const auto* xv =
      reinterpret_cast<const uint16_t*>(input.data_ptr<at::BFloat16>());
  float* yv = y.data_ptr<float>();
  // 64 rows of a 4096-wide matrix is 512 KiB: enough work per task to amortise
  // dispatch.
  at::parallel_for(0, out, 64, [&](int64_t begin, int64_t end) {
    GemvRows(w, xv, yv, in, begin, end);
  });
  return y;
}

}  // namespace openforce::lora::internal
