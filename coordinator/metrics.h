// What the coordinator tells Prometheus. Events are counted where they
// happen: RPCs by method and status with their latency (rpc_metrics.h), leases,
// uploads accepted and rejected by reason, round durations and aggregation
// time. Levels (units by state, workers by tier and state, blob store bytes)
// are read from the coordinator when scraped, so they are never stale and cost
// nothing between scrapes. prometheus-cpp stays behind this header's forward
// declarations so coordinator code does not include it.
#ifndef OPENFORCE_COORDINATOR_METRICS_H_
#define OPENFORCE_COORDINATOR_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prometheus {
class Registry;
class Collectable;
}  // namespace prometheus

namespace openforce::coordinator {

// Levels read at scrape time.
struct MetricsSnapshot {
  // (kind, state) -> units of the open rounds of running jobs.
  std::map<std::pair<std::string, std::string>, uint64_t> units;
  // (tier, state) -> registered workers; state is the availability the
  // worker last reported, or "silent" past the worker timeout.
  std::map<std::pair<std::string, std::string>, uint64_t> workers;
  // job state -> jobs.
  std::map<std::string, uint64_t> jobs;
  uint64_t blob_bytes = 0;
  uint64_t blob_count = 0;
  uint64_t partial_upload_bytes = 0;
};

class CoordinatorMetrics {
 public:
  CoordinatorMetrics();
  ~CoordinatorMetrics();
  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  // One finished RPC: its full method name, status code name ("OK",
  // "RESOURCE_EXHAUSTED") and time from arrival to status.
  void RecordRpc(absl::string_view method, absl::string_view code,
                 double seconds);
  // A unit leased: kind is "training" or "validation".
  void RecordLease(absl::string_view kind);
  // A lease call that found nothing to do.
  void RecordNoWork();
  // A delta upload that finished: accepted, or rejected with the
  // RejectReason name (or the status code when it carries none).
  void RecordUploadAccepted();
  void RecordUploadRejected(absl::string_view reason);
  // A published round: time from opening to publication.
  void RecordRoundPublished(double seconds);
  // One aggregation of a round's deltas under one rule.
  void RecordAggregation(double seconds);
  // Liveness batches written and the heartbeats in them.
  void RecordLivenessBatch(uint64_t heartbeats);

  // Where levels come from; a failing source leaves them out of that
  // scrape (and counts the failure).
  void SetSnapshotSource(
      std::function<absl::StatusOr<MetricsSnapshot>()> source);

  // Everything above, for an exporter (metrics_exporter.h).
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables() const;

 private:
  struct Families;
  class SnapshotCollector;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;
  std::shared_ptr<SnapshotCollector> snapshot_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_METRICS_H_
