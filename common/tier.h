// Hardware tiers from DESIGN.md's reference table. A tier is a label for people
// and a coarse filter for jobs ("minimum tier"); whether a unit fits is decided
// by the memory estimator (memory_estimate.h), not by the tier.
#ifndef OPENFORCE_COMMON_TIER_H_
#define OPENFORCE_COMMON_TIER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/byte_size.h"
#include "common/hardware_profile.h"

namespace openforce {

// Ordered from least to most capable; values match openforce.v1.Tier on the
// wire.
enum class Tier {
  kCpu = 1,
  kGpuSmall = 2,    // 6-8 GB VRAM, e.g. RTX 3060 8 GB
  kGpuMid = 3,      // 10-16 GB, e.g. RTX 3060 12 GB, RX 6800
  kGpuLarge = 4,    // 24 GB, e.g. RTX 4090
  kDatacenter = 5,  // 40 GB+, e.g. A100, H100, MI250
};

// The smallest VRAM (as drivers report it, slightly under the marketed size)
// for each GPU tier. A GPU under kGpuSmallMinVram is not worth using for
// training: the machine is cpu tier.
inline constexpr uint64_t kGpuSmallMinVram = 5 * kGiB + 512 * kMiB;
inline constexpr uint64_t kGpuMidMinVram = 9 * kGiB + 512 * kMiB;
inline constexpr uint64_t kGpuLargeMinVram = 20 * kGiB;
inline constexpr uint64_t kDatacenterMinVram = 36 * kGiB;

// The tier of one GPU with `vram_total_bytes`.
Tier TierForVram(uint64_t vram_total_bytes);

// The best tier among the machine's GPUs (a job trains on one device, so VRAM
// is not summed), or kCpu when there is no usable GPU.
Tier ClassifyTier(const HardwareProfile& profile);

// "cpu", "gpu-small", "gpu-mid", "gpu-large", "datacenter".
absl::string_view TierName(Tier tier);
[[nodiscard]] absl::StatusOr<Tier> ParseTier(absl::string_view name);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_TIER_H_
