// Replica quorums; see replica_quorum.h.
#include "coordinator/internal/replica_quorum.h"

#include "common/status_macros.h"

namespace openforce::coordinator::internal {

absl::StatusOr<ShardQuorum> DecideShardQuorum(
    const std::vector<size_t>& results, const ReplicaDistance& distance,
    double tolerance, bool trusted_single, bool may_add_replica) {
  ShardQuorum quorum;
  if (results.size() == 1 && trusted_single) {
    quorum.canonical = results[0];
    return quorum;
  }
  const size_t n = results.size();
  std::vector<std::vector<bool>> agree(n, std::vector<bool>(n, false));
  for (size_t i = 0; i < n; ++i) {
    agree[i][i] = true;
    for (size_t j = i + 1; j < n; ++j) {
      ASSIGN_OR_RETURN(const double d, distance(results[i], results[j]));
      agree[i][j] = agree[j][i] = d <= tolerance;
    }
  }
  // The result most others agree with; the oldest among equals.
  size_t best = 0, best_count = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t count = 0;
    for (size_t j = 0; j < n; ++j) count += agree[i][j] ? 1 : 0;
    if (count > best_count) {
      best = i;
      best_count = count;
    }
  }
  if (best_count >= 2) {
    quorum.canonical = results[best];
    for (size_t j = 0; j < n; ++j) {
      if (j == best) continue;
      (agree[best][j] ? quorum.agreeing : quorum.disagreeing)
          .push_back(results[j]);
    }
    return quorum;
  }
  if (may_add_replica) {
    quorum.needs_replica = true;
  } else {
    quorum.unresolved = results;
  }
  return quorum;
}

}  // namespace openforce::coordinator::internal
