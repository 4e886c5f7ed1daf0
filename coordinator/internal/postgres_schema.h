// The PostgreSQL StateStore's schema: the SQLite tables (sqlite_state_store.cc)
// in PostgreSQL types, the same indexes, a trigger that keeps the per-round
// unit counts, and the one-row table whose synchronous update makes earlier
// asynchronous commits durable. Idempotent: run by every replica at start,
// under an advisory lock.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_POSTGRES_SCHEMA_H_
#define OPENFORCE_COORDINATOR_INTERNAL_POSTGRES_SCHEMA_H_

namespace openforce::coordinator::internal {

inline constexpr char kPostgresSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS workers (
  worker_id TEXT PRIMARY KEY,
  public_key BYTEA NOT NULL,
  display_name TEXT NOT NULL,
  profile BYTEA NOT NULL,
  registered_ms BIGINT NOT NULL,
  last_heartbeat_ms BIGINT NOT NULL,
  availability BIGINT NOT NULL,
  current_unit_id TEXT NOT NULL,
  units_accepted BIGINT NOT NULL DEFAULT 0,
  units_rejected BIGINT NOT NULL DEFAULT 0,
  credit_flop DOUBLE PRECISION NOT NULL DEFAULT 0,
  validated_streak BIGINT NOT NULL DEFAULT 0,
  units_invalid BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
  seq BIGSERIAL PRIMARY KEY,
  job_id TEXT NOT NULL UNIQUE,
  spec BYTEA NOT NULL,
  state BIGINT NOT NULL,
  current_round BIGINT NOT NULL,
  latest_version BIGINT NOT NULL,
  created_ms BIGINT NOT NULL,
  message TEXT NOT NULL,
  initial_adapter BYTEA NOT NULL,
  adapter_config BYTEA NOT NULL,
  estimated_memory_bytes BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS shards (
  job_id TEXT NOT NULL,
  shard_index BIGINT NOT NULL,
  blob BYTEA NOT NULL,
  records BIGINT NOT NULL,
  PRIMARY KEY (job_id, shard_index));
CREATE TABLE IF NOT EXISTS rounds (
  job_id TEXT NOT NULL,
  round BIGINT NOT NULL,
  parent_version BIGINT NOT NULL,
  opened_ms BIGINT NOT NULL,
  deadline_ms BIGINT NOT NULL,
  adapter_version BIGINT NOT NULL,
  candidate_sha256 TEXT NOT NULL DEFAULT '',
  candidate_attempt BIGINT NOT NULL DEFAULT 0,
  candidate_rule TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, round));
CREATE TABLE IF NOT EXISTS units (
  unit_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  round BIGINT NOT NULL,
  shard_index BIGINT NOT NULL,
  replica BIGINT NOT NULL,
  state BIGINT NOT NULL,
  worker_id TEXT NOT NULL,
  lease_deadline_ms BIGINT NOT NULL,
  kind BIGINT NOT NULL DEFAULT 0,
  attempt BIGINT NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS units_by_worker ON units (worker_id, state);
CREATE INDEX IF NOT EXISTS units_leasable
  ON units (job_id, round, state, kind DESC, replica, shard_index);
CREATE INDEX IF NOT EXISTS units_by_shard
  ON units (job_id, round, shard_index, worker_id);
CREATE INDEX IF NOT EXISTS units_by_lease_deadline
  ON units (state, lease_deadline_ms);
CREATE TABLE IF NOT EXISTS results (
  id BIGSERIAL PRIMARY KEY,
  unit_id TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  round BIGINT NOT NULL,
  shard_index BIGINT NOT NULL,
  accepted BIGINT NOT NULL,
  reject_reason BIGINT NOT NULL,
  message TEXT NOT NULL,
  header BYTEA NOT NULL,
  created_ms BIGINT NOT NULL,
  l2_norm DOUBLE PRECISION NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS results_by_round ON results (job_id, round);
CREATE INDEX IF NOT EXISTS results_by_shard
  ON results (job_id, round, shard_index, worker_id);
CREATE UNIQUE INDEX IF NOT EXISTS one_accepted_result_per_unit
  ON results (unit_id) WHERE accepted = 1;
CREATE TABLE IF NOT EXISTS adapters (
  job_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  model_sha256 TEXT NOT NULL,
  config_sha256 TEXT NOT NULL,
  adapter BYTEA NOT NULL,
  PRIMARY KEY (job_id, version));
CREATE INDEX IF NOT EXISTS adapters_by_model ON adapters (model_sha256);
CREATE INDEX IF NOT EXISTS adapters_by_config ON adapters (config_sha256);
CREATE TABLE IF NOT EXISTS validation_reports (
  unit_id TEXT PRIMARY KEY,
  worker_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  round BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  slice BIGINT NOT NULL,
  accepted BIGINT NOT NULL,
  reject_reason BIGINT NOT NULL,
  message TEXT NOT NULL,
  report BYTEA NOT NULL,
  created_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS validation_reports_by_slice
  ON validation_reports (job_id, round, slice, worker_id);
CREATE TABLE IF NOT EXISTS round_unit_counts (
  job_id TEXT NOT NULL,
  round BIGINT NOT NULL,
  kind BIGINT NOT NULL,
  state BIGINT NOT NULL,
  count BIGINT NOT NULL,
  PRIMARY KEY (job_id, round, kind, state));
CREATE OR REPLACE FUNCTION openforce_count_units() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- Counter rows are locked in the order of their state, whichever way
  -- a unit moves, so that a lease and a release never deadlock.
  IF TG_OP = 'UPDATE' THEN
    IF OLD.state = NEW.state THEN
      RETURN NEW;
    END IF;
    IF OLD.state < NEW.state THEN
      UPDATE round_unit_counts SET count = count - 1
        WHERE job_id = OLD.job_id AND round = OLD.round AND kind = OLD.kind
          AND state = OLD.state;
    END IF;
  END IF;
  INSERT INTO round_unit_counts (job_id, round, kind, state, count)
    VALUES (NEW.job_id, NEW.round, NEW.kind, NEW.state, 1)
    ON CONFLICT (job_id, round, kind, state)
    DO UPDATE SET count = round_unit_counts.count + 1;
  IF TG_OP = 'UPDATE' AND OLD.state > NEW.state THEN
    UPDATE round_unit_counts SET count = count - 1
      WHERE job_id = OLD.job_id AND round = OLD.round AND kind = OLD.kind
        AND state = OLD.state;
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER units_counted
  AFTER UPDATE OF state ON units
  FOR EACH ROW EXECUTE FUNCTION openforce_count_units();
-- Inserts come 500 rows per statement (a 50,000-shard job): counted once per
-- statement, one upsert per counter row instead of one per unit.
CREATE OR REPLACE FUNCTION openforce_count_inserted_units() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO round_unit_counts (job_id, round, kind, state, count)
    SELECT job_id, round, kind, state, count(*) FROM inserted_units
      GROUP BY job_id, round, kind, state
      ORDER BY job_id, round, kind, state
    ON CONFLICT (job_id, round, kind, state)
    DO UPDATE SET count = round_unit_counts.count + EXCLUDED.count;
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER units_counted_on_insert
  AFTER INSERT ON units REFERENCING NEW TABLE AS inserted_units
  FOR EACH STATEMENT EXECUTE FUNCTION openforce_count_inserted_units();
CREATE TABLE IF NOT EXISTS durability_marker (
  id BIGINT PRIMARY KEY,
  syncs BIGINT NOT NULL);
INSERT INTO durability_marker (id, syncs) VALUES (1, 0)
  ON CONFLICT (id) DO NOTHING;
)sql";

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_POSTGRES_SCHEMA_H_
