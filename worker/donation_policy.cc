// The donation policy state machine; see donation_policy.h.
#include "worker/donation_policy.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/byte_size.h"

namespace openforce::worker {
namespace {

std::optional<int> ParseClock(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  int hours = 0, minutes = 0;
  if (parts.size() != 2 || parts[0].empty() || parts[1].size() != 2 ||
      !absl::SimpleAtoi(parts[0], &hours) ||
      !absl::SimpleAtoi(parts[1], &minutes) || hours < 0 || hours > 24 ||
      minutes < 0 || minutes > 59 || (hours == 24 && minutes != 0)) {
    return std::nullopt;
  }
  return hours * 60 + minutes;
}

std::string FormatMinute(int minute) {
  return absl::StrFormat("%02d:%02d", minute / 60, minute % 60);
}

}  // namespace

bool TimeWindow::Contains(int minute_of_day) const {
  if (start_minute <= end_minute)
    return minute_of_day >= start_minute && minute_of_day < end_minute;
  return minute_of_day >= start_minute || minute_of_day < end_minute;
}

absl::StatusOr<TimeWindow> ParseTimeWindow(absl::string_view text) {
  std::vector<absl::string_view> ends = absl::StrSplit(text, '-');
  std::optional<int> start, end;
  if (ends.size() == 2) {
    start = ParseClock(ends[0]);
    end = ParseClock(ends[1]);
  }
  if (!start.has_value() || !end.has_value() || *start == *end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time window '", text,
        "' is not HH:MM-HH:MM with two different times (e.g. 22:00-07:00)"));
  }
  return TimeWindow{*start, *end};
}

std::string DonationPolicy::BusyReason(const MachineReadings& readings) const {
  if (readings.on_battery && !options_.work_on_battery)
    return "running on battery";
  if (!options_.windows.empty()) {
    bool inside = false;
    for (const TimeWindow& window : options_.windows)
      inside |= window.Contains(readings.minute_of_day);
    if (!inside) {
      std::string windows;
      for (const TimeWindow& window : options_.windows) {
        absl::StrAppend(&windows, windows.empty() ? "" : ", ",
                        FormatMinute(window.start_minute), "-",
                        FormatMinute(window.end_minute));
      }
      return absl::StrCat("outside the donation hours (", windows, ")");
    }
  }
  if (readings.other_cpu > options_.max_other_cpu) {
    return absl::StrFormat(
        "other programs use %.0f%% of the CPU (limit %.0f%%)",
        100 * readings.other_cpu, 100 * options_.max_other_cpu);
  }
  if (readings.available_memory_bytes < options_.headroom_bytes) {
    return absl::StrCat(
        "free memory ", FormatBytes(readings.available_memory_bytes),
        " is below the headroom of ", FormatBytes(options_.headroom_bytes));
  }
  if (readings.other_gpu.has_value() &&
      *readings.other_gpu > options_.max_other_gpu) {
    return absl::StrFormat("other programs use %.0f%% of the GPU",
                           100 * *readings.other_gpu);
  }
  return "";
}

PolicyDecision DonationPolicy::Update(const MachineReadings& readings) {
  PolicyDecision decision;
  const std::string busy = BusyReason(readings);
  if (!busy.empty()) {
    idle_since_.reset();
    decision.reason = busy;
    return decision;
  }
  if (!idle_since_.has_value()) idle_since_ = readings.now;
  const absl::Duration idle = readings.now - *idle_since_;
  if (idle < options_.idle_for) {
    decision.reason = absl::StrCat(
        "waiting for the machine to stay idle for ",
        absl::FormatDuration(options_.idle_for), " (idle for ",
        absl::FormatDuration(absl::Trunc(idle, absl::Seconds(1))), ")");
    return decision;
  }
  decision.may_work = true;
  decision.reason = "machine idle";
  return decision;
}

}  // namespace openforce::worker
