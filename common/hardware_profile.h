// What a machine has to offer: CPU model, cores and vector extensions, RAM, and
// GPUs found through NVML (NVIDIA) or ROCm SMI (AMD). GPU libraries are loaded
// with dlopen at run time, so binaries carry no GPU link dependency and probe
// cleanly where neither driver exists.
#ifndef OPENFORCE_COMMON_HARDWARE_PROFILE_H_
#define OPENFORCE_COMMON_HARDWARE_PROFILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce {

struct CpuInfo {
  std::string model;
  int physical_cores = 0;
  int logical_cores = 0;
  bool fma = false;
  bool avx2 = false;
  bool avx512f = false;
  bool avx512_bf16 = false;
  bool amx_tile = false;
  bool amx_bf16 = false;
};

struct MemoryInfo {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};

enum class GpuVendor { kNvidia, kAmd };

struct GpuInfo {
  GpuVendor vendor = GpuVendor::kNvidia;
  int index = 0;  // the driver's device index
  std::string name;
  uint64_t vram_total_bytes = 0;
  uint64_t vram_free_bytes = 0;
  // Busy share of the last sample period in percent (NVML), or -1 when the
  // driver does not say.
  int utilization_percent = -1;
};

struct HardwareProfile {
  CpuInfo cpu;
  MemoryInfo memory;
  std::vector<GpuInfo> gpus;
  // What the probe could not see and why (no NVIDIA driver, cgroup limit
  // applied, ...), for people reading the probe output.
  std::vector<std::string> notes;
};

struct ProbeOptions {
  std::string proc_root = "/proc";
  // cgroup v2 mount; a memory.max there lowers the usable RAM (containers).
  std::string cgroup_root = "/sys/fs/cgroup";
  // Libraries tried in order with dlopen; the first that loads is used.
  std::vector<std::string> nvml_libraries = {"libnvidia-ml.so.1",
                                             "libnvidia-ml.so"};
  std::vector<std::string> rocm_smi_libraries = {
      "librocm_smi64.so", "librocm_smi64.so.7", "librocm_smi64.so.6",
      "librocm_smi64.so.5", "/opt/rocm/lib/librocm_smi64.so"};
};

// Parses /proc/cpuinfo text (x86 layout). InvalidArgument when it lists no
// processor.
[[nodiscard]] absl::StatusOr<CpuInfo> ParseCpuInfo(absl::string_view text);

// Parses /proc/meminfo text. InvalidArgument when MemTotal is missing;
// MemAvailable falls back to MemFree + Cached on kernels older than 3.14.
[[nodiscard]] absl::StatusOr<MemoryInfo> ParseMemInfo(absl::string_view text);

// Probes this machine. Only unreadable /proc files are errors; missing GPU
// libraries are normal and end up in `notes`.
[[nodiscard]] absl::StatusOr<HardwareProfile> ProbeHardware(
    const ProbeOptions& options = {});

absl::string_view GpuVendorName(GpuVendor vendor);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_HARDWARE_PROFILE_H_
