// The gRPC services: WorkerService and AdminService as thin translations onto
// Coordinator. Here, and only here, absl::Status becomes grpc::Status (with
// the RejectReason in trailing metadata), and admin calls are checked for the
// bearer token.
#ifndef OPENFORCE_COORDINATOR_SERVICE_H_
#define OPENFORCE_COORDINATOR_SERVICE_H_

#include <string>

#include "coordinator/coordinator.h"
#include "coordinator/stream_registry.h"
#include "proto/openforce.grpc.pb.h"

namespace openforce::coordinator {

// The two streaming methods use gRPC's callback API: a stalled or slow
// stream holds no thread, only its reactor, and StreamRegistry bounds and
// times those out. Unary calls are short and run on the bounded sync pool.
using WorkerServiceBase = v1::WorkerService::WithCallbackMethod_UploadDelta<
    v1::WorkerService::WithCallbackMethod_FetchBlob<
        v1::WorkerService::Service>>;

class WorkerServiceImpl final : public WorkerServiceBase {
 public:
  WorkerServiceImpl(Coordinator* coordinator, StreamRegistry* streams)
      : coordinator_(coordinator), streams_(streams) {}

  grpc::Status Register(grpc::ServerContext* context,
                        const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status LeaseWorkUnit(grpc::ServerContext* context,
                             const v1::LeaseWorkUnitRequest* request,
                             v1::LeaseWorkUnitResponse* response) override;
  grpc::Status ReleaseWorkUnit(grpc::ServerContext* context,
                               const v1::ReleaseWorkUnitRequest* request,
                               v1::ReleaseWorkUnitResponse* response) override;
  grpc::Status GetUploadOffset(grpc::ServerContext* context,
                               const v1::GetUploadOffsetRequest* request,
                               v1::GetUploadOffsetResponse* response) override;
  grpc::ServerReadReactor<v1::UploadDeltaChunk>* UploadDelta(
      grpc::CallbackServerContext* context,
      v1::UploadDeltaResponse* response) override;
  grpc::ServerWriteReactor<v1::BlobChunk>* FetchBlob(
      grpc::CallbackServerContext* context,
      const v1::FetchBlobRequest* request) override;
  grpc::Status GetLatestAdapter(
      grpc::ServerContext* context, const v1::GetLatestAdapterRequest* request,
      v1::GetLatestAdapterResponse* response) override;
  grpc::Status SubmitValidation(
      grpc::ServerContext* context, const v1::SubmitValidationRequest* request,
      v1::SubmitValidationResponse* response) override;

 private:
  Coordinator* coordinator_;
  StreamRegistry* streams_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(Coordinator* coordinator, std::string admin_token)
      : coordinator_(coordinator), admin_token_(std::move(admin_token)) {}

  grpc::Status SubmitJob(grpc::ServerContext* context,
                         const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context,
                      const v1::GetJobRequest* request,
                      v1::GetJobResponse* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context,
                         const v1::CancelJobRequest* request,
                         v1::CancelJobResponse* response) override;
  grpc::Status ListWorkers(grpc::ServerContext* context,
                           const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;
  grpc::Status UploadBlob(grpc::ServerContext* context,
                          grpc::ServerReader<v1::UploadBlobChunk>* reader,
                          v1::UploadBlobResponse* response) override;
  grpc::Status GetStoreStatus(grpc::ServerContext* context,
                              const v1::GetStoreStatusRequest* request,
                              v1::GetStoreStatusResponse* response) override;

 private:
  // UNAUTHENTICATED unless the call carries "authorization: Bearer <token>".
  grpc::Status Authorize(const grpc::ServerContext& context) const;

  Coordinator* coordinator_;
  const std::string admin_token_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_SERVICE_H_
