// The call executor runs what it accepted, refuses beyond its queue instead
// of growing, and finishes queued work before it is destroyed.
#include "coordinator/call_executor.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/synchronization/notification.h"

namespace openforce::coordinator {
namespace {

TEST(CallExecutorTest, RefusesBeyondItsQueueAndRunsEverythingItAccepted) {
  std::atomic<int> ran{0};
  absl::Notification started, release;
  {
    CallExecutor executor(/*threads=*/1, /*max_queued=*/2);
    ASSERT_TRUE(executor.Submit([&] {
      started.Notify();
      release.WaitForNotification();
      ++ran;
    }));
    started.WaitForNotification();
    EXPECT_TRUE(executor.Submit([&] { ++ran; }));
    EXPECT_TRUE(executor.Submit([&] { ++ran; }));
    EXPECT_EQ(executor.queued(), 2u);
    EXPECT_FALSE(executor.Submit([&] { ran += 100; }));
    release.Notify();
  }
  EXPECT_EQ(ran.load(), 3);
}

TEST(CallExecutorTest, SpreadsWorkOverItsThreads) {
  std::atomic<int> inside{0}, most{0}, ran{0};
  {
    CallExecutor executor(/*threads=*/4, /*max_queued=*/64);
    absl::Notification go;
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(executor.Submit([&] {
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        go.WaitForNotificationWithTimeout(absl::Seconds(5));
        --inside;
        ++ran;
      }));
    }
    // All four block together only if four threads run them.
    while (most.load() < 4) absl::SleepFor(absl::Milliseconds(1));
    go.Notify();
  }
  EXPECT_EQ(ran.load(), 4);
  EXPECT_EQ(most.load(), 4);
}

}  // namespace
}  // namespace openforce::coordinator
