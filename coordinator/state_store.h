// The coordinator's durable state: workers, jobs, shards, rounds, work units,
// results and published adapter versions. Each method is one transaction:
// when it returns OK its effect is visible to every later call, and once a
// Sync() that began after it returned, it is on disk; a crash before that
// leaves the state as it was before the transaction. The coordinator
// answers no call before Sync(), so many acknowledgements share one fsync
// (group commit). The interface is what the coordinator needs and nothing
// about SQL, so that a PostgreSQL backend can stand in for the embedded
// SQLite one (sqlite_state_store.h) when one machine is outgrown.
#ifndef OPENFORCE_COORDINATOR_STATE_STORE_H_
#define OPENFORCE_COORDINATOR_STATE_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

struct WorkerRecord {
  std::string worker_id;
  std::string public_key;  // raw 32-byte Ed25519 key
  std::string display_name;
  v1::HardwareProfile profile;
  int64_t registered_ms = 0;
  int64_t last_heartbeat_ms = 0;
  v1::Availability availability = v1::AVAILABLE;
  std::string current_unit_id;
  uint32_t units_accepted = 0;
  uint32_t units_rejected = 0;
  double credit_flop = 0;         // accepted work in FLOP-equivalents
  uint32_t validated_streak = 0;  // replica-validated results in a row
  uint32_t units_invalid = 0;     // results that disagreed with a quorum
};

// A worker's liveness as heartbeats report it: soft state the coordinator
// holds in memory and writes in batches (worker_liveness.h).
struct HeartbeatRecord {
  std::string worker_id;
  int64_t heard_ms = 0;
  v1::Availability availability = v1::AVAILABLE;
  std::string current_unit_id;
};

struct JobRecord {
  std::string job_id;
  v1::JobSpec spec;
  v1::JobState state = v1::JOB_PENDING;
  uint64_t current_round = 0;
  uint64_t latest_version = 0;
  int64_t created_ms = 0;
  std::string message;
  // Version 0: A from the job's seed, B zero, so every worker of round 1
  // starts from the same adapter.
  v1::BlobRef initial_adapter;
  v1::BlobRef adapter_config;           // adapter_config.json of every version
  uint64_t estimated_memory_bytes = 0;  // training one unit
};

struct ShardRecord {
  uint32_t shard_index = 0;
  v1::BlobRef blob;
  uint64_t records = 0;
};

struct RoundRecord {
  std::string job_id;
  uint64_t round = 0;
  uint64_t parent_version = 0;
  int64_t opened_ms = 0;
  int64_t deadline_ms = 0;
  uint64_t adapter_version = 0;  // 0 while open
  // With a validation split, once the round's deltas are aggregated: the
  // candidate adapter its validation units score, which attempt it is (1,
  // then 2 when a worse candidate was aggregated again without outliers; 0:
  // no candidate yet) and the aggregation rule that made it.
  std::string candidate_sha256;
  uint32_t candidate_attempt = 0;
  std::string candidate_rule;
};

struct UnitRecord {
  std::string unit_id;
  std::string job_id;
  uint64_t round = 0;
  uint32_t shard_index = 0;
  uint32_t replica = 0;
  v1::UnitState state = v1::UNIT_PENDING;
  std::string worker_id;  // the lease holder or the accepted uploader
  int64_t lease_deadline_ms = 0;
  // A validation unit scores slice `shard_index` of the held-out records for
  // the round's candidate of attempt `attempt`.
  v1::WorkKind kind = v1::WORK_TRAIN;
  uint32_t attempt = 0;
};

struct ResultRecord {
  std::string unit_id;
  std::string worker_id;
  std::string job_id;
  uint64_t round = 0;
  uint32_t shard_index = 0;
  bool accepted = false;
  v1::RejectReason reject_reason = v1::REJECT_REASON_UNSPECIFIED;
  std::string message;
  v1::DeltaHeader header;  // as signed by the worker
  int64_t created_ms = 0;
  // The delta's L2 norm as the coordinator measured it (accepted results).
  double l2_norm = 0;
};

// A validation unit's delivered report. Stored accepted; closing the round
// rejects it when its slice's replicas outvote it.
struct ValidationReportRecord {
  std::string unit_id;
  std::string worker_id;
  std::string job_id;
  uint64_t round = 0;
  uint32_t attempt = 0;
  uint32_t slice = 0;
  bool accepted = true;
  v1::RejectReason reject_reason = v1::REJECT_REASON_UNSPECIFIED;
  std::string message;
  v1::ValidationReport report;  // as signed by the worker
  int64_t created_ms = 0;
};

