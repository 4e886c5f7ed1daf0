// The worker's side of WorkerService: registration with proof of possession,
// heartbeats, leases, resumable hash-checked downloads into the local blob
// cache, resumable signed delta uploads, signed validation reports, and
// published adapter lookups. Every
// call after Register is signed with the worker's key in the session that
// Register opened (CallAuth); when the coordinator has forgotten the session
// (it restarted), the client registers again and repeats the call once. Every
// call has a deadline; errors keep their gRPC code (and RejectReason), so the
// caller can tell a coordinator that is away (UNAVAILABLE, retry with
// backoff) from a refusal. Thread-safe.
#ifndef OPENFORCE_WORKER_COORDINATOR_CLIENT_H_
#define OPENFORCE_WORKER_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "proto/channel.h"
#include "proto/openforce.grpc.pb.h"

namespace openforce::worker {

class CoordinatorClient {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CoordinatorClient>>
  Connect(const std::string& address, const TransportOptions& transport);

  // Registers `key` (which must outlive the client) and opens the session
  // that later calls are signed in.
  [[nodiscard]] absl::StatusOr<v1::RegisterResponse> Register(
      const Ed25519PrivateKey& key, const v1::HardwareProfile& profile,
      const std::string& enrollment_token, const std::string& display_name);
  // The id Register returned; empty before.
  std::string worker_id() const;
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

  // Delivers a validation unit's report (signature already set).
  [[nodiscard]] absl::StatusOr<v1::SubmitValidationResponse> SubmitValidation(
      const v1::ValidationReport& report);

 private:
  struct Registration {
    const Ed25519PrivateKey* key = nullptr;
    v1::HardwareProfile profile;
    std::string enrollment_token;
    std::string display_name;
  };
  struct Session {
    std::string worker_id;
    std::string session_id;
  };

  explicit CoordinatorClient(std::shared_ptr<grpc::Channel> channel);

  absl::StatusOr<v1::RegisterResponse> RegisterNow(
      const Registration& registration);
  // Signs `request` as method `method` in the current session.
  template <typename Request>
  absl::StatusOr<Session> Sign(absl::string_view method, Request* request);
  // Runs `call(session)` and, when the coordinator no longer knows the
  // session it was signed in, registers again and runs it once more.
  template <typename Call>
  absl::Status WithSession(Call call);

  std::unique_ptr<v1::WorkerService::Stub> stub_;
  mutable absl::Mutex mu_;
  Registration registration_ ABSL_GUARDED_BY(mu_);
  Session session_ ABSL_GUARDED_BY(mu_);
  uint64_t counter_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t max_chunk_bytes_ ABSL_GUARDED_BY(mu_) = kMaxChunkBytes;
};

// True for errors that mean "the coordinator is away or busy, try again"
// rather than "this request is wrong".
bool IsTransient(const absl::Status& status);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_COORDINATOR_CLIENT_H_
