// Tier classification; see tier.h.
#include "common/tier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace openforce {

Tier TierForVram(uint64_t vram_total_bytes) {
  if (vram_total_bytes >= kDatacenterMinVram) return Tier::kDatacenter;
  if (vram_total_bytes >= kGpuLargeMinVram) return Tier::kGpuLarge;
  if (vram_total_bytes >= kGpuMidMinVram) return Tier::kGpuMid;
  if (vram_total_bytes >= kGpuSmallMinVram) return Tier::kGpuSmall;
  return Tier::kCpu;
}

Tier ClassifyTier(const HardwareProfile& profile) {
  Tier best = Tier::kCpu;
  for (const GpuInfo& gpu : profile.gpus) {
    best = std::max(best, TierForVram(gpu.vram_total_bytes));
  }
  return best;
}

absl::string_view TierName(Tier tier) {
  switch (tier) {
    case Tier::kCpu:
      return "cpu";
    case Tier::kGpuSmall:
      return "gpu-small";
    case Tier::kGpuMid:
      return "gpu-mid";
    case Tier::kGpuLarge:
      return "gpu-large";
    case Tier::kDatacenter:
      return "datacenter";
  }
  return "unknown";
}

absl::StatusOr<Tier> ParseTier(absl::string_view name) {
  for (Tier tier : {Tier::kCpu, Tier::kGpuSmall, Tier::kGpuMid, Tier::kGpuLarge,
                    Tier::kDatacenter}) {
    if (name == TierName(tier)) return tier;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tier '", name,
                   "' (cpu, gpu-small, gpu-mid, gpu-large, datacenter)"));
}

}  // namespace openforce
