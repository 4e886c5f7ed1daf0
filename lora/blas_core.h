// Keeps libtorch's OpenBLAS on fast kernels. OpenBLAS chooses its kernels from
// CPUID when it loads; under hypervisors that report a generic CPU model it
// falls back to Prescott (SSE3) kernels, which on this project's reference VM
// run an fp32 2048 GEMM at 63 instead of 260 GFLOP/s. The choice is fixed
// before main() runs, so the only remedy is OPENBLAS_CORETYPE in the
// environment at process start: RelaunchWithTunedOpenBlas() re-executes the
// binary once with it set when that helps.
#ifndef OPENFORCE_LORA_BLAS_CORE_H_
#define OPENFORCE_LORA_BLAS_CORE_H_

#include <string>

#include "absl/strings/string_view.h"
#include "common/hardware_profile.h"

namespace openforce::lora {

// The OpenBLAS core name that fits `cpu`'s vector extensions ("Cooperlake" with
// AVX-512-BF16, "SkylakeX" with AVX-512F, "Haswell" with AVX2), or "" for none
// of them.
std::string RecommendedOpenBlasCore(const CpuInfo& cpu);

// True when `current` (openblas_get_corename()) is one of OpenBLAS's generic
// fallbacks and `recommended` is a better, known core.
bool ShouldOverrideOpenBlasCore(absl::string_view current,
                                absl::string_view recommended);

// The core OpenBLAS runs in this process, or "" when OpenBLAS is not loaded.
std::string CurrentOpenBlasCore();

// When OPENBLAS_CORETYPE is unset and OpenBLAS runs a generic fallback on a CPU
// with AVX2 or better, sets OPENBLAS_CORETYPE and execs /proc/self/exe with
// `argv`. Returns (doing nothing) in every other case, including a failed exec.
void RelaunchWithTunedOpenBlas(char** argv);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_BLAS_CORE_H_
