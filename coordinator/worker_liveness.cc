// Worker liveness held in memory; see worker_liveness.h.
#include "coordinator/worker_liveness.h"

namespace openforce::coordinator {

void WorkerLiveness::Record(const HeartbeatRecord& heartbeat) {
  absl::MutexLock lock(&mu_);
  auto [entry, inserted] = latest_.try_emplace(heartbeat.worker_id, heartbeat);
  if (!inserted) {
    if (entry->second.heard_ms > heartbeat.heard_ms) return;
    entry->second = heartbeat;
  }
  unpersisted_[heartbeat.worker_id] = true;
}

std::optional<HeartbeatRecord> WorkerLiveness::Get(
    const std::string& worker_id) const {
  absl::MutexLock lock(&mu_);
  auto found = latest_.find(worker_id);
  if (found == latest_.end()) return std::nullopt;
  return found->second;
}

void WorkerLiveness::Overlay(WorkerRecord* worker) const {
  std::optional<HeartbeatRecord> heard = Get(worker->worker_id);
  if (!heard.has_value() || heard->heard_ms < worker->last_heartbeat_ms) return;
  worker->last_heartbeat_ms = heard->heard_ms;
  worker->availability = heard->availability;
  worker->current_unit_id = heard->current_unit_id;
}

std::vector<HeartbeatRecord> WorkerLiveness::TakeUnpersisted() {
  absl::MutexLock lock(&mu_);
  std::vector<HeartbeatRecord> batch;
  batch.reserve(unpersisted_.size());
  for (const auto& [worker_id, unused] : unpersisted_) {
    batch.push_back(latest_.at(worker_id));
  }
  unpersisted_.clear();
  return batch;
}

void WorkerLiveness::Restore(const std::vector<HeartbeatRecord>& batch) {
  absl::MutexLock lock(&mu_);
  for (const HeartbeatRecord& heartbeat : batch) {
    unpersisted_[heartbeat.worker_id] = true;
  }
}

size_t WorkerLiveness::size() const {
  absl::MutexLock lock(&mu_);
  return latest_.size();
}

}  // namespace openforce::coordinator
