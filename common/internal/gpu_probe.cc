// NVML and ROCm SMI through dlopen. Only the handful of entry points needed are
// declared here, with the C ABI their vendors document, so no SDK headers are
// needed to build.
#include "common/internal/gpu_probe.h"

#include <dlfcn.h>

#include <cstdint>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace openforce::internal {
namespace {

struct DlCloser {
  void operator()(void* handle) const { dlclose(handle); }
};
using DlHandle = std::unique_ptr<void, DlCloser>;

// Opens the first library that loads; `tried` collects the names for the note.
DlHandle OpenFirst(const std::vector<std::string>& libraries,
                   std::string* error) {
  std::vector<std::string> failures;
  for (const std::string& name : libraries) {
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) return DlHandle(handle);
    const char* message = dlerror();
    failures.push_back(message != nullptr ? message : name);
  }
  *error = absl::StrJoin(failures, "; ");
  return nullptr;
}

template <typename Fn>
bool Resolve(void* handle, const char* symbol, Fn** out) {
  *out = reinterpret_cast<Fn*>(dlsym(handle, symbol));
  return *out != nullptr;
}

// NVML (nvml.h): nvmlReturn_t is an int enum with NVML_SUCCESS == 0.
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
using NvmlDevice = void*;
using NvmlInitFn = int();
using NvmlShutdownFn = int();
using NvmlGetCountFn = int(unsigned int*);
using NvmlGetHandleFn = int(unsigned int, NvmlDevice*);
using NvmlGetNameFn = int(NvmlDevice, char*, unsigned int);
using NvmlGetMemoryFn = int(NvmlDevice, NvmlMemory*);
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};
using NvmlGetUtilizationFn = int(NvmlDevice, NvmlUtilization*);

// ROCm SMI (rocm_smi.h): rsmi_status_t with RSMI_STATUS_SUCCESS == 0,
// RSMI_MEM_TYPE_VRAM == 0.
using RsmiInitFn = int(uint64_t);
using RsmiShutdownFn = int();
using RsmiNumDevicesFn = int(uint32_t*);
using RsmiNameFn = int(uint32_t, char*, size_t);
using RsmiMemoryFn = int(uint32_t, int, uint64_t*);
constexpr int kRsmiMemTypeVram = 0;

}  // namespace

GpuProbeResult ProbeNvidiaGpus(const std::vector<std::string>& libraries) {
  GpuProbeResult result;
  std::string error;
  DlHandle lib = OpenFirst(libraries, &error);
  if (lib == nullptr) {
    result.note =
        absl::StrCat("no NVIDIA GPU: NVML not loadable (", error, ")");
    return result;
  }
  NvmlInitFn* init;
  NvmlShutdownFn* shutdown;
  NvmlGetCountFn* get_count;
  NvmlGetHandleFn* get_handle;
  NvmlGetNameFn* get_name;
  NvmlGetMemoryFn* get_memory;
  if (!Resolve(lib.get(), "nvmlInit_v2", &init) ||
      !Resolve(lib.get(), "nvmlShutdown", &shutdown) ||
      !Resolve(lib.get(), "nvmlDeviceGetCount_v2", &get_count) ||
      !Resolve(lib.get(), "nvmlDeviceGetHandleByIndex_v2", &get_handle) ||
      !Resolve(lib.get(), "nvmlDeviceGetName", &get_name) ||
      !Resolve(lib.get(), "nvmlDeviceGetMemoryInfo", &get_memory)) {
    result.note = "NVML loaded but lacks the expected entry points";
    return result;
  }
  // Optional: older drivers and some GPUs do not report utilisation.
  NvmlGetUtilizationFn* get_utilization = nullptr;
  if (!Resolve(lib.get(), "nvmlDeviceGetUtilizationRates", &get_utilization))
    get_utilization = nullptr;
  if (int rc = init(); rc != 0) {
    result.note =
        absl::StrCat("NVML init failed (code ", rc, "): driver not running?");
    return result;
  }
  unsigned int count = 0;
  if (int rc = get_count(&count); rc != 0) {
    result.note = absl::StrCat("NVML device count failed (code ", rc, ")");
    count = 0;
  }
  for (unsigned int i = 0; i < count; ++i) {
    NvmlDevice device = nullptr;
    if (get_handle(i, &device) != 0) continue;
    GpuInfo gpu;
    gpu.vendor = GpuVendor::kNvidia;
    gpu.index = static_cast<int>(i);
    char name[96] = {};
    if (get_name(device, name, sizeof(name)) == 0) gpu.name = name;
    NvmlMemory memory{};
    if (get_memory(device, &memory) == 0) {
      gpu.vram_total_bytes = memory.total;
      gpu.vram_free_bytes = memory.free;
    }
    NvmlUtilization utilization{};
    if (get_utilization != nullptr && get_utilization(device, &utilization) == 0)
      gpu.utilization_percent = static_cast<int>(utilization.gpu);
    result.gpus.push_back(std::move(gpu));
  }
  shutdown();
  return result;
}

GpuProbeResult ProbeAmdGpus(const std::vector<std::string>& libraries) {
  GpuProbeResult result;
  std::string error;
  DlHandle lib = OpenFirst(libraries, &error);
  if (lib == nullptr) {
    result.note =
        absl::StrCat("no AMD GPU: ROCm SMI not loadable (", error, ")");
    return result;
  }
  RsmiInitFn* init;
  RsmiShutdownFn* shutdown;
  RsmiNumDevicesFn* num_devices;
  RsmiNameFn* get_name;
  RsmiMemoryFn* memory_total;
  RsmiMemoryFn* memory_used;
  if (!Resolve(lib.get(), "rsmi_init", &init) ||
      !Resolve(lib.get(), "rsmi_shut_down", &shutdown) ||
      !Resolve(lib.get(), "rsmi_num_monitor_devices", &num_devices) ||
      !Resolve(lib.get(), "rsmi_dev_name_get", &get_name) ||
      !Resolve(lib.get(), "rsmi_dev_memory_total_get", &memory_total) ||
      !Resolve(lib.get(), "rsmi_dev_memory_usage_get", &memory_used)) {
    result.note = "ROCm SMI loaded but lacks the expected entry points";
    return result;
  }
  if (int rc = init(0); rc != 0) {
    result.note = absl::StrCat("ROCm SMI init failed (code ", rc,
                               "): amdgpu not loaded?");
    return result;
  }
  uint32_t count = 0;
  if (int rc = num_devices(&count); rc != 0) {
    result.note = absl::StrCat("ROCm SMI device count failed (code ", rc, ")");
    count = 0;
  }
  for (uint32_t i = 0; i < count; ++i) {
    GpuInfo gpu;
    gpu.vendor = GpuVendor::kAmd;
    gpu.index = static_cast<int>(i);
    char name[128] = {};
    if (get_name(i, name, sizeof(name)) == 0) gpu.name = name;
    uint64_t total = 0, used = 0;
    if (memory_total(i, kRsmiMemTypeVram, &total) == 0) {
      gpu.vram_total_bytes = total;
      if (memory_used(i, kRsmiMemTypeVram, &used) == 0 && used <= total) {
        gpu.vram_free_bytes = total - used;
      }
    }
    result.gpus.push_back(std::move(gpu));
  }
  shutdown();
  return result;
}

}  // namespace openforce::internal
