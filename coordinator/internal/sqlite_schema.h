// The SQLite StateStore's schema: tables, then (after columns added to older
// databases) indexes and the triggers that keep per-round unit counters.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_SQLITE_SCHEMA_H_
#define OPENFORCE_COORDINATOR_INTERNAL_SQLITE_SCHEMA_H_

namespace openforce::coordinator::internal {

inline constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS workers (
  worker_id TEXT PRIMARY KEY,
  public_key BLOB NOT NULL,
  display_name TEXT NOT NULL,
  profile BLOB NOT NULL,
  registered_ms INTEGER NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL,
  availability INTEGER NOT NULL,
  current_unit_id TEXT NOT NULL,
  units_accepted INTEGER NOT NULL DEFAULT 0,
  units_rejected INTEGER NOT NULL DEFAULT 0,
  credit_flop REAL NOT NULL DEFAULT 0,
  validated_streak INTEGER NOT NULL DEFAULT 0,
  units_invalid INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL UNIQUE,
  spec BLOB NOT NULL,
  state INTEGER NOT NULL,
  current_round INTEGER NOT NULL,
  latest_version INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  message TEXT NOT NULL,
  initial_adapter BLOB NOT NULL,
  adapter_config BLOB NOT NULL,
  estimated_memory_bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
  job_id TEXT NOT NULL,
  shard_index INTEGER NOT NULL,
  blob BLOB NOT NULL,
  records INTEGER NOT NULL,
  PRIMARY KEY (job_id, shard_index));
CREATE TABLE IF NOT EXISTS rounds (
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  parent_version INTEGER NOT NULL,
  opened_ms INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL,
  adapter_version INTEGER NOT NULL,
  candidate_sha256 TEXT NOT NULL DEFAULT '',
  candidate_attempt INTEGER NOT NULL DEFAULT 0,
  candidate_rule TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, round));
CREATE TABLE IF NOT EXISTS units (
  unit_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  shard_index INTEGER NOT NULL,
  replica INTEGER NOT NULL,
  state INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  lease_deadline_ms INTEGER NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0,
  attempt INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS units_by_round ON units (job_id, round, state);
CREATE INDEX IF NOT EXISTS units_by_worker ON units (worker_id, state);
CREATE TABLE IF NOT EXISTS results (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  unit_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  shard_index INTEGER NOT NULL,
  accepted INTEGER NOT NULL,
  reject_reason INTEGER NOT NULL,
  message TEXT NOT NULL,
  header BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  l2_norm REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS results_by_round ON results (job_id, round);
CREATE UNIQUE INDEX IF NOT EXISTS one_accepted_result_per_unit
  ON results (unit_id) WHERE accepted = 1;
CREATE TABLE IF NOT EXISTS adapters (
  job_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  model_sha256 TEXT NOT NULL,
  config_sha256 TEXT NOT NULL,
  adapter BLOB NOT NULL,
  PRIMARY KEY (job_id, version));
CREATE INDEX IF NOT EXISTS adapters_by_model ON adapters (model_sha256);
CREATE INDEX IF NOT EXISTS adapters_by_config ON adapters (config_sha256);
CREATE TABLE IF NOT EXISTS validation_reports (
  unit_id TEXT PRIMARY KEY,
  worker_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  slice INTEGER NOT NULL,
  accepted INTEGER NOT NULL,
  reject_reason INTEGER NOT NULL,
  message TEXT NOT NULL,
  report BLOB NOT NULL,
  created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS validation_reports_by_round
  ON validation_reports (job_id, round);
)sql";

// Indexes that keep leasing and its checks O(log n) in the units of a
// round, and per-round unit counts by kind and state that triggers keep
// current, so that watching a round never rescans its units.
inline constexpr char kIndexesAndCounters[] = R"sql(
CREATE INDEX IF NOT EXISTS units_leasable
  ON units (job_id, round, state, kind DESC, replica, shard_index);
CREATE INDEX IF NOT EXISTS units_by_shard
  ON units (job_id, round, shard_index, worker_id);
CREATE INDEX IF NOT EXISTS results_by_shard
  ON results (job_id, round, shard_index, worker_id);
CREATE INDEX IF NOT EXISTS validation_reports_by_slice
  ON validation_reports (job_id, round, slice, worker_id);
CREATE INDEX IF NOT EXISTS units_by_lease_deadline
  ON units (state, lease_deadline_ms);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS round_unit_counts (
  job_id TEXT NOT NULL,
  round INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  state INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (job_id, round, kind, state)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS units_counted_on_insert AFTER INSERT ON units
BEGIN
  INSERT INTO round_unit_counts (job_id, round, kind, state, count)
    VALUES (new.job_id, new.round, new.kind, new.state, 1)
    ON CONFLICT (job_id, round, kind, state) DO UPDATE SET count=count+1;
END;
CREATE TRIGGER IF NOT EXISTS units_counted_on_update
  AFTER UPDATE OF state ON units WHEN old.state<>new.state
BEGIN
  UPDATE round_unit_counts SET count=count-1 WHERE job_id=old.job_id
    AND round=old.round AND kind=old.kind AND state=old.state;
  INSERT INTO round_unit_counts (job_id, round, kind, state, count)
    VALUES (new.job_id, new.round, new.kind, new.state, 1)
    ON CONFLICT (job_id, round, kind, state) DO UPDATE SET count=count+1;
END;
)sql";

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_SQLITE_SCHEMA_H_
