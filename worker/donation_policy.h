// The owner's donation policy as a pure state machine: given what the machine
// looks like now (other programs' CPU use, power source, free memory, GPU use
// by others, local time), may the worker train, and if not, why. No I/O and
// no clock of its own, so every transition is testable with fake readings;
// worker/system_monitor.h takes the real readings.
#ifndef OPENFORCE_WORKER_DONATION_POLICY_H_
#define OPENFORCE_WORKER_DONATION_POLICY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace openforce::worker {

// A daily window in local time, minutes after midnight; end < start wraps
// past midnight ("22:00-07:00").
struct TimeWindow {
  int start_minute = 0;
  int end_minute = 0;
  bool Contains(int minute_of_day) const;
};

// "HH:MM-HH:MM"; InvalidArgument naming the text otherwise.
[[nodiscard]] absl::StatusOr<TimeWindow> ParseTimeWindow(
    absl::string_view text);

struct DonationPolicyOptions {
  // The machine counts as in use while other programs use more than this
  // share of all CPU time (0..1).
  double max_other_cpu = 0.25;
  // It must have been idle this long before work starts or resumes; zero
  // starts at once.
  absl::Duration idle_for = absl::ZeroDuration();
  // Work only inside one of these windows; empty means any time.
  std::vector<TimeWindow> windows;
  bool work_on_battery = false;
  // Free memory that must stay free for other programs.
  uint64_t headroom_bytes = 0;
  // A GPU worker pauses while others use the GPU above this share (0..1).
  double max_other_gpu = 0.10;
};

struct MachineReadings {
  absl::Time now;
  int minute_of_day = 0;  // local time
  double other_cpu = 0;   // share of all CPU time used by other processes
  bool on_battery = false;
  uint64_t available_memory_bytes = 0;  // what the OS could give us now
  // Other processes' GPU utilisation, when NVML reports it.
  std::optional<double> other_gpu;
};

struct PolicyDecision {
  bool may_work = false;
  // Why not, or what was waited for: "other programs use 63% of the CPU".
  std::string reason;
};

class DonationPolicy {
 public:
  explicit DonationPolicy(DonationPolicyOptions options)
      : options_(std::move(options)) {}

  // Feeds a reading; readings must come in time order.
  PolicyDecision Update(const MachineReadings& readings);

  const DonationPolicyOptions& options() const { return options_; }

 private:
  // Why the machine is busy now, or empty when it is idle.
  std::string BusyReason(const MachineReadings& readings) const;

  const DonationPolicyOptions options_;
  // Since when every reading has been idle; unset while busy.
  std::optional<absl::Time> idle_since_;
};

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_DONATION_POLICY_H_