// What closing a round decides for one accepted result: credit for a delta
// that went into the aggregate, or exclusion (with the reason) for one that
// did not.
struct ResultVerdict {
  // What replica validation says about the worker: its result agreed with
  // its shard's quorum (the streak grows), disagreed (the streak ends), or
  // was not compared.
  enum class Replica { kNotCompared, kAgreed, kDisagreed };
  std::string unit_id;
  std::string worker_id;
  Replica replica = Replica::kNotCompared;
  double credit_flop = 0;                                   // credited
  v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;  // excluded
  std::string message;                                      // excluded
};

// How many units of a round are in each state, by kind: what deciding
// whether a round is done needs, without reading its units.
struct RoundProgress {
  void Add(v1::WorkKind kind, v1::UnitState state, uint64_t count) {
    counts[{kind, state}] += count;
  }
  uint64_t Count(v1::WorkKind kind, v1::UnitState state) const {
    auto found = counts.find({kind, state});
    return found == counts.end() ? 0 : found->second;
  }
  uint64_t Total(v1::WorkKind kind) const {
    uint64_t total = 0;
    for (const auto& [key, count] : counts) {
      if (key.first == kind) total += count;
    }
    return total;
  }
  std::map<std::pair<v1::WorkKind, v1::UnitState>, uint64_t> counts;
};

struct AdapterRecord {
  v1::SignedAdapter adapter;
};

