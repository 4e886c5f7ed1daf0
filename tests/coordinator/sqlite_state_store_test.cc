// The SQLite state store opens a database written before validation units
// existed (units without kind and attempt, rounds without a candidate) and
// keeps everything in it: old units read as training units, and the new
// columns take their defaults.
#include "coordinator/sqlite_state_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {
namespace {

// The units and rounds tables as the previous release created them, with
// one round and one leased unit in them.
constexpr char kPreviousSchema[] = R"sql(
CREATE TABLE rounds (
  job_id TEXT NOT NULL, round INTEGER NOT NULL,
  parent_version INTEGER NOT NULL, opened_ms INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL, adapter_version INTEGER NOT NULL,
  PRIMARY KEY (job_id, round));
CREATE TABLE units (
  unit_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, round INTEGER NOT NULL,
  shard_index INTEGER NOT NULL, replica INTEGER NOT NULL,
  state INTEGER NOT NULL, worker_id TEXT NOT NULL,
  lease_deadline_ms INTEGER NOT NULL);
INSERT INTO rounds VALUES ('job-1', 1, 0, 1000, 9000, 0);
INSERT INTO units VALUES ('job-1-r1-s0-p0', 'job-1', 1, 0, 0, 2, 'w-1', 5000);
)sql";

TEST(SqliteStateStoreTest, OpensADatabaseFromBeforeValidationUnits) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/state.db";
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, kPreviousSchema, nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(raw);
  sqlite3_close(raw);

  auto store = OpenSqliteStateStore(path);
  ASSERT_OK(store);
  auto unit = (*store)->GetUnit("job-1-r1-s0-p0");
  ASSERT_OK(unit);
  ASSERT_TRUE(unit->has_value());
  EXPECT_EQ((*unit)->kind, v1::WORK_TRAIN);
  EXPECT_EQ((*unit)->state, v1::UNIT_LEASED);
  EXPECT_EQ((*unit)->worker_id, "w-1");
  EXPECT_EQ((*unit)->lease_deadline_ms, 5000);
  auto rounds = (*store)->ListRounds("job-1");
  ASSERT_OK(rounds);
  ASSERT_EQ(rounds->size(), 1u);
  EXPECT_EQ((*rounds)[0].deadline_ms, 9000);
  EXPECT_EQ((*rounds)[0].candidate_attempt, 0u);
  EXPECT_TRUE((*rounds)[0].candidate_sha256.empty());
  // The new columns work on the old tables.
  RoundRecord candidate = (*rounds)[0];
  candidate.candidate_sha256 = std::string(64, 'c');
  candidate.candidate_attempt = 1;
  candidate.candidate_rule = "svd+clip:2";
  UnitRecord validation;
  validation.unit_id = "job-1-r1-v1-s0-p0";
  validation.job_id = "job-1";
  validation.round = 1;
  validation.kind = v1::WORK_VALIDATE;
  validation.attempt = 1;
  ASSERT_OK((*store)->BeginValidation(candidate, {validation}));
  auto units = (*store)->ListUnits("job-1", 1);
  ASSERT_OK(units);
  ASSERT_EQ(units->size(), 2u);
  // Training units are left as they were; validation units follow them.
  EXPECT_EQ((*units)[0].unit_id, "job-1-r1-s0-p0");
  EXPECT_EQ((*units)[0].state, v1::UNIT_LEASED);
  EXPECT_EQ((*units)[1].kind, v1::WORK_VALIDATE);
  EXPECT_EQ((*units)[1].attempt, 1u);
  rounds = (*store)->ListRounds("job-1");
  ASSERT_OK(rounds);
  EXPECT_EQ((*rounds)[0].candidate_rule, "svd+clip:2");
}

}  // namespace
}  // namespace openforce::coordinator
