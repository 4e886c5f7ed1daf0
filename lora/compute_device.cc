// libtorch backends and GEMM peak; see compute_device.h. libtorch exceptions
// stop here and become Status values with context.
#include "lora/compute_device.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "common/hardware_profile.h"
#include "lora/blas_core.h"

namespace openforce::lora {
namespace {

at::ScalarType ToScalarType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return at::kFloat;
    case DType::kFloat16:
      return at::kHalf;
    case DType::kBFloat16:
      return at::kBFloat16;
  }
  return at::kFloat;
}

void Synchronize(const at::Device& device) {
  if (device.is_cuda())
    at::detail::getCUDAHooks().deviceSynchronize(
        device.index() < 0 ? 0 : device.index());
}

}  // namespace

ComputeBackends ProbeComputeBackends() {
  ComputeBackends backends;
  backends.torch_version = TORCH_VERSION;
  backends.cpu_threads = at::get_num_threads();
  const at::CUDAHooksInterface& hooks = at::detail::getCUDAHooks();
  backends.gpu_devices = hooks.hasCUDA() ? hooks.getNumGPUs() : 0;
  backends.gpu_is_rocm = hooks.hasROCM();
  backends.onednn = at::hasMKLDNN();
  backends.blas_core = CurrentOpenBlasCore();
  return backends;
}

absl::Status SetCpuThreads(int threads) {
  if (threads < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "thread count must be 0 (all physical cores) or positive, got ",
        threads));
  }
  if (threads == 0) {
    absl::StatusOr<HardwareProfile> profile = ProbeHardware();
    threads = profile.ok() ? profile->cpu.physical_cores : 1;
  }
  try {
    at::set_num_threads(threads);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("set libtorch threads to ", threads, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::StatusOr<GemmMeasurement> MeasureGemmPeak(const GemmOptions& options) {
  if (options.size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GEMM size must be positive, got ", options.size));
  }
  GemmMeasurement result;
  result.device = options.device;
  result.dtype = options.dtype;
  result.size = options.size;
  try {
    const at::Device device(options.device);
    auto tensor_options =
        at::TensorOptions().dtype(ToScalarType(options.dtype)).device(device);
    at::Tensor a = at::randn({options.size, options.size}, tensor_options);
    at::Tensor b = at::randn({options.size, options.size}, tensor_options);
    at::Tensor c =
        at::mm(a, b);  // warm-up: kernel selection, oneDNN primitive cache
    Synchronize(device);
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    double elapsed = 0;
    do {
      at::mm_out(c, a, b);
      Synchronize(device);
      ++result.iterations;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < options.min_seconds);
    result.seconds_per_matmul = elapsed / result.iterations;
    const double n = static_cast<double>(options.size);
    result.gflops = 2.0 * n * n * n / result.seconds_per_matmul / 1e9;
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("GEMM ", DTypeName(options.dtype),
                                            " ", options.size, " on ",
                                            options.device, ": ", e.what()));
  }
  return result;
}

}  // namespace openforce::lora
