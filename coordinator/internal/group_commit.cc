// Group commit; see group_commit.h.
#include "coordinator/internal/group_commit.h"

namespace openforce::coordinator::internal {

uint64_t GroupCommit::NoteCommit() {
  absl::MutexLock lock(&mu_);
  return ++committed_;
}

uint64_t GroupCommit::LatestTicket() {
  absl::MutexLock lock(&mu_);
  return committed_;
}

uint64_t GroupCommit::syncs() {
  absl::MutexLock lock(&mu_);
  return syncs_;
}

absl::Status GroupCommit::WaitDurable(uint64_t ticket) {
  absl::MutexLock lock(&mu_);
  while (durable_ < ticket) {
    if (syncing_) {
      // Someone else's sync is running; it may not cover this ticket (it
      // began before this commit), so look again when it ends.
      mu_.Await(absl::Condition(
          +[](bool* syncing) { return !*syncing; }, &syncing_));
      continue;
    }
    syncing_ = true;
    const uint64_t covered = committed_;
    mu_.Unlock();
    absl::Status synced = sync_();
    mu_.Lock();
    syncing_ = false;
    ++syncs_;
    if (!synced.ok()) return synced;
    if (covered > durable_) durable_ = covered;
  }
  return absl::OkStatus();
}

}  // namespace openforce::coordinator::internal
