// gRPC service handlers; see service.h.
#include "coordinator/service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/secret_token.h"
#include "proto/channel.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {
namespace {

// Runs `call` (returning StatusOr<Response>) and moves its value into
// `response`.
template <typename Response, typename Call>
grpc::Status Answer(grpc::ServerContext* context, Response* response,
                    Call call) {
  absl::StatusOr<Response> result = call();
  if (!result.ok()) return ToGrpcStatus(result.status(), context);
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* context,
                                         const v1::RegisterRequest* request,
                                         v1::RegisterResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->Register(*request); });
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                          const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->Heartbeat(*request); });
}

grpc::Status WorkerServiceImpl::LeaseWorkUnit(
    grpc::ServerContext* context, const v1::LeaseWorkUnitRequest* request,
    v1::LeaseWorkUnitResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->LeaseWorkUnit(*request); });
}

grpc::Status WorkerServiceImpl::ReleaseWorkUnit(
    grpc::ServerContext* context, const v1::ReleaseWorkUnitRequest* request,
    v1::ReleaseWorkUnitResponse*) {
  return ToGrpcStatus(coordinator_->ReleaseWorkUnit(*request), context);
}

grpc::Status WorkerServiceImpl::GetUploadOffset(
    grpc::ServerContext* context, const v1::GetUploadOffsetRequest* request,
    v1::GetUploadOffsetResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->GetUploadOffset(*request); });
}

grpc::Status WorkerServiceImpl::UploadDelta(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::UploadDeltaChunk>* reader,
    v1::UploadDeltaResponse* response) {
  v1::UploadDeltaChunk chunk;
  if (!reader->Read(&chunk)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "empty upload stream");
  }
  if (!chunk.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first upload message must carry the header");
  }
  absl::StatusOr<DeltaUpload> upload =
      coordinator_->BeginUpload(chunk.header());
  if (!upload.ok()) return ToGrpcStatus(upload.status(), context);
  do {
    if (chunk.data().empty()) continue;
    absl::Status appended =
        coordinator_->AppendUpload(&*upload, chunk.offset(), chunk.data());
    if (!appended.ok()) return ToGrpcStatus(appended, context);
  } while (reader->Read(&chunk));
  return Answer(context, response,
                [&] { return coordinator_->FinishUpload(&*upload); });
}

grpc::Status WorkerServiceImpl::FetchBlob(
    grpc::ServerContext* context, const v1::FetchBlobRequest* request,
    grpc::ServerWriter<v1::BlobChunk>* writer) {
  if (absl::Status allowed = coordinator_->CheckFetchAllowed(*request);
      !allowed.ok()) {
    return ToGrpcStatus(allowed, context);
  }
  absl::StatusOr<uint64_t> size = coordinator_->blobs().Size(request->sha256());
  if (!size.ok()) return ToGrpcStatus(size.status(), context);
  if (request->offset() > *size) {
    return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                        absl::StrCat("offset ", request->offset(),
                                     " is past the blob's ", *size, " bytes"));
  }
  uint64_t offset = request->offset();
  do {
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "fetch cancelled");
    }
    absl::StatusOr<std::string> data = coordinator_->blobs().ReadRange(
        request->sha256(), offset, kMaxChunkBytes);
    if (!data.ok()) return ToGrpcStatus(data.status(), context);
    v1::BlobChunk chunk;
    chunk.set_offset(offset);
    chunk.set_total_size_bytes(*size);
    offset += data->size();
    *chunk.mutable_data() = *std::move(data);
    if (!writer->Write(chunk)) break;
  } while (offset < *size);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::GetLatestAdapter(
    grpc::ServerContext* context, const v1::GetLatestAdapterRequest* request,
    v1::GetLatestAdapterResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->GetLatestAdapter(*request); });
}

grpc::Status AdminServiceImpl::Authorize(
    const grpc::ServerContext& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "admin calls need \"authorization: Bearer <token>\"");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ") ||
      !TokensEqual(value, admin_token_)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the admin token is not valid");
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::SubmitJob(grpc::ServerContext* context,
                                         const v1::SubmitJobRequest* request,
                                         v1::SubmitJobResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  return Answer(context, response,
                [&] { return coordinator_->SubmitJob(*request); });
}

grpc::Status AdminServiceImpl::GetJob(grpc::ServerContext* context,
                                      const v1::GetJobRequest* request,
                                      v1::GetJobResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  absl::StatusOr<v1::JobStatus> job = coordinator_->GetJob(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status(), context);
  *response->mutable_job() = *std::move(job);
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::ListJobs(grpc::ServerContext* context,
                                        const v1::ListJobsRequest* request,
                                        v1::ListJobsResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  return Answer(context, response,
                [&] { return coordinator_->ListJobs(*request); });
}

grpc::Status AdminServiceImpl::CancelJob(grpc::ServerContext* context,
                                         const v1::CancelJobRequest* request,
                                         v1::CancelJobResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  return Answer(context, response,
                [&] { return coordinator_->CancelJob(*request); });
}

grpc::Status AdminServiceImpl::ListWorkers(
    grpc::ServerContext* context, const v1::ListWorkersRequest* request,
    v1::ListWorkersResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  return Answer(context, response,
                [&] { return coordinator_->ListWorkers(*request); });
}

grpc::Status AdminServiceImpl::UploadBlob(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::UploadBlobChunk>* reader,
    v1::UploadBlobResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  v1::UploadBlobChunk chunk;
  if (!reader->Read(&chunk)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "empty upload stream");
  }
  absl::StatusOr<BlobUpload> upload = coordinator_->BeginBlobUpload(chunk);
  if (!upload.ok()) return ToGrpcStatus(upload.status(), context);
  do {
    absl::Status appended = coordinator_->AppendBlobChunk(&*upload, chunk);
    if (!appended.ok()) return ToGrpcStatus(appended, context);
  } while (reader->Read(&chunk));
  return Answer(context, response,
                [&] { return coordinator_->FinishBlobUpload(&*upload); });
}

}  // namespace openforce::coordinator
