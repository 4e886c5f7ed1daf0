// Shared pieces of the worker's loop: the retry backoff, and the state the
// lease thread shares with the heartbeat, monitor and status threads (every
// field behind one mutex). Internal to the worker target.
#ifndef OPENFORCE_WORKER_INTERNAL_LOOP_STATE_H_
#define OPENFORCE_WORKER_INTERNAL_LOOP_STATE_H_

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/openforce.pb.h"
#include "worker/unit_trainer.h"
#include "worker/worker_status.h"

namespace openforce::worker {

// Exponential backoff with jitter, 0.5 s doubling to 30 s, for a coordinator
// that is away: many workers must not reconnect in lockstep.
class Backoff {
 public:
  absl::Duration Next() {
    const double jitter =
        std::uniform_real_distribution<double>(0.8, 1.2)(rng_);
    const absl::Duration wait = current_ * jitter;
    current_ = std::min(current_ * 2, absl::Seconds(30));
    return wait;
  }
  void Reset() { current_ = absl::Milliseconds(500); }

 private:
  absl::Duration current_ = absl::Milliseconds(500);
  std::mt19937_64 rng_{std::random_device{}()};
};

// What the loop is doing, shared with the heartbeat, monitor and status
// threads: the unit, revocations, and the status snapshot.
class WorkerState {
 public:
  void SetUnit(const v1::WorkUnit* unit) {
    absl::MutexLock lock(&mu_);
    status_.unit_id = unit != nullptr ? unit->unit_id() : "";
    status_.job_id = unit != nullptr ? unit->job_id() : "";
    status_.step = 0;
    status_.total_steps =
        unit != nullptr ? unit->training().steps_per_shard() : 0;
    status_.tokens_per_second = 0;
    status_.eta_seconds = 0;
    revoked_ = false;
  }
  void SetProgress(const UnitProgress& progress, double eta_seconds) {
    absl::MutexLock lock(&mu_);
    status_.step = progress.step;
    status_.total_steps = progress.total;
    status_.tokens_per_second = progress.tokens_per_second;
    status_.eta_seconds = eta_seconds;
  }
  void SetState(const std::string& state, const std::string& reason = "") {
    absl::MutexLock lock(&mu_);
    status_.state = state;
    status_.reason = reason;
  }
  // Counts a delivered unit; the count so far.
  int64_t Delivered() {
    absl::MutexLock lock(&mu_);
    return ++status_.units_delivered;
  }
  int64_t delivered() const {
    absl::MutexLock lock(&mu_);
    return status_.units_delivered;
  }
  void SetIdentity(const std::string& worker_id, const std::string& tier,
                   const std::string& coordinator) {
    absl::MutexLock lock(&mu_);
    status_.worker_id = worker_id;
    status_.tier = tier;
    status_.coordinator = coordinator;
  }
  void Revoke(const std::string& unit_id) {
    absl::MutexLock lock(&mu_);
    if (unit_id == status_.unit_id) revoked_ = true;
  }
  bool revoked() const {
    absl::MutexLock lock(&mu_);
    return revoked_;
  }
  WorkerStatusSnapshot Snapshot() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  v1::HeartbeatRequest Heartbeat(const std::string& worker_id) const {
    absl::MutexLock lock(&mu_);
    v1::HeartbeatRequest request;
    request.set_worker_id(worker_id);
    request.set_availability(status_.state == "paused"     ? v1::PAUSED
                             : status_.state == "stopping" ? v1::DRAINING
                             : status_.unit_id.empty()     ? v1::AVAILABLE
                                                           : v1::BUSY_TRAINING);
    request.set_current_unit_id(status_.unit_id);
    request.set_unit_progress(status_.total_steps > 0
                                  ? static_cast<double>(status_.step) /
                                        static_cast<double>(status_.total_steps)
                                  : 0.0);
    return request;
  }

 private:
  mutable absl::Mutex mu_;
  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
  WorkerStatusSnapshot status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_INTERNAL_LOOP_STATE_H_
