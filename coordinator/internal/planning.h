// Pieces of the coordinator's logic that its files share: unit and round
// planning from a job's spec, the job's own counts that stand in for worker
// claims, upload naming, and small status helpers. Internal to the
// coordinator target.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_PLANNING_H_
#define OPENFORCE_COORDINATOR_INTERNAL_PLANNING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/state_store.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

inline constexpr size_t kMaxDisplayName = 128;
// Longest unit id a worker may report (ours are far shorter).
inline constexpr size_t kMaxUnitIdBytes = 128;
inline constexpr uint32_t kMaxRounds = 10'000;
inline constexpr uint32_t kMaxUnitsPerRound = 100'000;
inline constexpr uint32_t kDefaultPageSize = 50;
// Below this L2 norm a delta shows no training, unless the job sets a floor.
inline constexpr double kDefaultMinDeltaNorm = 1e-6;
// At aggregation, deltas below this fraction of the round's median norm are
// left out, unless the job sets its own fraction.
inline constexpr double kDefaultMinNormFraction = 0.1;
inline constexpr int64_t kUploadSweepIntervalMs = 10'000;
// Replica validation. The default relative distance under which replicas of a
// shard agree (JobSpec.replica_tolerance).
inline constexpr double kDefaultReplicaTolerance = 0.02;
// How much worse than its parent (relative validation loss) a round's
// aggregate may be before it is aggregated again without outliers
// (JobSpec.validation_tolerance).
inline constexpr double kDefaultValidationTolerance = 0.05;
// Extra replicas a shard may get when its replicas disagree, beyond the job's
// replication; then it stays unresolved.
inline constexpr uint32_t kMaxExtraReplicas = 3;
// Adaptive replication: a worker with this many validated results in a row
// is trusted, and its result stands alone, except for this fraction of its
// results, which are replicated at random all the same.
inline constexpr uint32_t kTrustedStreak = 10;
inline constexpr double kTrustedRecheckFraction = 0.1;
// Validation units: held-out records one unit scores (the split is cut into
// at most shards_per_round slices of about this many), and how far apart two
// replicas' losses (relative, candidate and parent each) may be and still
// agree: forward passes over the same records differ only by rounding.
inline constexpr uint32_t kValidationRecordsPerSlice = 256;
inline constexpr double kValidationLossTolerance = 1e-3;

int64_t SystemNowMs();

std::string UnitId(const std::string& job_id, uint64_t round, uint32_t shard,
                   uint32_t replica);
// Every (shard, replica) unit of `round`, pending.
std::vector<UnitRecord> MakeUnits(const JobRecord& job, uint64_t round);
// One more pending replica of each of `shards` (training shards or
// validation slices, as `units` are: the round's units of one kind and
// attempt), numbered after the replicas `units` already has.
std::vector<UnitRecord> NextReplicas(const std::vector<UnitRecord>& units,
                                     const std::vector<uint32_t>& shards);
// Validation units: "<job>-r<round>-v<attempt>-s<slice>-p<replica>".
std::string ValidationUnitId(const std::string& job_id, uint64_t round,
                             uint32_t attempt, uint32_t slice,
                             uint32_t replica);
// How many slices the job's validation records are cut into (0 without a
// validation split), and slice `slice`'s records [begin, end).
uint32_t ValidationSliceCount(const v1::JobSpec& spec);
std::pair<uint32_t, uint32_t> ValidationSliceRange(const v1::JobSpec& spec,
                                                   uint32_t slice);
// Every (slice, replica) validation unit of a round's candidate, pending.
std::vector<UnitRecord> MakeValidationUnits(const JobRecord& job,
                                            uint64_t round, uint32_t attempt);
RoundRecord MakeRound(const JobRecord& job, uint64_t round,
                      uint64_t parent_version, int64_t now);
// Seeds differ per unit (so replicas and shards do not repeat each other's
// dropout and data order) but follow from the job's seed.
uint64_t UnitSeed(uint64_t job_seed, const UnitRecord& unit);
// Accepted results a round needs to aggregate at its deadline.
uint32_t MinResults(const v1::JobSpec& spec);

// Where a worker's delta uploads accumulate: "d<worker>-" for everything the
// worker has open (to cap it), then the unit (so a new upload for a unit
// replaces an abandoned one), then the content. Stable across reconnects, so
// an upload resumes where it stopped. Worker ids are "w-" and hex digits.
std::string WorkerUploadPrefix(const std::string& worker_id);
std::string UnitUploadPrefix(const std::string& worker_id,
                             const std::string& unit_id);
std::string DeltaUploadId(const std::string& worker_id,
                          const std::string& unit_id,
                          const std::string& content_hash);

// The samples a unit trains on by the job's own settings: what an honest
// worker reports, and all a worker's claim may say.
uint64_t ExpectedSamples(const v1::TrainingConfig& training);
double MinDeltaNorm(const v1::JobSpec& spec);

bool IsTerminal(v1::JobState state);
absl::Status NotFoundJob(const std::string& job_id);
v1::BlobRef MakeRef(const std::string& sha256, uint64_t size,
                    const std::string& name);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_INTERNAL_PLANNING_H_
