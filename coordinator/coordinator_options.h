// How a coordinator runs: its data directory, enrollment, intervals and
// limits, and the clock, randomness and metrics it is given (tests substitute
// their own).
#ifndef OPENFORCE_COORDINATOR_COORDINATOR_OPTIONS_H_
#define OPENFORCE_COORDINATOR_COORDINATOR_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "coordinator/metrics.h"

namespace openforce::coordinator {

struct CoordinatorOptions {
  std::string data_dir;
  // Empty: enrollment is open, anyone with a key may register.
  std::string enrollment_token;
  uint32_t heartbeat_interval_ms = 10'000;
  // A worker whose last heartbeat is older than this gets no new lease.
  uint32_t worker_timeout_ms = 60'000;
  // What LeaseWorkUnit tells a worker to wait when nothing fits.
  uint32_t lease_retry_ms = 5'000;
  uint64_t max_upload_bytes = 256ull << 20;  // one delta
  uint64_t max_blob_bytes = 64ull << 30;     // one admin-uploaded file
  // Concurrent leases one worker may hold in one job, unless the job sets
  // its own.
  uint32_t max_leases_per_worker = 1;
  // A lease whose holder sent no heartbeat for this long goes back to
  // pending (0: three heartbeat intervals, at least 5 s).
  uint32_t lease_heartbeat_grace_ms = 0;
  // Partial delta uploads one worker may have open at once.
  uint32_t max_open_uploads_per_worker = 4;
  // Partial uploads (deltas and admin blobs) that received nothing for this
  // long are removed, at startup too.
  int64_t upload_expiry_ms = 3'600'000;
  // Wall clock in Unix milliseconds; tests substitute their own.
  std::function<int64_t()> now_ms;
  // Uniform in [0, 1): adaptive replication's random re-checks of trusted
  // workers. Unset: a seeded-from-the-OS generator; tests substitute theirs.
  std::function<double()> random_fraction;
  // Where events are counted (metrics.h). Unset: counted, not exported.
  std::shared_ptr<CoordinatorMetrics> metrics;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_COORDINATOR_OPTIONS_H_
