// The AVX-512-BF16 matrix-vector kernel against an fp32 reference, including
// row counts not divisible by four and widths not divisible by 32.
#include "lora/internal/bf16_gemv.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/testing/tensor_matchers.h"

namespace openforce::lora::internal {
namespace {

TEST(Bf16GemvTest, MatchesAnFp32ReferenceForEveryShape) {
  __builtin_cpu_init();
  const bool cpu_has_bf16 = __builtin_cpu_supports("avx512bf16");
  ASSERT_EQ(Bf16GemvAvailable(),
            cpu_has_bf16 && __builtin_cpu_supports("avx512bw"));
  if (!Bf16GemvAvailable())
    return;  // nothing to run on this CPU; the check above holds
  at::manual_seed(3);
  for (auto [rows, width] : {std::pair<int64_t, int64_t>{768, 768},
                             {7, 64},
                             {130, 45},
                             {1, 31},
                             {5, 1000}}) {
    const at::Tensor weight = at::randn({rows, width}).to(at::kBFloat16);
    const at::Tensor x = at::randn({width}).to(at::kBFloat16);
    const at::Tensor expected = at::mv(weight.to(at::kFloat), x.to(at::kFloat));
    const at::Tensor actual = Bf16Gemv(weight, x);
    // Products of bf16 pairs are exact in fp32; only the summation order
    // differs.
    EXPECT_TRUE(
        testing::TensorsNear(actual, expected, 1e-3 * std::sqrt(double(width))))
        << rows << "x" << width;
  }
}

}  // namespace
}  // namespace openforce::lora::internal
