// Group commit: writers that committed before a sync began share it, a
// writer whose commit came after a sync began waits for the next one, and
// a failed sync is reported to its waiters and retried by the next.
#include "coordinator/internal/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/notification.h"
#include "tests/testing/status_matchers.h"

namespace openforce::coordinator::internal {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(GroupCommitTest, WritersThatCommittedTogetherShareOneSync) {
  std::atomic<int> syncs{0};
  GroupCommit group([&] {
    ++syncs;
    return absl::OkStatus();
  });
  constexpr int kWriters = 16;
  absl::Barrier* committed = new absl::Barrier(kWriters);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&] {
      const uint64_t ticket = group.NoteCommit();
      if (committed->Block()) delete committed;
      EXPECT_OK(group.WaitDurable(ticket));
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(syncs.load(), 1);
  EXPECT_EQ(group.syncs(), 1u);
}

TEST(GroupCommitTest, ACommitAfterASyncBeganWaitsForTheNextSync) {
  absl::Notification first_sync_started, release_first_sync;
  std::atomic<int> syncs{0};
  GroupCommit group([&]() -> absl::Status {
    if (++syncs == 1) {
      first_sync_started.Notify();
      release_first_sync.WaitForNotification();
    }
    return absl::OkStatus();
  });
  std::thread early([&] { EXPECT_OK(group.WaitDurable(group.NoteCommit())); });
  first_sync_started.WaitForNotification();
  const uint64_t late_ticket = group.NoteCommit();
  std::atomic<int> syncs_when_late_returned{0};
  std::thread late([&] {
    EXPECT_OK(group.WaitDurable(late_ticket));
    syncs_when_late_returned = syncs.load();
  });
  release_first_sync.Notify();
  early.join();
  late.join();
  // The first sync began before the late commit, so it could not cover it.
  EXPECT_EQ(syncs_when_late_returned.load(), 2);
  // Nothing new committed: waiting again costs no sync.
  EXPECT_OK(group.WaitDurable(group.LatestTicket()));
  EXPECT_EQ(syncs.load(), 2);
}

TEST(GroupCommitTest, AFailedSyncIsReportedAndTheNextWaiterRetries) {
  std::atomic<int> calls{0};
  GroupCommit group([&]() -> absl::Status {
    if (++calls == 1) return absl::InternalError("fdatasync: disk on fire");
    return absl::OkStatus();
  });
  const uint64_t ticket = group.NoteCommit();
  EXPECT_THAT(group.WaitDurable(ticket),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("disk on fire")));
  EXPECT_OK(group.WaitDurable(ticket));
  EXPECT_EQ(calls.load(), 2);
}

}  // namespace
}  // namespace openforce::coordinator::internal
