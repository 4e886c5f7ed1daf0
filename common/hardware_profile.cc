// Hardware probe from /proc, cgroup v2 and dlopen'ed GPU libraries; see
// hardware_profile.h.
#include "common/hardware_profile.h"

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/byte_size.h"
#include "common/file_util.h"
#include "common/internal/gpu_probe.h"
#include "common/status_macros.h"

namespace openforce {
namespace {

// Splits "key<TAB>: value" lines.
std::pair<absl::string_view, absl::string_view> SplitField(
    absl::string_view line) {
  std::pair<absl::string_view, absl::string_view> kv =
      absl::StrSplit(line, absl::MaxSplits(':', 1));
  return {absl::StripAsciiWhitespace(kv.first),
          absl::StripAsciiWhitespace(kv.second)};
}

}  // namespace

absl::string_view GpuVendorName(GpuVendor vendor) {
  switch (vendor) {
    case GpuVendor::kNvidia:
      return "nvidia";
    case GpuVendor::kAmd:
      return "amd";
  }
  return "unknown";
}

absl::StatusOr<CpuInfo> ParseCpuInfo(absl::string_view text) {
  CpuInfo cpu;
  std::set<std::pair<std::string, std::string>>
      cores;  // (physical id, core id)
  std::string physical_id, core_id;
  bool flags_seen = false;
  auto finish_processor = [&] {
    if (!core_id.empty()) cores.emplace(physical_id, core_id);
    physical_id.clear();
    core_id.clear();
  };
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StripAsciiWhitespace(line).empty()) {
      finish_processor();
      continue;
    }
    auto [key, value] = SplitField(line);
    if (key == "processor") {
      ++cpu.logical_cores;
    } else if (key == "model name" && cpu.model.empty()) {
      cpu.model = std::string(value);
    } else if (key == "physical id") {
      physical_id = std::string(value);
    } else if (key == "core id") {
      core_id = std::string(value);
    } else if (key == "flags" && !flags_seen) {
      flags_seen = true;
      for (absl::string_view flag :
           absl::StrSplit(value, ' ', absl::SkipEmpty())) {
        if (flag == "fma") cpu.fma = true;
        if (flag == "avx2") cpu.avx2 = true;
        if (flag == "avx512f") cpu.avx512f = true;
        if (flag == "avx512_bf16") cpu.avx512_bf16 = true;
        if (flag == "amx_tile") cpu.amx_tile = true;
        if (flag == "amx_bf16") cpu.amx_bf16 = true;
      }
    }
  }
  finish_processor();
  if (cpu.logical_cores == 0) {
    return absl::InvalidArgumentError("cpuinfo lists no processor");
  }
  // Some virtual machines omit topology; then every logical CPU counts as a
  // core.
  cpu.physical_cores =
      cores.empty() ? cpu.logical_cores : static_cast<int>(cores.size());
  if (cpu.model.empty()) cpu.model = "unknown CPU";
  return cpu;
}

absl::StatusOr<MemoryInfo> ParseMemInfo(absl::string_view text) {
  uint64_t total_kb = 0, available_kb = 0, free_kb = 0, cached_kb = 0;
  bool has_total = false, has_available = false;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    auto [key, value] = SplitField(line);
    absl::string_view number = value.substr(0, value.find(' '));
    uint64_t kb = 0;
    if (!absl::SimpleAtoi(number, &kb)) continue;
    if (key == "MemTotal") {
      total_kb = kb;
      has_total = true;
    } else if (key == "MemAvailable") {
      available_kb = kb;
      has_available = true;
    } else if (key == "MemFree") {
      free_kb = kb;
    } else if (key == "Cached") {
      cached_kb = kb;
    }
  }
  if (!has_total)
    return absl::InvalidArgumentError("meminfo has no MemTotal line");
  MemoryInfo memory;
  memory.total_bytes = total_kb * 1024;
  memory.available_bytes =
      (has_available ? available_kb : free_kb + cached_kb) * 1024;
  return memory;
}

absl::StatusOr<HardwareProfile> ProbeHardware(const ProbeOptions& options) {
  HardwareProfile profile;
  ASSIGN_OR_RETURN(std::string cpuinfo,
                   ReadFileToString(options.proc_root + "/cpuinfo"));
  ASSIGN_OR_RETURN(profile.cpu, ParseCpuInfo(cpuinfo));
  ASSIGN_OR_RETURN(std::string meminfo,
                   ReadFileToString(options.proc_root + "/meminfo"));
  ASSIGN_OR_RETURN(profile.memory, ParseMemInfo(meminfo));

  // A container's memory limit is what this process can really use.
  absl::StatusOr<std::string> limit_text =
      ReadFileToString(options.cgroup_root + "/memory.max");
  uint64_t limit = 0;
  if (limit_text.ok() &&
      absl::SimpleAtoi(absl::StripAsciiWhitespace(*limit_text), &limit) &&
      limit < profile.memory.total_bytes) {
    profile.notes.push_back(absl::StrCat("RAM limited by cgroup memory.max to ",
                                         FormatBytes(limit)));
    profile.memory.total_bytes = limit;
    profile.memory.available_bytes =
        std::min(profile.memory.available_bytes, limit);
  }

  for (internal::GpuProbeResult result :
       {internal::ProbeNvidiaGpus(options.nvml_libraries),
        internal::ProbeAmdGpus(options.rocm_smi_libraries)}) {
    for (GpuInfo& gpu : result.gpus) profile.gpus.push_back(std::move(gpu));
    if (!result.note.empty()) profile.notes.push_back(std::move(result.note));
  }
  return profile;
}

}  // namespace openforce
