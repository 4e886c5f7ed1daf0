// Real readings for the donation policy: other processes' share of the CPU
// (from /proc/stat minus this process's own time in /proc/self/stat), the
// power source (/sys/class/power_supply), available memory and, for GPU
// workers, GPU utilisation through NVML. Paths are options so tests can point
// them at fake trees.
#ifndef OPENFORCE_WORKER_SYSTEM_MONITOR_H_
#define OPENFORCE_WORKER_SYSTEM_MONITOR_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/hardware_profile.h"
#include "worker/donation_policy.h"

namespace openforce::worker {

struct CpuTimes {
  uint64_t total = 0;  // all jiffies
  uint64_t busy = 0;   // total minus idle and iowait
};

// The aggregate "cpu" line of /proc/stat.
[[nodiscard]] absl::StatusOr<CpuTimes> ParseProcStat(absl::string_view text);
// utime + stime of /proc/<pid>/stat (every thread of the process).
[[nodiscard]] absl::StatusOr<uint64_t> ParseProcessCpuTime(
    absl::string_view text);
// True when a battery is discharging and no mains supply is online.
bool ReadOnBattery(const std::string& power_supply_root);

struct SystemMonitorOptions {
  std::string proc_root = "/proc";
  std::string power_supply_root = "/sys/class/power_supply";
  ProbeOptions probe;  // memory and NVML
  bool watch_gpu = false;
};

class SystemMonitor {
 public:
  explicit SystemMonitor(SystemMonitorOptions options)
      : options_(std::move(options)) {}

  // Readings over the time since the previous call (the first call reports
  // no CPU use by others). `own_gpu_busy`: this worker is using the GPU now,
  // so utilisation says nothing about others and is not reported.
  [[nodiscard]] absl::StatusOr<MachineReadings> Sample(bool own_gpu_busy);

 private:
  const SystemMonitorOptions options_;
  std::optional<CpuTimes> last_cpu_;
  uint64_t last_own_ = 0;
};

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_SYSTEM_MONITOR_H_
