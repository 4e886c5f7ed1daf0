// The hardware probe on recorded /proc texts and on fake NVML / ROCm SMI
// libraries.
#include "common/hardware_profile.h"

#include <gtest/gtest.h>

#include <string>

#include "common/byte_size.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

// Two sockets, two cores each, hyper-threaded: 8 logical CPUs, 4 physical
// cores.
std::string TwoSocketCpuInfo() {
  std::string text;
  int processor = 0;
  for (int socket = 0; socket < 2; ++socket) {
    for (int thread = 0; thread < 2; ++thread) {
      for (int core = 0; core < 2; ++core) {
        text += "processor\t: " + std::to_string(processor++) + "\n";
        text += "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n";
        text += "physical id\t: " + std::to_string(socket) + "\n";
        text += "core id\t\t: " + std::to_string(core) + "\n";
        text +=
            "flags\t\t: fpu sse2 avx fma avx2 avx512f avx512bw avx512_bf16 "
            "amx_tile "
            "amx_bf16\n\n";
      }
    }
  }
  return text;
}

constexpr char kMemInfo[] =
    "MemTotal:       16303428 kB\n"
    "MemFree:         1234567 kB\n"
    "MemAvailable:    9876543 kB\n"
    "Cached:          2000000 kB\n";

TEST(ParseCpuInfoTest, CountsPhysicalCoresAcrossSocketsAndReadsFlags) {
  absl::StatusOr<CpuInfo> cpu = ParseCpuInfo(TwoSocketCpuInfo());
  ASSERT_OK(cpu);
  EXPECT_EQ(cpu->model, "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz");
  EXPECT_EQ(cpu->logical_cores, 8);
  EXPECT_EQ(cpu->physical_cores, 4);
  EXPECT_TRUE(cpu->fma);
  EXPECT_TRUE(cpu->avx2);
  EXPECT_TRUE(cpu->avx512f);
  EXPECT_TRUE(cpu->avx512_bf16);
  EXPECT_TRUE(cpu->amx_tile);
  EXPECT_TRUE(cpu->amx_bf16);
}

TEST(ParseCpuInfoTest, VirtualMachineWithoutTopologyCountsLogicalCpus) {
  const std::string text =
      "processor\t: 0\nmodel name\t: Common KVM processor\nflags\t\t: sse2 "
      "avx2\n\n"
      "processor\t: 1\nmodel name\t: Common KVM processor\nflags\t\t: sse2 "
      "avx2\n";
  absl::StatusOr<CpuInfo> cpu = ParseCpuInfo(text);
  ASSERT_OK(cpu);
  EXPECT_EQ(cpu->logical_cores, 2);
  EXPECT_EQ(cpu->physical_cores, 2);
  EXPECT_TRUE(cpu->avx2);
  EXPECT_FALSE(cpu->avx512f);
  EXPECT_FALSE(cpu->amx_tile);
}

TEST(ParseCpuInfoTest, RejectsTextWithoutProcessors) {
  EXPECT_THAT(
      ParseCpuInfo("garbage\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no processor")));
}

TEST(ParseMemInfoTest, ReadsTotalAndAvailable) {
  absl::StatusOr<MemoryInfo> memory = ParseMemInfo(kMemInfo);
  ASSERT_OK(memory);
  EXPECT_EQ(memory->total_bytes, 16303428ull * 1024);
  EXPECT_EQ(memory->available_bytes, 9876543ull * 1024);
}

TEST(ParseMemInfoTest, OldKernelsFallBackToFreePlusCached) {
  absl::StatusOr<MemoryInfo> memory =
      ParseMemInfo("MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 50 kB\n");
  ASSERT_OK(memory);
  EXPECT_EQ(memory->available_bytes, 150u * 1024);
  EXPECT_THAT(
      ParseMemInfo("MemFree: 100 kB\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MemTotal")));
}

class ProbeHardwareTest : public ::testing::Test {
 protected:
  ProbeOptions FakeMachine() {
    dir_.WriteFile("proc/cpuinfo", TwoSocketCpuInfo());
    dir_.WriteFile("proc/meminfo", kMemInfo);
    ProbeOptions options;
    options.proc_root = dir_.Join("proc");
    options.cgroup_root = dir_.Join("cgroup");
    options.nvml_libraries = {dir_.Join("no-such-libnvidia-ml.so.1")};
    options.rocm_smi_libraries = {dir_.Join("no-such-librocm_smi64.so")};
    return options;
  }
  testing::TempDir dir_;
};

