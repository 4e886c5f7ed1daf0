// The gRPC services: WorkerService and AdminService as thin translations onto
// Coordinator. Here, and only here, absl::Status becomes grpc::Status (with
// the RejectReason in trailing metadata), and admin calls are checked for the
// bearer token.
#ifndef OPENFORCE_COORDINATOR_SERVICE_H_
#define OPENFORCE_COORDINATOR_SERVICE_H_

#include <string>

#include "coordinator/call_executor.h"
#include "coordinator/coordinator.h"
#include "coordinator/stream_registry.h"
#include "proto/openforce.grpc.pb.h"

namespace openforce::coordinator {

// Both services use gRPC's callback API: a call in flight holds a reactor,
// not a thread. Unary calls run on a bounded CallExecutor (refused with
// RESOURCE_EXHAUSTED when its queue is full); streams read and write chunk
// by chunk, and StreamRegistry bounds and times them out.
class WorkerServiceImpl final : public v1::WorkerService::CallbackService {
 public:
  WorkerServiceImpl(Coordinator* coordinator, StreamRegistry* streams,
                    CallExecutor* executor)
      : coordinator_(coordinator), streams_(streams), executor_(executor) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* LeaseWorkUnit(
      grpc::CallbackServerContext* context,
      const v1::LeaseWorkUnitRequest* request,
      v1::LeaseWorkUnitResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseWorkUnit(
      grpc::CallbackServerContext* context,
      const v1::ReleaseWorkUnitRequest* request,
      v1::ReleaseWorkUnitResponse* response) override;
  grpc::ServerUnaryReactor* GetUploadOffset(
      grpc::CallbackServerContext* context,
      const v1::GetUploadOffsetRequest* request,
      v1::GetUploadOffsetResponse* response) override;
  grpc::ServerReadReactor<v1::UploadDeltaChunk>* UploadDelta(
      grpc::CallbackServerContext* context,
      v1::UploadDeltaResponse* response) override;
  grpc::ServerWriteReactor<v1::BlobChunk>* FetchBlob(
      grpc::CallbackServerContext* context,
      const v1::FetchBlobRequest* request) override;
  grpc::ServerUnaryReactor* GetLatestAdapter(
      grpc::CallbackServerContext* context,
      const v1::GetLatestAdapterRequest* request,
      v1::GetLatestAdapterResponse* response) override;
  grpc::ServerUnaryReactor* SubmitValidation(
      grpc::CallbackServerContext* context,
      const v1::SubmitValidationRequest* request,
      v1::SubmitValidationResponse* response) override;

 private:
  Coordinator* const coordinator_;
  StreamRegistry* const streams_;
  CallExecutor* const executor_;
};

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(Coordinator* coordinator, std::string admin_token,
                   StreamRegistry* streams, CallExecutor* executor)
      : coordinator_(coordinator),
        admin_token_(std::move(admin_token)),
        streams_(streams),
        executor_(executor) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::SubmitJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request,
                                   v1::GetJobResponse* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::CancelJobResponse* response) override;
  grpc::ServerUnaryReactor* ListWorkers(
      grpc::CallbackServerContext* context,
      const v1::ListWorkersRequest* request,
      v1::ListWorkersResponse* response) override;
  grpc::ServerReadReactor<v1::UploadBlobChunk>* UploadBlob(
      grpc::CallbackServerContext* context,
      v1::UploadBlobResponse* response) override;
  grpc::ServerUnaryReactor* GetStoreStatus(
      grpc::CallbackServerContext* context,
      const v1::GetStoreStatusRequest* request,
      v1::GetStoreStatusResponse* response) override;

 private:
  // UNAUTHENTICATED unless the call carries "authorization: Bearer <token>".
  grpc::Status Authorize(const grpc::ServerContextBase& context) const;
  // Authorizes, then runs `call` (StatusOr<Response>) on the executor.
  template <typename Response, typename Call>
  grpc::ServerUnaryReactor* RunAdmin(grpc::CallbackServerContext* context,
                                     Response* response, Call call);

  Coordinator* const coordinator_;
  const std::string admin_token_;
  StreamRegistry* const streams_;
  CallExecutor* const executor_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_SERVICE_H_
