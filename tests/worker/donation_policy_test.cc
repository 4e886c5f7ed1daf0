// The donation policy as a state machine, with a fake clock and fake
// readings: every transition between working and paused, and why.
#include "worker/donation_policy.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce::worker {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

class DonationPolicyTest : public ::testing::Test {
 protected:
  MachineReadings Idle() {
    MachineReadings readings;
    readings.now = now_;
    readings.minute_of_day = 12 * 60;
    readings.other_cpu = 0.05;
    readings.available_memory_bytes = 16ull << 30;
    return readings;
  }
  void Advance(absl::Duration d) { now_ += d; }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

TEST_F(DonationPolicyTest, IdleMachineWorksAtOnceWithoutAnIdleRequirement) {
  DonationPolicy policy({});
  PolicyDecision decision = policy.Update(Idle());
  EXPECT_TRUE(decision.may_work);
  EXPECT_EQ(decision.reason, "machine idle");
}

TEST_F(DonationPolicyTest, BusyPausesAtOnceAndIdleResumesOnlyAfterTheIdleTime) {
  DonationPolicyOptions options;
  options.max_other_cpu = 0.25;
  options.idle_for = absl::Minutes(2);
  DonationPolicy policy(options);
  // Starting: idle, but not for long enough yet.
  PolicyDecision decision = policy.Update(Idle());
  EXPECT_FALSE(decision.may_work);
  EXPECT_THAT(decision.reason, HasSubstr("stay idle for 2m"));
  Advance(absl::Minutes(1));
  EXPECT_FALSE(policy.Update(Idle()).may_work);
  Advance(absl::Minutes(1));
  EXPECT_TRUE(policy.Update(Idle()).may_work);  // idle -> working
  // The owner comes back: working -> paused in the same reading.
  Advance(absl::Seconds(1));
  MachineReadings busy = Idle();
  busy.now = now_;
  busy.other_cpu = 0.63;
  decision = policy.Update(busy);
  EXPECT_FALSE(decision.may_work);
  EXPECT_EQ(decision.reason, "other programs use 63% of the CPU (limit 25%)");
  // Idle again: the idle time counts from now, not from before.
  Advance(absl::Seconds(30));
  EXPECT_FALSE(policy.Update(Idle()).may_work);
  Advance(absl::Minutes(1));
  EXPECT_FALSE(policy.Update(Idle()).may_work);
  // A blip of load restarts the wait.
  busy.now = now_;
  EXPECT_FALSE(policy.Update(busy).may_work);
  Advance(absl::Minutes(1) + absl::Seconds(59));
  EXPECT_FALSE(policy.Update(Idle()).may_work);
  Advance(absl::Minutes(2));
  EXPECT_TRUE(policy.Update(Idle()).may_work);
}

TEST_F(DonationPolicyTest, LoadAtTheLimitIsStillIdle) {
  DonationPolicyOptions options;
  options.max_other_cpu = 0.25;
  DonationPolicy policy(options);
  MachineReadings readings = Idle();
  readings.other_cpu = 0.25;
  EXPECT_TRUE(policy.Update(readings).may_work);
}

TEST_F(DonationPolicyTest, BatteryPausesUnlessAllowed) {
  DonationPolicy strict({});
  MachineReadings battery = Idle();
  battery.on_battery = true;
  PolicyDecision decision = strict.Update(battery);
  EXPECT_FALSE(decision.may_work);
  EXPECT_EQ(decision.reason, "running on battery");
  EXPECT_TRUE(strict.Update(Idle()).may_work);  // plugged in again
  DonationPolicyOptions options;
  options.work_on_battery = true;
  DonationPolicy lenient(options);
  EXPECT_TRUE(lenient.Update(battery).may_work);
}

TEST_F(DonationPolicyTest, HoursWindowsIncludingOnePastMidnight) {
  DonationPolicyOptions options;
  options.windows = {*ParseTimeWindow("22:00-07:00"),
                     *ParseTimeWindow("12:00-13:00")};
  DonationPolicy policy(options);
  MachineReadings readings = Idle();
  for (const auto& [minute, allowed] :
       std::vector<std::pair<int, bool>>{{23 * 60, true},
                                         {0, true},
                                         {6 * 60 + 59, true},
                                         {7 * 60, false},
                                         {12 * 60 + 30, true},
                                         {13 * 60, false},
                                         {21 * 60 + 59, false},
                                         {22 * 60, true}}) {
    readings.minute_of_day = minute;
    const PolicyDecision decision = policy.Update(readings);
    EXPECT_EQ(decision.may_work, allowed) << minute;
    if (!allowed) {
      EXPECT_EQ(decision.reason,
                "outside the donation hours (22:00-07:00, 12:00-13:00)");
    }
  }
}

TEST_F(DonationPolicyTest, MemoryBelowTheHeadroomPauses) {
  DonationPolicyOptions options;
  options.headroom_bytes = 4ull << 30;
  DonationPolicy policy(options);
  MachineReadings tight = Idle();
  tight.available_memory_bytes = 3ull << 30;
  PolicyDecision decision = policy.Update(tight);
  EXPECT_FALSE(decision.may_work);
  EXPECT_THAT(decision.reason, HasSubstr("below the headroom of 4.0 GiB"));
  EXPECT_TRUE(policy.Update(Idle()).may_work);
}

TEST_F(DonationPolicyTest, OthersUsingTheGpuPause) {
  DonationPolicy policy({});
  MachineReadings gaming = Idle();
  gaming.other_gpu = 0.8;
  PolicyDecision decision = policy.Update(gaming);
  EXPECT_FALSE(decision.may_work);
  EXPECT_EQ(decision.reason, "other programs use 80% of the GPU");
  gaming.other_gpu = 0.02;
  EXPECT_TRUE(policy.Update(gaming).may_work);
  gaming.other_gpu.reset();  // no NVML: nothing to go by
  EXPECT_TRUE(policy.Update(gaming).may_work);
}

TEST_F(DonationPolicyTest, BatteryIsReportedBeforeLoad) {
  DonationPolicy policy({});
  MachineReadings both = Idle();
  both.on_battery = true;
  both.other_cpu = 0.9;
  EXPECT_EQ(policy.Update(both).reason, "running on battery");
}

TEST(TimeWindowTest, ParsesAndRefusesWithTheText) {
  auto window = ParseTimeWindow("08:30-17:00");
  ASSERT_OK(window);
  EXPECT_EQ(window->start_minute, 8 * 60 + 30);
  EXPECT_EQ(window->end_minute, 17 * 60);
  for (const char* bad : {"8-17", "08:30", "25:00-01:00", "08:60-09:00",
                          "10:00-10:00", "ab:cd-ef:gh", ""}) {
    EXPECT_THAT(ParseTimeWindow(bad),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("HH:MM-HH:MM")))
        << bad;
  }
}

}  // namespace
}  // namespace openforce::worker
