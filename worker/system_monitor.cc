// Machine readings for the donation policy; see system_monitor.h.
#include "worker/system_monitor.h"

#include <time.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace openforce::worker {

absl::StatusOr<CpuTimes> ParseProcStat(absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "cpu ")) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    // cpu user nice system idle iowait irq softirq steal [guest guest_nice];
    // guest time is already counted in user.
    if (fields.size() < 5) break;
    CpuTimes times;
    uint64_t idle = 0;
    for (size_t i = 1; i < fields.size() && i <= 8; ++i) {
      uint64_t value = 0;
      if (!absl::SimpleAtoi(fields[i], &value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("/proc/stat: bad cpu field '", fields[i], "'"));
      }
      times.total += value;
      if (i == 4 || i == 5) idle += value;
    }
    times.busy = times.total - idle;
    return times;
  }
  return absl::InvalidArgumentError("/proc/stat has no aggregate cpu line");
}

absl::StatusOr<uint64_t> ParseProcessCpuTime(absl::string_view text) {
  // The command name (field 2) may hold spaces; count from its closing ')'.
  const size_t close = text.rfind(')');
  if (close == absl::string_view::npos)
    return absl::InvalidArgumentError("process stat has no command field");
  std::vector<absl::string_view> fields =
      absl::StrSplit(text.substr(close + 1), ' ', absl::SkipEmpty());
  // After ')': state is field 3, so utime (14) and stime (15) are 11 and 12.
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InvalidArgumentError("process stat lacks utime and stime");
  }
  return utime + stime;
}

bool ReadOnBattery(const std::string& power_supply_root) {
  std::error_code error;
  bool discharging = false, mains_online = false;
  for (const auto& entry :
       std::filesystem::directory_iterator(power_supply_root, error)) {
    const std::string dir = entry.path().string();
    absl::StatusOr<std::string> type = ReadFileToString(dir + "/type");
    if (!type.ok()) continue;
    const std::string kind(absl::StripAsciiWhitespace(*type));
    if (kind == "Mains") {
      absl::StatusOr<std::string> online = ReadFileToString(dir + "/online");
      mains_online |= online.ok() && absl::StripAsciiWhitespace(*online) == "1";
    } else if (kind == "Battery") {
      absl::StatusOr<std::string> status = ReadFileToString(dir + "/status");
      discharging |=
          status.ok() && absl::StripAsciiWhitespace(*status) == "Discharging";
    }
  }
  return discharging && !mains_online;
}

absl::StatusOr<MachineReadings> SystemMonitor::Sample(bool own_gpu_busy) {
  MachineReadings readings;
  readings.now = absl::Now();
  const time_t seconds = absl::ToTimeT(readings.now);
  struct tm local;
  localtime_r(&seconds, &local);
  readings.minute_of_day = local.tm_hour * 60 + local.tm_min;

  ASSIGN_OR_RETURN(std::string stat,
                   ReadFileToString(options_.proc_root + "/stat"));
  ASSIGN_OR_RETURN(CpuTimes cpu, ParseProcStat(stat));
  ASSIGN_OR_RETURN(std::string own_stat,
                   ReadFileToString(options_.proc_root + "/self/stat"));
  ASSIGN_OR_RETURN(uint64_t own, ParseProcessCpuTime(own_stat));
  if (last_cpu_.has_value() && cpu.total > last_cpu_->total) {
    const double total = static_cast<double>(cpu.total - last_cpu_->total);
    const double busy = static_cast<double>(cpu.busy - last_cpu_->busy);
    const double mine = static_cast<double>(own - last_own_);
    readings.other_cpu = std::clamp((busy - mine) / total, 0.0, 1.0);
  }
  last_cpu_ = cpu;
  last_own_ = own;

  readings.on_battery = ReadOnBattery(options_.power_supply_root);
  ASSIGN_OR_RETURN(std::string meminfo,
                   ReadFileToString(options_.proc_root + "/meminfo"));
  ASSIGN_OR_RETURN(MemoryInfo memory, ParseMemInfo(meminfo));
  readings.available_memory_bytes = memory.available_bytes;
  if (options_.watch_gpu && !own_gpu_busy) {
    absl::StatusOr<HardwareProfile> profile = ProbeHardware(options_.probe);
    if (profile.ok()) {
      for (const GpuInfo& gpu : profile->gpus) {
        if (gpu.utilization_percent < 0) continue;
        readings.other_gpu = std::max(readings.other_gpu.value_or(0.0),
                                      gpu.utilization_percent / 100.0);
      }
    }
  }
  return readings;
}

}  // namespace openforce::worker
