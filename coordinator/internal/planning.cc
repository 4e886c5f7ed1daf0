// Shared coordinator helpers; see planning.h.
#include "coordinator/internal/planning.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace openforce::coordinator {

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string UnitId(const std::string& job_id, uint64_t round, uint32_t shard,
                   uint32_t replica) {
  return absl::StrCat(job_id, "-r", round, "-s", shard, "-p", replica);
}

std::vector<UnitRecord> MakeUnits(const JobRecord& job, uint64_t round) {
  std::vector<UnitRecord> units;
  for (uint32_t shard = 0; shard < job.spec.shards_per_round(); ++shard) {
    for (uint32_t replica = 0; replica < job.spec.replication(); ++replica) {
      UnitRecord unit;
      unit.unit_id = UnitId(job.job_id, round, shard, replica);
      unit.job_id = job.job_id;
      unit.round = round;
      unit.shard_index = shard;
      unit.replica = replica;
      units.push_back(unit);
    }
  }
  return units;
}

std::vector<UnitRecord> NextReplicas(const std::vector<UnitRecord>& units,
                                     const std::vector<uint32_t>& shards) {
  std::vector<UnitRecord> extra;
  if (units.empty()) return extra;
  std::map<uint32_t, uint32_t> next_replica;
  for (const UnitRecord& unit : units) {
    next_replica[unit.shard_index] =
        std::max(next_replica[unit.shard_index], unit.replica + 1);
  }
  for (uint32_t shard : shards) {
    UnitRecord unit;
    unit.job_id = units.front().job_id;
    unit.round = units.front().round;
    unit.kind = units.front().kind;
    unit.attempt = units.front().attempt;
    unit.shard_index = shard;
    unit.replica = next_replica[shard];
    unit.unit_id = unit.kind == v1::WORK_VALIDATE
                       ? ValidationUnitId(unit.job_id, unit.round, unit.attempt,
                                          shard, unit.replica)
                       : UnitId(unit.job_id, unit.round, shard, unit.replica);
    extra.push_back(unit);
  }
  return extra;
}

std::string ValidationUnitId(const std::string& job_id, uint64_t round,
                             uint32_t attempt, uint32_t slice,
                             uint32_t replica) {
  return absl::StrCat(job_id, "-r", round, "-v", attempt, "-s", slice, "-p",
                      replica);
}

uint32_t ValidationSliceCount(const v1::JobSpec& spec) {
  const uint32_t records = spec.validation_records();
  if (records == 0) return 0;
  const uint32_t wanted =
      (records + kValidationRecordsPerSlice - 1) / kValidationRecordsPerSlice;
  return std::clamp<uint32_t>(wanted, 1,
                              std::max<uint32_t>(1, spec.shards_per_round()));
}

std::pair<uint32_t, uint32_t> ValidationSliceRange(const v1::JobSpec& spec,
                                                   uint32_t slice) {
  const uint64_t records = spec.validation_records();
  const uint64_t slices = std::max<uint32_t>(1, ValidationSliceCount(spec));
  // Even cuts: slice sizes differ by at most one record.
  return {static_cast<uint32_t>(records * slice / slices),
          static_cast<uint32_t>(records * (slice + 1) / slices)};
}

std::vector<UnitRecord> MakeValidationUnits(const JobRecord& job,
                                            uint64_t round, uint32_t attempt) {
  std::vector<UnitRecord> units;
  const uint32_t replication = std::max<uint32_t>(1, job.spec.replication());
  for (uint32_t slice = 0; slice < ValidationSliceCount(job.spec); ++slice) {
    for (uint32_t replica = 0; replica < replication; ++replica) {
      UnitRecord unit;
      unit.unit_id =
          ValidationUnitId(job.job_id, round, attempt, slice, replica);
      unit.job_id = job.job_id;
      unit.round = round;
      unit.shard_index = slice;
      unit.replica = replica;
      unit.kind = v1::WORK_VALIDATE;
      unit.attempt = attempt;
      units.push_back(unit);
    }
  }
  return units;
}

RoundRecord MakeRound(const JobRecord& job, uint64_t round,
                      uint64_t parent_version, int64_t now) {
  RoundRecord record;
  record.job_id = job.job_id;
  record.round = round;
  record.parent_version = parent_version;
  record.opened_ms = now;
  record.deadline_ms = job.spec.round_deadline_s() == 0
                           ? 0
                           : now + int64_t{1000} * job.spec.round_deadline_s();
  return record;
}

uint64_t UnitSeed(uint64_t job_seed, const UnitRecord& unit) {
  const Sha256Digest digest = [&] {
    Sha256 hasher;
    // Not the replica: replicas of a shard are the same work, so that their
    // results can be compared.
    hasher.Update(absl::StrCat("openforce/unit-seed/v2\n", job_seed, "\n",
                               unit.round, "\n", unit.shard_index));
    return hasher.Finish();
  }();
  uint64_t seed = 0;
  for (int i = 0; i < 8; ++i) seed = (seed << 8) | digest[i];
  return seed;
}

uint32_t MinResults(const v1::JobSpec& spec) {
  return spec.min_results_per_round() > 0
             ? spec.min_results_per_round()
             : spec.shards_per_round() * spec.replication();
}

std::string WorkerUploadPrefix(const std::string& worker_id) {
  return absl::StrCat("d", worker_id, "-");
}
std::string UnitUploadPrefix(const std::string& worker_id,
                             const std::string& unit_id) {
  return absl::StrCat(WorkerUploadPrefix(worker_id),
                      Sha256Hex(unit_id).substr(0, 16), "-");
}
std::string DeltaUploadId(const std::string& worker_id,
                          const std::string& unit_id,
                          const std::string& content_hash) {
  return absl::StrCat(UnitUploadPrefix(worker_id, unit_id),
                      content_hash.substr(0, 40));
}

uint64_t ExpectedSamples(const v1::TrainingConfig& training) {
  return uint64_t(std::max(0, training.steps_per_shard())) *
         uint64_t(std::max(0, training.batch_size())) *
         uint64_t(std::max(1, training.gradient_accumulation()));
}

double MinDeltaNorm(const v1::JobSpec& spec) {
  return spec.min_delta_norm() > 0 ? spec.min_delta_norm()
                                   : kDefaultMinDeltaNorm;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_SUCCEEDED || state == v1::JOB_FAILED ||
         state == v1::JOB_CANCELLED;
}

absl::Status NotFoundJob(const std::string& job_id) {
  return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
}

v1::BlobRef MakeRef(const std::string& sha256, uint64_t size,
                    const std::string& name) {
  v1::BlobRef ref;
  ref.set_sha256(sha256);
  ref.set_size_bytes(size);
  ref.set_name(name);
  return ref;
}

}  // namespace openforce::coordinator
