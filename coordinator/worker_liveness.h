// Worker liveness as soft state: heartbeats are the most frequent call, and
// what they report (last heard, availability, current unit) is held here in
// memory and written to the StateStore in batches, so a heartbeat costs no
// transaction and no fsync. A restart loses at most the liveness heard since
// the last batch, never a lease or a result: a worker whose lease expires
// for want of a persisted heartbeat loses only that lease.
#ifndef OPENFORCE_COORDINATOR_WORKER_LIVENESS_H_
#define OPENFORCE_COORDINATOR_WORKER_LIVENESS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/state_store.h"

namespace openforce::coordinator {

class WorkerLiveness {
 public:
  // Keeps `heartbeat` unless a later one of the same worker is held.
  void Record(const HeartbeatRecord& heartbeat);
  // The newest heartbeat this process heard from `worker_id`.
  std::optional<HeartbeatRecord> Get(const std::string& worker_id) const;
  // `worker` with the liveness held here when it is newer than the stored.
  void Overlay(WorkerRecord* worker) const;
  // Heartbeats heard since the last call, for one batched write.
  std::vector<HeartbeatRecord> TakeUnpersisted();
  // Gives back a batch whose write failed; newer heartbeats win.
  void Restore(const std::vector<HeartbeatRecord>& batch);
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, HeartbeatRecord> latest_
      ABSL_GUARDED_BY(mu_);
  // Worker ids whose latest heartbeat is not written yet.
  absl::flat_hash_map<std::string, bool> unpersisted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_WORKER_LIVENESS_H_
