// Replica validation, BOINC-style (see round_closer.h): replicas of a shard
// are the same work (same parent, data, seed and steps), so honest results
// agree within the job's tolerance; the quorum's result is aggregated once,
// results outside it are invalid and end their worker's validated streak, and
// a shard without a quorum gets another replica. Adaptive replication lets a
// worker with a long validated streak stand alone, re-checked at random.
#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/internal/planning.h"
#include "coordinator/internal/replica_quorum.h"
#include "coordinator/round_closer.h"
#include "lora/adapter_delta.h"

namespace openforce::coordinator {
namespace {

double ReplicaTolerance(const v1::JobSpec& spec) {
  return spec.replica_tolerance() > 0 ? spec.replica_tolerance()
                                      : kDefaultReplicaTolerance;
}

}  // namespace

absl::StatusOr<RoundCloser::ReplicaVerdicts> RoundCloser::ValidateReplicas(
    const JobRecord& job, const std::vector<UnitRecord>& units,
    const std::vector<ResultRecord>& accepted, bool may_add_replicas) {
  ReplicaVerdicts verdicts;
  if (job.spec.replication() < 2) {
    verdicts.canonical = accepted;
    return verdicts;
  }
  std::map<uint32_t, std::vector<size_t>> by_shard;
  for (size_t i = 0; i < accepted.size(); ++i)
    by_shard[accepted[i].shard_index].push_back(i);
  std::map<uint32_t, uint32_t> replicas_made, skipped;
  for (const UnitRecord& unit : units) {
    ++replicas_made[unit.shard_index];
    if (unit.state == v1::UNIT_SKIPPED) ++skipped[unit.shard_index];
  }
  const double tolerance = ReplicaTolerance(job.spec);
  internal::ReplicaDistance distance = [&](size_t a,
                                           size_t b) -> absl::StatusOr<double> {
    ASSIGN_OR_RETURN(
        std::string path_a,
        core_.blobs().ObjectPath(accepted[a].header.content_hash()));
    ASSIGN_OR_RETURN(
        std::string path_b,
        core_.blobs().ObjectPath(accepted[b].header.content_hash()));
    return lora::RelativeDeltaDistance(path_a, path_b);
  };
  auto verdict = [&](size_t i, v1::RejectReason reason, std::string message,
                     ResultVerdict::Replica replica) {
    ResultVerdict out;
    out.unit_id = accepted[i].unit_id;
    out.worker_id = accepted[i].worker_id;
    out.reason = reason;
    out.message = std::move(message);
    out.replica = replica;
    return out;
  };
  for (const auto& [shard, indices] : by_shard) {
    const bool trusted_single = indices.size() == 1 && skipped[shard] > 0;
    const bool may_add =
        may_add_replicas &&
        replicas_made[shard] < job.spec.replication() + kMaxExtraReplicas;
    ASSIGN_OR_RETURN(internal::ShardQuorum quorum,
                     internal::DecideShardQuorum(indices, distance, tolerance,
                                                 trusted_single, may_add));
    if (quorum.needs_replica) {
      verdicts.shards_needing_replica.push_back(shard);
      continue;
    }
    if (quorum.canonical.has_value()) {
      const ResultRecord& canonical = accepted[*quorum.canonical];
      verdicts.canonical.push_back(canonical);
      for (size_t i : quorum.agreeing)
        verdicts.duplicates[canonical.unit_id].push_back(accepted[i]);
    }
    for (size_t i : quorum.disagreeing) {
      verdicts.excluded.push_back(
          verdict(i, v1::REJECT_REPLICA_DISAGREES,
                  absl::StrCat("differs from the quorum of shard ", shard,
                               "'s replicas by more than ", tolerance,
                               " (relative distance)"),
                  ResultVerdict::Replica::kDisagreed));
    }
    for (size_t i : quorum.unresolved) {
      verdicts.excluded.push_back(verdict(
          i, v1::REJECT_REPLICA_DISAGREES,
          absl::StrCat("shard ", shard,
                       " has no two replicas that agree and may have no more: "
                       "nothing validated, nothing aggregated"),
          ResultVerdict::Replica::kNotCompared));
    }
  }
  return verdicts;
}

}  // namespace openforce::coordinator
