// The worker's side of WorkerService: registration with proof of possession,
// heartbeats, leases, resumable hash-checked downloads into the local blob
// cache, resumable signed delta uploads, and published adapter lookups. Every
// call has a deadline; errors keep their gRPC code (and RejectReason), so the
// caller can tell a coordinator that is away (UNAVAILABLE, retry with
// backoff) from a refusal.
#ifndef OPENFORCE_WORKER_COORDINATOR_CLIENT_H_
#define OPENFORCE_WORKER_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "proto/channel.h"
#include "proto/openforce.grpc.pb.h"

namespace openforce::worker {

class CoordinatorClient {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CoordinatorClient>>
  Connect(const std::string& address, const TransportOptions& transport);

  [[nodiscard]] absl::StatusOr<v1::RegisterResponse> Register(
      const Ed25519PrivateKey& key, const v1::HardwareProfile& profile,
      const std::string& enrollment_token, const std::string& display_name);
  [[nodiscard]] absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      const v1::HeartbeatRequest& request);
  [[nodiscard]] absl::StatusOr<v1::LeaseWorkUnitResponse> Lease(
      const v1::LeaseWorkUnitRequest& request);
  [[nodiscard]] absl::Status Release(const std::string& worker_id,
                                     const std::string& unit_id,
                                     const std::string& reason);

  // Makes sure `store` holds the blob: fetches what is missing from where an
  // earlier attempt stopped, then checks the hash (DataLoss on mismatch, and
  // the partial download is dropped).
  [[nodiscard]] absl::Status FetchBlob(const std::string& worker_id,
                                       const v1::BlobRef& blob,
                                       BlobStore* store);

  // Uploads the delta file at `path` under `header` (signature already set),
  // resuming at the offset the coordinator reports. The response says whether
  // it was accepted; refusals come back as errors with a RejectReason.
  [[nodiscard]] absl::StatusOr<v1::UploadDeltaResponse> UploadDelta(
      const v1::DeltaHeader& header, const std::string& path);

  [[nodiscard]] absl::StatusOr<v1::GetLatestAdapterResponse> GetAdapter(
      const std::string& job_id, uint64_t version);

 private:
  explicit CoordinatorClient(std::shared_ptr<grpc::Channel> channel);

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  uint32_t max_chunk_bytes_ = kMaxChunkBytes;
};

// True for errors that mean "the coordinator is away or busy, try again"
// rather than "this request is wrong".
bool IsTransient(const absl::Status& status);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_COORDINATOR_CLIENT_H_
