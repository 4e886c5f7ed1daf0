// OpenBLAS kernel selection; see blas_core.h.
#include "lora/blas_core.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/ascii.h"

namespace openforce::lora {

std::string RecommendedOpenBlasCore(const CpuInfo& cpu) {
  if (cpu.avx512_bf16) return "Cooperlake";
  if (cpu.avx512f) return "SkylakeX";
  if (cpu.avx2) return "Haswell";
  return "";
}

bool ShouldOverrideOpenBlasCore(absl::string_view current,
                                absl::string_view recommended) {
  if (recommended.empty()) return false;
  const std::string name = absl::AsciiStrToLower(current);
  // What OpenBLAS falls back to for a CPU model it does not recognise.
  for (absl::string_view generic :
       {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom",
        "katmai", "coppermine", "northwood", "banias", "unknown"}) {
    if (name == generic) return true;
  }
  return false;
}

std::string CurrentOpenBlasCore() {
  using CoreNameFn = char*();
  auto* core_name = reinterpret_cast<CoreNameFn*>(
      dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "";
  const char* name = core_name();
  return name != nullptr ? name : "";
}

void RelaunchWithTunedOpenBlas(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const std::string current = CurrentOpenBlasCore();
  if (current.empty()) return;
  absl::StatusOr<HardwareProfile> profile = ProbeHardware();
  if (!profile.ok()) return;
  const std::string recommended = RecommendedOpenBlasCore(profile->cpu);
  if (!ShouldOverrideOpenBlasCore(current, recommended)) return;
  if (::setenv("OPENBLAS_CORETYPE", recommended.c_str(), /*overwrite=*/0) != 0)
    return;
  ::execv("/proc/self/exe", argv);
  // exec failed: carry on with the slow kernels rather than not at all.
}

}  // namespace openforce::lora
