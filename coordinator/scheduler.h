// Scheduling: who the workers are and what they hold. Registration and
// heartbeats (soft liveness), leasing units under each job's tier, memory and
// per-worker caps, releases, lease expiry (deadline passed, holder silent),
// and which blobs a worker's leases let it fetch.
#ifndef OPENFORCE_COORDINATOR_SCHEDULER_H_
#define OPENFORCE_COORDINATOR_SCHEDULER_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/internal/coordinator_core.h"
#include "coordinator/state_store.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

class Scheduler {
 public:
  explicit Scheduler(CoordinatorCore* core) : core_(*core) {}
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Checks the enrollment token, the key and its proof of possession, and
  // the profile; opens a session.
  [[nodiscard]] absl::StatusOr<v1::RegisterResponse> Register(
      const v1::RegisterRequest& request);
  [[nodiscard]] absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      const v1::HeartbeatRequest& request);
  // A unit of the oldest running job the worker fits, or a retry delay.
  [[nodiscard]] absl::StatusOr<v1::LeaseWorkUnitResponse> LeaseWorkUnit(
      const v1::LeaseWorkUnitRequest& request);
  [[nodiscard]] absl::Status ReleaseWorkUnit(
      const v1::ReleaseWorkUnitRequest& request);
  // Blobs a caller may fetch: for an authenticated worker, what a lease it
  // holds needs (base model files, parent adapter, shard); published adapter
  // files for anyone.
  [[nodiscard]] absl::Status CheckFetchAllowed(
      const v1::FetchBlobRequest& request);
  // Writes the liveness heard since the last batch, then returns to pending
  // the leases past their deadline or held by a worker that stopped
  // heartbeating (Tick).
  [[nodiscard]] absl::Status ExpireLeases();

 private:
  absl::Status PersistLiveness();
  // Leases a worker may hold at once in `job`.
  uint32_t LeaseCap(const JobRecord& job) const;
  absl::StatusOr<v1::WorkUnit> DescribeUnit(const JobRecord& job,
                                            const UnitRecord& unit);
  // The blobs a unit's worker needs: base model files, parent adapter, shard.
  absl::StatusOr<std::vector<std::string>> BlobsNeededBy(
      const UnitRecord& unit);
  // The lock that serialises one worker's leasing (its lease cap).
  absl::Mutex& LeaseLockFor(const std::string& worker_id);

  CoordinatorCore& core_;
  // Striped by worker id: a worker's concurrent lease calls cannot both
  // pass its cap, while different workers lease in parallel.
  static constexpr size_t kLeaseLockStripes = 64;
  absl::Mutex lease_locks_[kLeaseLockStripes];
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_SCHEDULER_H_
