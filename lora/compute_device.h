// What libtorch offers on this machine (CPU threads, CUDA or ROCm/HIP devices,
// which libtorch appears as the cuda device) and a GEMM measurement that gives
// the machine's own matmul peak for a dtype. The probe reports both; benchmarks
// divide by the peak. The header is torch-free so that gRPC and coordinator
// code can include it cheaply.
#ifndef OPENFORCE_LORA_COMPUTE_DEVICE_H_
#define OPENFORCE_LORA_COMPUTE_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/memory_estimate.h"

namespace openforce::lora {

struct ComputeBackends {
  std::string torch_version;
  int cpu_threads = 0;  // libtorch's intra-op threads now
  int gpu_devices = 0;  // devices behind at::kCUDA
  bool gpu_is_rocm =
      false;  // libtorch was built for ROCm: the "cuda" devices are HIP
  bool onednn = false;    // oneDNN (MKL-DNN) available for bf16 matmuls on CPU
  std::string blas_core;  // OpenBLAS kernel family in use; "" when not OpenBLAS
};

ComputeBackends ProbeComputeBackends();

// Sets libtorch's intra-op thread count; 0 picks the number of physical cores.
// libtorch starts with one thread on some machines, so every binary sets it.
[[nodiscard]] absl::Status SetCpuThreads(int threads);

struct GemmOptions {
  std::string device = "cpu";  // "cpu" or "cuda" / "cuda:N"
  DType dtype = DType::kFloat32;
  int64_t size = 2048;  // square n x n times n x n
  double min_seconds = 0.5;
};

struct GemmMeasurement {
  std::string device;
  DType dtype = DType::kFloat32;
  int64_t size = 0;
  int iterations = 0;
  double seconds_per_matmul = 0;
  double gflops = 0;  // 2 n^3 / seconds / 1e9
};

// Times torch::mm on random matrices after a warm-up, for at least
// `min_seconds`.
[[nodiscard]] absl::StatusOr<GemmMeasurement> MeasureGemmPeak(
    const GemmOptions& options);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_COMPUTE_DEVICE_H_
