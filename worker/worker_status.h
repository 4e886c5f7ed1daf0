// What a running worker is doing, in one snapshot: written by `run` to a
// status file (atomically, about once a second) and drawn as its live
// terminal line, read back by `openforce-worker status`.
#ifndef OPENFORCE_WORKER_WORKER_STATUS_H_
#define OPENFORCE_WORKER_WORKER_STATUS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace openforce::worker {

struct WorkerStatusSnapshot {
  int64_t pid = 0;
  int64_t updated_at_ms = 0;
  std::string worker_id;
  std::string coordinator;
  std::string tier;  // "cpu", "gpu-mid", ...
  // registering, waiting, paused, downloading, training, uploading,
  // stopping, stopped.
  std::string state;
  std::string reason;  // why paused or waiting, or what it is doing
  std::string job_id;
  std::string unit_id;
  int64_t step = 0;
  int64_t total_steps = 0;
  double tokens_per_second = 0;
  double eta_seconds = 0;  // remaining steps at the recent step rate
  int64_t units_delivered = 0;
};

std::string StatusToJson(const WorkerStatusSnapshot& status);
[[nodiscard]] absl::StatusOr<WorkerStatusSnapshot> StatusFromJson(
    const std::string& json, const std::string& source);

// One line for a terminal: "cpu | training job-1-r1-s0-p0 step 40/100 |
// 3100 tok/s | ETA 12s".
std::string FormatStatusLine(const WorkerStatusSnapshot& status);

// The default status file under a worker's data directory.
std::string StatusFilePath(const std::string& data_dir);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_WORKER_STATUS_H_
