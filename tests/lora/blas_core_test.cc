// OpenBLAS kernel choice: which core fits a CPU, and when a generic fallback is
// replaced.
#include "lora/blas_core.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace openforce::lora {
namespace {

TEST(BlasCoreTest, RecommendsTheCoreForTheWidestVectorExtension) {
  CpuInfo cpu;
  EXPECT_EQ(RecommendedOpenBlasCore(cpu), "");
  cpu.avx2 = true;
  EXPECT_EQ(RecommendedOpenBlasCore(cpu), "Haswell");
  cpu.avx512f = true;
  EXPECT_EQ(RecommendedOpenBlasCore(cpu), "SkylakeX");
  cpu.avx512_bf16 = true;
  EXPECT_EQ(RecommendedOpenBlasCore(cpu), "Cooperlake");
}

TEST(BlasCoreTest, OverridesOnlyGenericFallbacks) {
  EXPECT_TRUE(ShouldOverrideOpenBlasCore("Prescott", "Cooperlake"));
  EXPECT_TRUE(ShouldOverrideOpenBlasCore("Core2", "Haswell"));
  EXPECT_FALSE(ShouldOverrideOpenBlasCore("Prescott", ""));
  // A core OpenBLAS recognised itself (Zen on AMD, SkylakeX on bare metal)
  // stays.
  EXPECT_FALSE(ShouldOverrideOpenBlasCore("Zen", "Haswell"));
  EXPECT_FALSE(ShouldOverrideOpenBlasCore("SkylakeX", "Cooperlake"));
}

TEST(BlasCoreTest, LibtorchOnThisMachineRunsOpenBlas) {
  // setup.sh installs libopenblas0-openmp; without it matmuls use reference
  // BLAS.
  const std::string core = CurrentOpenBlasCore();
  EXPECT_FALSE(core.empty());
  // ctest runs this binary without OPENBLAS_CORETYPE unless the environment
  // sets it, so when it is set the process must be on that core.
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE");
      forced != nullptr) {
    EXPECT_EQ(core, forced);
  }
}

}  // namespace
}  // namespace openforce::lora