// A round's verdict: publish `adapter` and open `next_round` with
// `next_units`, or finish the job when there is no next round. Credit goes
// to the workers of `credited`; `excluded` results (deltas or validation
// reports) become rejected.
struct RoundOutcome {
  AdapterRecord adapter;
  std::vector<ResultVerdict> credited;
  std::vector<ResultVerdict> excluded;
  std::optional<RoundRecord> next_round;
  std::vector<UnitRecord> next_units;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Workers.
  [[nodiscard]] virtual absl::Status UpsertWorker(
      const WorkerRecord& worker) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<WorkerRecord>> GetWorker(
      const std::string& worker_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<WorkerRecord>>
  ListWorkers() = 0;
  // Liveness of many workers in one transaction; a heartbeat older than the
  // one stored does not move last_heartbeat_ms back.
  [[nodiscard]] virtual absl::Status RecordHeartbeats(
      const std::vector<HeartbeatRecord>& heartbeats) = 0;

  // Jobs.
  [[nodiscard]] virtual absl::Status CreateJob(
      const JobRecord& job, const std::vector<ShardRecord>& shards,
      const RoundRecord& first_round, const std::vector<UnitRecord>& units) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<JobRecord>> GetJob(
      const std::string& job_id) = 0;
  // Newest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<JobRecord>> ListJobs() = 0;
  // The running jobs, oldest first: what leasing and round closing look at,
  // through an index, however many jobs have finished.
  [[nodiscard]] virtual absl::StatusOr<std::vector<JobRecord>>
  ListRunningJobs() = 0;
  // Sets the state and message; a job that stops also ends its leases.
  [[nodiscard]] virtual absl::Status SetJobState(
      const std::string& job_id, v1::JobState state,
      const std::string& message) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<ShardRecord>> ListShards(
      const std::string& job_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<ShardRecord>> GetShard(
      const std::string& job_id, uint32_t shard_index) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<RoundRecord>> ListRounds(
      const std::string& job_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<RoundRecord>> GetRound(
      const std::string& job_id, uint64_t round) = 0;
  // Unit counts of a round by kind and state, kept as units change.
  [[nodiscard]] virtual absl::StatusOr<RoundProgress> GetRoundProgress(
      const std::string& job_id, uint64_t round) = 0;

  // Units.
  [[nodiscard]] virtual absl::StatusOr<std::optional<UnitRecord>> GetUnit(
      const std::string& unit_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<UnitRecord>> ListUnits(
      const std::string& job_id, uint64_t round) = 0;
  // Leases to `worker_id`, until `deadline_ms`, the first pending unit of
  // the round whose shard (or validation slice of the same attempt) the
  // worker has not leased, delivered or had rejected in this round
  // (replicas go to distinct workers); validation units first, and only
  // validation units once the round has a candidate. Finding and leasing
  // are one transaction, so two callers never lease the same unit, and its
  // cost does not grow with the units of the round. nullopt when there is
  // none, or the round is closed or the job not running.
  [[nodiscard]] virtual absl::StatusOr<std::optional<UnitRecord>> LeaseNextUnit(
      const std::string& job_id, uint64_t round, const std::string& worker_id,
      int64_t deadline_ms) = 0;
  // Returns the unit to pending if `worker_id` holds its lease; NotFound or
  // FailedPrecondition otherwise.
  [[nodiscard]] virtual absl::Status ReleaseUnit(
      const std::string& unit_id, const std::string& worker_id) = 0;
  // Returns every lease whose deadline is at or before `now_ms` to pending;
  // the units it returned.
  [[nodiscard]] virtual absl::StatusOr<std::vector<UnitRecord>> ExpireLeases(
      int64_t now_ms) = 0;
  // Returns to pending every lease whose holder's last heartbeat is before
  // `heard_before_ms`; the units it returned.
  [[nodiscard]] virtual absl::StatusOr<std::vector<UnitRecord>>
  ExpireLeasesOfSilentWorkers(int64_t heard_before_ms) = 0;
  // Adds pending units to an open round (another replica of a shard whose
  // replicas disagreed).
  [[nodiscard]] virtual absl::Status AddUnits(
      const std::vector<UnitRecord>& units) = 0;
  // Marks the pending replicas of `shard_index` in the round, other than
  // `except_unit_id`, UNIT_SKIPPED; how many it marked.
  [[nodiscard]] virtual absl::StatusOr<int> SkipPendingReplicas(
      const std::string& job_id, uint64_t round, uint32_t shard_index,
      const std::string& except_unit_id) = 0;
  // A round's candidate is ready: records it (attempt, rule), moves the
  // round's deadline to `deadline_ms`, skips an earlier candidate's
  // validation units still pending or leased, and adds the candidate's
  // validation units. (Training units are left as they are; the coordinator
  // neither leases them nor accepts their deltas once a candidate exists.)
  // FailedPrecondition when the round is closed.
  [[nodiscard]] virtual absl::Status BeginValidation(
      const RoundRecord& candidate,
      const std::vector<UnitRecord>& validation_units) = 0;
  // The units `worker_id` holds leases on now.
  [[nodiscard]] virtual absl::StatusOr<std::vector<UnitRecord>>
  ListWorkerLeases(const std::string& worker_id) = 0;

  // Results. Recording one sets its unit to accepted, or back to pending for
  // another worker when rejected, and counts it for the worker. Credit comes
  // only when the round closes with the result in its aggregate.
  [[nodiscard]] virtual absl::Status RecordResult(
      const ResultRecord& result) = 0;
  // Accepted (`accepted` true) or rejected results of a unit's round.
  [[nodiscard]] virtual absl::StatusOr<std::vector<ResultRecord>> ListResults(
      const std::string& job_id, uint64_t round) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::optional<ResultRecord>>
  GetAcceptedResult(const std::string& unit_id) = 0;

  // Stores a validation unit's report and sets the unit accepted, counting
  // it for the worker.
  [[nodiscard]] virtual absl::Status RecordValidationReport(
      const ValidationReportRecord& report) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::vector<ValidationReportRecord>>
  ListValidationReports(const std::string& job_id, uint64_t round) = 0;

  // Publishes a round's adapter and opens the next round (or finishes the
  // job), atomically. FailedPrecondition when the round was already closed,
  // so a round is never aggregated twice.
  [[nodiscard]] virtual absl::Status CloseRound(
      const std::string& job_id, uint64_t round,
      const RoundOutcome& outcome) = 0;
  // Version 0 for the latest.
  [[nodiscard]] virtual absl::StatusOr<std::optional<AdapterRecord>> GetAdapter(
      const std::string& job_id, uint64_t version) = 0;
  // Whether `sha256` is a file of some published adapter version, which
  // anyone may fetch.
  [[nodiscard]] virtual absl::StatusOr<bool> IsPublishedAdapterBlob(
      const std::string& sha256) = 0;

  // Returns once every transaction that returned before the call is on
  // disk (one fsync shared by every caller waiting at the time).
  [[nodiscard]] virtual absl::Status Sync() = 0;

  // Held by whoever closes a job's round: aggregation runs for seconds
  // outside any transaction, and replicas sharing the store would otherwise
  // each aggregate the same round (CloseRound keeps publishing exactly-once
  // either way; this keeps the work from being done twice). Released when
  // destroyed, or when its process dies.
  class ClosingLock {
   public:
    virtual ~ClosingLock() = default;
  };
  // The job's closing lock, or nullptr while another holder (in this process
  // or another on the same store) has it.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<ClosingLock>>
  TryLockRoundClosing(const std::string& job_id) = 0;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_STATE_STORE_H_
