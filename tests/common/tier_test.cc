// Tier boundaries from DESIGN.md's table, by the VRAM drivers report.
#include "common/tier.h"

#include <gtest/gtest.h>

#include "common/byte_size.h"
#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

struct TierCase {
  const char* gpu;
  uint64_t vram;
  Tier tier;
};

class TierForVramTest : public ::testing::TestWithParam<TierCase> {};

TEST_P(TierForVramTest, MatchesTheReferenceTable) {
  EXPECT_EQ(TierForVram(GetParam().vram), GetParam().tier)
      << GetParam().gpu << " with " << FormatBytes(GetParam().vram);
}

INSTANTIATE_TEST_SUITE_P(
    ReferenceGpus, TierForVramTest,
    ::testing::Values(
        TierCase{"no VRAM", 0, Tier::kCpu},
        TierCase{"GTX 1650 4 GB", 4 * kGiB, Tier::kCpu},
        TierCase{"just under small", kGpuSmallMinVram - 1, Tier::kCpu},
        TierCase{"RTX 2060 6 GB as reported", 5928 * kMiB, Tier::kGpuSmall},
        TierCase{"RTX 3060 8 GB", 8 * kGiB, Tier::kGpuSmall},
        TierCase{"just under mid", kGpuMidMinVram - 1, Tier::kGpuSmall},
        TierCase{"RTX 3080 10 GB", 10 * kGiB, Tier::kGpuMid},
        TierCase{"RTX 3060 12 GB", 12 * kGiB, Tier::kGpuMid},
        TierCase{"RX 6800 16 GB", 16 * kGiB, Tier::kGpuMid},
        TierCase{"just under large", kGpuLargeMinVram - 1, Tier::kGpuMid},
        TierCase{"RTX 4090 24 GB as reported", 23 * kGiB + 600 * kMiB,
                 Tier::kGpuLarge},
        TierCase{"RTX 6000 Ada 48 GB", 48 * kGiB, Tier::kDatacenter},
        TierCase{"just under datacenter", kDatacenterMinVram - 1,
                 Tier::kGpuLarge},
        TierCase{"A100 40 GB as reported", 39 * kGiB + 400 * kMiB,
                 Tier::kDatacenter},
        TierCase{"H100 80 GB", 80 * kGiB, Tier::kDatacenter},
        TierCase{"MI250 128 GB", 128 * kGiB, Tier::kDatacenter}));

TEST(ClassifyTierTest, CpuOnlyMachineIsCpuTier) {
  HardwareProfile profile;
  profile.memory.total_bytes = 64 * kGiB;
  EXPECT_EQ(ClassifyTier(profile), Tier::kCpu);
}

TEST(ClassifyTierTest, BestSingleGpuDecidesAndVramIsNotSummed) {
  HardwareProfile profile;
  GpuInfo small;
  small.vram_total_bytes = 8 * kGiB;
  profile.gpus = {small, small,
                  small};  // 24 GB in total, but no single 24 GB card
  EXPECT_EQ(ClassifyTier(profile), Tier::kGpuSmall);
  GpuInfo large;
  large.vram_total_bytes = 24 * kGiB;
  profile.gpus.push_back(large);
  EXPECT_EQ(ClassifyTier(profile), Tier::kGpuLarge);
}

TEST(TierNameTest, RoundTripsAndRejectsUnknownNames) {
  for (Tier tier : {Tier::kCpu, Tier::kGpuSmall, Tier::kGpuMid, Tier::kGpuLarge,
                    Tier::kDatacenter}) {
    absl::StatusOr<Tier> parsed = ParseTier(TierName(tier));
    ASSERT_OK(parsed);
    EXPECT_EQ(*parsed, tier);
  }
  EXPECT_EQ(TierName(Tier::kGpuMid), "gpu-mid");
  EXPECT_THAT(
      ParseTier("gpu-huge"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpu-huge")));
}

}  // namespace
}  // namespace openforce
