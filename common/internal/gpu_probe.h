// GPU enumeration through vendor management libraries opened with dlopen: NVML
// for NVIDIA and ROCm SMI for AMD. Used by ProbeHardware(); tests point these
// at fake libraries.
#ifndef OPENFORCE_COMMON_INTERNAL_GPU_PROBE_H_
#define OPENFORCE_COMMON_INTERNAL_GPU_PROBE_H_

#include <string>
#include <vector>

#include "common/hardware_profile.h"

namespace openforce::internal {

struct GpuProbeResult {
  std::vector<GpuInfo> gpus;
  // Empty when the library loaded and answered; otherwise why no GPUs were
  // listed.
  std::string note;
};

GpuProbeResult ProbeNvidiaGpus(const std::vector<std::string>& libraries);
GpuProbeResult ProbeAmdGpus(const std::vector<std::string>& libraries);

}  // namespace openforce::internal

#endif  // OPENFORCE_COMMON_INTERNAL_GPU_PROBE_H_
