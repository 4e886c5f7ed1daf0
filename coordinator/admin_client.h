// The operator's side of AdminService, used by `openforce-coordinator job ...`
// and `workers`: uploads a model directory and dataset into the blob store
// (chunked, resuming where an earlier attempt stopped, skipping what is
// already there), submits jobs and reads their status, and renders it.
#ifndef OPENFORCE_COORDINATOR_ADMIN_CLIENT_H_
#define OPENFORCE_COORDINATOR_ADMIN_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/channel.h"
#include "proto/openforce.grpc.pb.h"

namespace openforce::coordinator {

class AdminClient {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<AdminClient>> Connect(
      const std::string& address, const TransportOptions& transport,
      std::string admin_token);

  // Uploads `path` unless the coordinator already has its bytes; returns the
  // reference with `name` set to the file's base name.
  [[nodiscard]] absl::StatusOr<v1::BlobRef> UploadFile(const std::string& path);
  // Uploads every file of a model directory (common/model_manifest.h) and
  // fills base_model_files and base_model_hash of `spec`.
  [[nodiscard]] absl::Status UploadModel(const std::string& dir,
                                         v1::JobSpec* spec);

  [[nodiscard]] absl::StatusOr<std::string> SubmitJob(const v1::JobSpec& spec);
  [[nodiscard]] absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id);
  [[nodiscard]] absl::StatusOr<std::vector<v1::JobStatus>> ListJobs();
  [[nodiscard]] absl::StatusOr<v1::JobState> CancelJob(
      const std::string& job_id, const std::string& reason);
  [[nodiscard]] absl::StatusOr<std::vector<v1::WorkerStatus>> ListWorkers(
      bool include_inactive);
  [[nodiscard]] absl::StatusOr<v1::GetStoreStatusResponse> GetStoreStatus();

 private:
  AdminClient(std::shared_ptr<grpc::Channel> channel, std::string token);
  void Authorize(grpc::ClientContext* context) const;

  std::unique_ptr<v1::AdminService::Stub> stub_;
  const std::string token_;
};

// Human-readable renderings for the CLI. Text that came from workers or
// operators (names, messages, ids) is escaped for the terminal.
std::string FormatJobStatus(const v1::JobStatus& job);
std::string FormatJobList(const std::vector<v1::JobStatus>& jobs);
std::string FormatWorkers(const std::vector<v1::WorkerStatus>& workers,
                          int64_t now_ms);
std::string FormatStoreStatus(const v1::GetStoreStatusResponse& status);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_ADMIN_CLIENT_H_
