// Machine readings from fake /proc and /sys trees.
#include "worker/system_monitor.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::worker {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(SystemMonitorTest, ParsesTheAggregateCpuLine) {
  auto times = ParseProcStat(
      "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n");
  ASSERT_OK(times);
  EXPECT_EQ(times->total, 100u + 5 + 50 + 800 + 20 + 3 + 2 + 10);
  EXPECT_EQ(times->busy, times->total - 800 - 20);
  EXPECT_THAT(ParseProcStat("intr 1 2 3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cpu")));
}

TEST(SystemMonitorTest, ParsesProcessTimeEvenWithSpacesInTheName) {
  auto ticks = ParseProcessCpuTime(
      "4242 (openforce worker) S 1 4242 4242 0 -1 4194304 100 0 0 0 "
      "250 75 0 0 20 0 3 0 1000 1000000 500");
  ASSERT_OK(ticks);
  EXPECT_EQ(*ticks, 325u);
  EXPECT_FALSE(ParseProcessCpuTime("garbage").ok());
}

TEST(SystemMonitorTest, BatteryOnlyWhenDischargingWithoutMains) {
  testing::TempDir dir;
  const std::string root = dir.path();
  ASSERT_OK(MakeDirectories(root + "/BAT0"));
  ASSERT_OK(WriteFileAtomically(root + "/BAT0/type", "Battery\n"));
  ASSERT_OK(WriteFileAtomically(root + "/BAT0/status", "Discharging\n"));
  EXPECT_TRUE(ReadOnBattery(root));
  ASSERT_OK(MakeDirectories(root + "/AC"));
  ASSERT_OK(WriteFileAtomically(root + "/AC/type", "Mains\n"));
  ASSERT_OK(WriteFileAtomically(root + "/AC/online", "1\n"));
  EXPECT_FALSE(ReadOnBattery(root));
  ASSERT_OK(WriteFileAtomically(root + "/AC/online", "0\n"));
  EXPECT_TRUE(ReadOnBattery(root));
  ASSERT_OK(WriteFileAtomically(root + "/BAT0/status", "Charging\n"));
  EXPECT_FALSE(ReadOnBattery(root));
  EXPECT_FALSE(ReadOnBattery(root + "/none"));  // desktops have no battery
}

TEST(SystemMonitorTest, OtherCpuIsTotalBusyMinusOurOwn) {
  testing::TempDir dir;
  const std::string proc = dir.path();
  ASSERT_OK(MakeDirectories(proc + "/self"));
  ASSERT_OK(WriteFileAtomically(proc + "/meminfo",
                                "MemTotal: 16000000 kB\nMemAvailable: "
                                "8000000 kB\n"));
  auto write = [&](uint64_t busy, uint64_t idle, uint64_t own) {
    ASSERT_OK(WriteFileAtomically(
        proc + "/stat", "cpu  " + std::to_string(busy) + " 0 0 " +
                            std::to_string(idle) + " 0 0 0 0 0 0\n"));
    ASSERT_OK(WriteFileAtomically(
        proc + "/self/stat", "1 (w) S 1 1 1 0 -1 0 0 0 0 0 " +
                                 std::to_string(own) + " 0 0 0 20 0 1 0"));
  };
  SystemMonitorOptions options;
  options.proc_root = proc;
  options.power_supply_root = dir.path() + "/none";
  SystemMonitor monitor(options);
  write(1000, 1000, 100);
  auto first = monitor.Sample(false);
  ASSERT_OK(first);
  EXPECT_EQ(first->other_cpu, 0);
  EXPECT_EQ(first->available_memory_bytes, 8000000ull * 1024);
  // 200 ticks pass: 150 busy, of which 50 are ours -> others 100 / 200.
  write(1150, 1050, 150);
  auto second = monitor.Sample(false);
  ASSERT_OK(second);
  EXPECT_DOUBLE_EQ(second->other_cpu, 0.5);
  // All the busy time is ours: others use nothing.
  write(1250, 1050, 250);
  EXPECT_DOUBLE_EQ(monitor.Sample(false)->other_cpu, 0.0);
}

}  // namespace
}  // namespace openforce::worker
