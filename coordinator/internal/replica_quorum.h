// BOINC-style validation of one shard's replicas: replicas (same parent, data,
// seed and steps) that agree within a tolerance form a quorum; the largest
// agreeing group of at least two wins, one of its results is aggregated (the
// others are duplicates), and results outside it are invalid. Without a
// quorum the shard needs another replica, or stays unresolved when it may
// have no more.
#ifndef OPENFORCE_COORDINATOR_INTERNAL_REPLICA_QUORUM_H_
#define OPENFORCE_COORDINATOR_INTERNAL_REPLICA_QUORUM_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"

namespace openforce::coordinator::internal {

struct ShardQuorum {
  std::optional<size_t> canonical;  // aggregated: one per validated shard
  std::vector<size_t> agreeing;     // agreed with it: credit, not aggregated
  std::vector<size_t> disagreeing;  // outside the quorum: invalid
  std::vector<size_t> unresolved;   // no quorum and no replica to come
  bool needs_replica = false;       // no quorum yet: lease another replica
};

// Relative distance between results `a` and `b` (ids as given).
using ReplicaDistance = std::function<absl::StatusOr<double>(size_t, size_t)>;

// `results`: the shard's accepted results, oldest first. `trusted_single`: a
// lone result whose other replicas were skipped for its worker's record.
// Errors only from `distance`.
[[nodiscard]] absl::StatusOr<ShardQuorum> DecideShardQuorum(
    const std::vector<size_t>& results, const ReplicaDistance& distance,
    double tolerance, bool trusted_single, bool may_add_replica);

}  // namespace openforce::coordinator::internal

#endif  // OPENFORCE_COORDINATOR_INTERNAL_REPLICA_QUORUM_H_