TEST_F(ProbeHardwareTest, NoGpuLibrariesIsNotAnError) {
  absl::StatusOr<HardwareProfile> profile = ProbeHardware(FakeMachine());
  ASSERT_OK(profile);
  EXPECT_TRUE(profile->gpus.empty());
  EXPECT_EQ(profile->cpu.physical_cores, 4);
  EXPECT_EQ(profile->memory.total_bytes, 16303428ull * 1024);
  ASSERT_EQ(profile->notes.size(), 2u);
  EXPECT_THAT(profile->notes[0], HasSubstr("no NVIDIA GPU"));
  EXPECT_THAT(profile->notes[1], HasSubstr("no AMD GPU"));
}

TEST_F(ProbeHardwareTest, ListsGpusFromNvmlAndRocmSmi) {
  ProbeOptions options = FakeMachine();
  options.nvml_libraries = {dir_.Join("missing.so"), FAKE_NVML_PATH};
  options.rocm_smi_libraries = {FAKE_ROCM_SMI_PATH};
  absl::StatusOr<HardwareProfile> profile = ProbeHardware(options);
  ASSERT_OK(profile);
  ASSERT_EQ(profile->gpus.size(), 3u);
  EXPECT_EQ(profile->gpus[0].vendor, GpuVendor::kNvidia);
  EXPECT_EQ(profile->gpus[0].name, "NVIDIA GeForce RTX 3060");
  EXPECT_EQ(profile->gpus[0].vram_total_bytes, 12 * kGiB);
  EXPECT_EQ(profile->gpus[0].vram_free_bytes, 11 * kGiB);
  EXPECT_EQ(profile->gpus[1].index, 1);
  EXPECT_EQ(profile->gpus[1].vram_total_bytes, 80 * kGiB);
  // Utilisation from NVML; ROCm SMI's is not read, so it is unknown.
  EXPECT_EQ(profile->gpus[0].utilization_percent, 37);
  EXPECT_EQ(profile->gpus[1].utilization_percent, 38);
  EXPECT_EQ(profile->gpus[2].utilization_percent, -1);
  EXPECT_EQ(profile->gpus[2].vendor, GpuVendor::kAmd);
  EXPECT_EQ(profile->gpus[2].name, "AMD Radeon RX 6800");
  EXPECT_EQ(profile->gpus[2].vram_total_bytes, 16 * kGiB);
  EXPECT_EQ(profile->gpus[2].vram_free_bytes, 15 * kGiB);
  EXPECT_TRUE(profile->notes.empty());
}

TEST_F(ProbeHardwareTest, CgroupMemoryLimitCapsRam) {
  ProbeOptions options = FakeMachine();
  dir_.WriteFile("cgroup/memory.max", "8589934592\n");
  absl::StatusOr<HardwareProfile> profile = ProbeHardware(options);
  ASSERT_OK(profile);
  EXPECT_EQ(profile->memory.total_bytes, 8 * kGiB);
  EXPECT_EQ(profile->memory.available_bytes, 8 * kGiB);
  EXPECT_THAT(profile->notes, ::testing::Contains(HasSubstr("cgroup")));

  dir_.WriteFile("cgroup/memory.max", "max\n");
  profile = ProbeHardware(options);
  ASSERT_OK(profile);
  EXPECT_EQ(profile->memory.total_bytes, 16303428ull * 1024);
}

TEST_F(ProbeHardwareTest, UnreadableProcIsAnErrorNamingTheFile) {
  ProbeOptions options = FakeMachine();
  options.proc_root = dir_.Join("nowhere");
  EXPECT_THAT(ProbeHardware(options), StatusIs(absl::StatusCode::kNotFound,
                                               HasSubstr("nowhere/cpuinfo")));
}

TEST(ProbeHardwareRealMachineTest, ReadsThisMachine) {
  absl::StatusOr<HardwareProfile> profile = ProbeHardware();
  ASSERT_OK(profile);
  EXPECT_GE(profile->cpu.logical_cores, 1);
  EXPECT_GE(profile->cpu.logical_cores, profile->cpu.physical_cores);
  EXPECT_GT(profile->memory.total_bytes, 0u);
  EXPECT_LE(profile->memory.available_bytes, profile->memory.total_bytes);
}

}  // namespace
}  // namespace openforce
