// Liveness held in memory: the newest heartbeat wins, each is handed out
// once for a batched write, a failed batch is handed out again, and a
// worker record shows what was heard when it is newer than what is stored.
#include "coordinator/worker_liveness.h"

#include <gtest/gtest.h>

namespace openforce::coordinator {
namespace {

TEST(WorkerLivenessTest, KeepsTheNewestAndHandsEachOutOnce) {
  WorkerLiveness liveness;
  liveness.Record({"w-a", 100, v1::AVAILABLE, ""});
  liveness.Record({"w-a", 300, v1::PAUSED, "unit-1"});
  liveness.Record({"w-a", 200, v1::AVAILABLE, ""});  // late, older
  liveness.Record({"w-b", 150, v1::AVAILABLE, ""});
  auto a = liveness.Get("w-a");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->heard_ms, 300);
  EXPECT_EQ(a->availability, v1::PAUSED);
  EXPECT_EQ(a->current_unit_id, "unit-1");
  EXPECT_FALSE(liveness.Get("w-c").has_value());

  std::vector<HeartbeatRecord> batch = liveness.TakeUnpersisted();
  EXPECT_EQ(batch.size(), 2u);
  EXPECT_TRUE(liveness.TakeUnpersisted().empty());
  liveness.Restore(batch);
  EXPECT_EQ(liveness.TakeUnpersisted().size(), 2u);
  EXPECT_EQ(liveness.size(), 2u);
}

TEST(WorkerLivenessTest, OverlaysOnlyWhatIsNewerThanTheStoredRecord) {
  WorkerLiveness liveness;
  liveness.Record({"w-a", 500, v1::PAUSED, "unit-2"});
  WorkerRecord stale;
  stale.worker_id = "w-a";
  stale.last_heartbeat_ms = 400;
  liveness.Overlay(&stale);
  EXPECT_EQ(stale.last_heartbeat_ms, 500);
  EXPECT_EQ(stale.availability, v1::PAUSED);
  EXPECT_EQ(stale.current_unit_id, "unit-2");
  WorkerRecord newer;
  newer.worker_id = "w-a";
  newer.last_heartbeat_ms = 900;  // another replica heard it later
  liveness.Overlay(&newer);
  EXPECT_EQ(newer.last_heartbeat_ms, 900);
  EXPECT_EQ(newer.availability, v1::AVAILABLE);
}

}  // namespace
}  // namespace openforce::coordinator
