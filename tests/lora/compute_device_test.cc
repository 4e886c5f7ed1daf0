// libtorch backends, thread control and the GEMM peak measurement on this
// machine.
#include "lora/compute_device.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce::lora {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ComputeDeviceTest, SetsTheThreadCountLibtorchUses) {
  ASSERT_OK(SetCpuThreads(1));
  EXPECT_EQ(ProbeComputeBackends().cpu_threads, 1);
  ASSERT_OK(SetCpuThreads(2));
  EXPECT_EQ(ProbeComputeBackends().cpu_threads, 2);
  ASSERT_OK(SetCpuThreads(0));  // all physical cores
  EXPECT_GE(ProbeComputeBackends().cpu_threads, 1);
  EXPECT_THAT(SetCpuThreads(-1), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("got -1")));
}

TEST(ComputeDeviceTest, ReportsTheLibtorchBuild) {
  ComputeBackends backends = ProbeComputeBackends();
  EXPECT_FALSE(backends.torch_version.empty());
  EXPECT_GE(backends.gpu_devices, 0);
}

TEST(ComputeDeviceTest, MeasuresAPositiveGemmRateForEachCpuDtype) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    GemmOptions options;
    options.dtype = dtype;
    options.size = 256;
    options.min_seconds = 0.05;
    absl::StatusOr<GemmMeasurement> measured = MeasureGemmPeak(options);
    ASSERT_OK(measured);
    EXPECT_EQ(measured->size, 256);
    EXPECT_GE(measured->iterations, 1);
    EXPECT_GT(measured->gflops, 0.0);
    EXPECT_NEAR(measured->gflops,
                2.0 * 256 * 256 * 256 / measured->seconds_per_matmul / 1e9,
                1e-6);
  }
}

TEST(ComputeDeviceTest, BadGemmRequestsBecomeStatusesNotExceptions) {
  GemmOptions options;
  options.size = 0;
  EXPECT_THAT(MeasureGemmPeak(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size")));
  options.size = 64;
  options.device = "tpu:7";
  EXPECT_THAT(MeasureGemmPeak(options),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("tpu:7")));
}

}  // namespace
}  // namespace openforce::lora
