// Group commit: many writers share one fsync. A writer commits its
// transaction (visible at once, not yet on disk), takes a ticket, and waits
// until a sync that began after its commit has finished; one waiter runs the
// sync for everyone who committed before it started, and those who commit
// while it runs share the next one. Nothing is acknowledged before its data
// is on disk, and the number of fsyncs no longer grows with the number of
// writers.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_GROUP_COMMIT_H_
#define OPENFORCE_COORDINATOR_INTERNAL_GROUP_COMMIT_H_

#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace openforce::coordinator::internal {

class GroupCommit {
 public:
  // `sync` makes everything written before it was called durable (an
  // fdatasync of the log); it runs on a waiter's thread, one at a time.
  explicit GroupCommit(std::function<absl::Status()> sync)
      : sync_(std::move(sync)) {}

  // Called right after a transaction committed; its ticket.
  uint64_t NoteCommit();
  // The ticket of the newest commit so far: what a reader that saw the
  // current state must wait for before acting on it.
  uint64_t LatestTicket();
  // Returns once every commit up to `ticket` is durable; the sync's error
  // when one failed (and the commits stay not durable).
  [[nodiscard]] absl::Status WaitDurable(uint64_t ticket);
  // Syncs run so far (for tests and metrics).
  uint64_t syncs();

 private:
  const std::function<absl::Status()> sync_;
  absl::Mutex mu_;
  uint64_t committed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t durable_ ABSL_GUARDED_BY(mu_) = 0;
  bool syncing_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_GROUP_COMMIT_H_
