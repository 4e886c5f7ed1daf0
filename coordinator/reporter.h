// Reporting: read-only views of the coordinator's state. Jobs with their
// rounds, results and contributors; workers with their liveness; the blob
// store's status; the published adapters anyone may pull; and the levels a
// metrics scrape reports.
#ifndef OPENFORCE_COORDINATOR_REPORTER_H_
#define OPENFORCE_COORDINATOR_REPORTER_H_

#include <string>

#include "absl/status/statusor.h"
#include "coordinator/internal/coordinator_core.h"
#include "coordinator/metrics.h"
#include "coordinator/state_store.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

class Reporter {
 public:
  explicit Reporter(CoordinatorCore* core) : core_(*core) {}
  Reporter(const Reporter&) = delete;
  Reporter& operator=(const Reporter&) = delete;

  [[nodiscard]] absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id);
  [[nodiscard]] absl::StatusOr<v1::ListJobsResponse> ListJobs(
      const v1::ListJobsRequest& request);
  [[nodiscard]] absl::StatusOr<v1::ListWorkersResponse> ListWorkers(
      const v1::ListWorkersRequest& request);
  [[nodiscard]] absl::StatusOr<v1::GetStoreStatusResponse> GetStoreStatus();
  // The latest (or the requested) published adapter of a job; unset when
  // none is published yet.
  [[nodiscard]] absl::StatusOr<v1::GetLatestAdapterResponse> GetLatestAdapter(
      const v1::GetLatestAdapterRequest& request);
  // Units of open rounds by kind and state, workers by tier and state, jobs
  // by state, blob store bytes (metrics.h).
  [[nodiscard]] absl::StatusOr<MetricsSnapshot> CollectMetricsSnapshot();

 private:
  absl::StatusOr<v1::JobStatus> DescribeJob(const JobRecord& job);

  CoordinatorCore& core_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_REPORTER_H_
