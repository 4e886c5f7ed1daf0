// Call signatures bind every field, and each counter is accepted once.
#include "common/call_auth.h"

#include <gtest/gtest.h>

namespace openforce {
namespace {

TEST(ReplayWindowTest, AcceptsEachCounterOnceEvenOutOfOrder) {
  ReplayWindow window;
  EXPECT_FALSE(window.Accept(0));  // counters start at 1
  EXPECT_TRUE(window.Accept(1));
  EXPECT_FALSE(window.Accept(1));  // a replay
  EXPECT_TRUE(window.Accept(5));
  EXPECT_TRUE(window.Accept(3));  // late, but within the window
  EXPECT_TRUE(window.Accept(2));
  EXPECT_FALSE(window.Accept(3));
  EXPECT_FALSE(window.Accept(5));
  EXPECT_TRUE(window.Accept(4));
  EXPECT_EQ(window.highest(), 5u);
}

TEST(ReplayWindowTest, RefusesCountersOlderThanTheWindow) {
  ReplayWindow window;
  EXPECT_TRUE(window.Accept(10));
  EXPECT_TRUE(window.Accept(10 + ReplayWindow::kWindow));
  EXPECT_FALSE(window.Accept(10));  // too old to tell: refused
  EXPECT_FALSE(window.Accept(10 + ReplayWindow::kWindow));
  EXPECT_TRUE(window.Accept(11));  // the oldest still in the window
  // A jump far ahead forgets everything before; old ones stay refused.
  EXPECT_TRUE(window.Accept(1'000'000));
  EXPECT_FALSE(window.Accept(20));
  EXPECT_TRUE(window.Accept(1'000'000 - 1));
}

TEST(CallAuthMessageTest, EveryFieldChangesTheSignedBytes) {
  const std::string digest(32, 'd');
  const std::string base = CallAuthMessage("Heartbeat", "w-1", "s", 7, digest);
  EXPECT_NE(base, CallAuthMessage("LeaseWorkUnit", "w-1", "s", 7, digest));
  EXPECT_NE(base, CallAuthMessage("Heartbeat", "w-2", "s", 7, digest));
  EXPECT_NE(base, CallAuthMessage("Heartbeat", "w-1", "t", 7, digest));
  EXPECT_NE(base, CallAuthMessage("Heartbeat", "w-1", "s", 8, digest));
  EXPECT_NE(base,
            CallAuthMessage("Heartbeat", "w-1", "s", 7, std::string(32, 'e')));
  // Field boundaries are unambiguous: moving a byte between fields differs.
  EXPECT_NE(CallAuthMessage("ab", "c", "s", 1, digest),
            CallAuthMessage("a", "bc", "s", 1, digest));
}

}  // namespace
}  // namespace openforce
