// gRPC service handlers; see service.h.
#include "coordinator/service.h"

#include <optional>

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

namespace {

// What a stream beyond StreamLimits::max_open_streams gets: transient, so a
// worker backs off and retries.
grpc::Status TooManyStreams() {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "too many streams open on this coordinator; retry later");
}

// Reads an upload chunk by chunk: the first message is checked before any
// byte is stored, each chunk is appended durably, and the end of the stream
// finishes (checks and, when it passes, accepts) the delta.
class UploadDeltaReactor final
    : public grpc::ServerReadReactor<v1::UploadDeltaChunk> {
 public:
  UploadDeltaReactor(Coordinator* coordinator, StreamRegistry* streams,
                     grpc::CallbackServerContext* context,
                     v1::UploadDeltaResponse* response)
      : coordinator_(coordinator),
        streams_(streams),
        context_(context),
        response_(response) {
    registered_ = streams_->Add(context_);
    if (!registered_) {
      Finish(TooManyStreams());
      return;
    }
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    streams_->Touch(context_);
    if (!ok) {
      if (!upload_.has_value()) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "empty upload stream"));
        return;
      }
      absl::StatusOr<v1::UploadDeltaResponse> finished =
          coordinator_->FinishUpload(&*upload_);
      if (!finished.ok()) {
        Finish(ToGrpcStatus(finished.status(), context_));
        return;
      }
      *response_ = *std::move(finished);
      Finish(grpc::Status::OK);
      return;
    }
    if (!upload_.has_value()) {
      if (!chunk_.has_header()) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "the first upload message must carry the header"));
        return;
      }
      absl::StatusOr<DeltaUpload> upload = coordinator_->BeginUpload(chunk_);
      if (!upload.ok()) {
        Finish(ToGrpcStatus(upload.status(), context_));
        return;
      }
      upload_ = *std::move(upload);
    }
    if (!chunk_.data().empty()) {
      absl::Status appended =
          coordinator_->AppendUpload(&*upload_, chunk_.offset(), chunk_.data());
      if (!appended.ok()) {
        Finish(ToGrpcStatus(appended, context_));
        return;
      }
    }
    StartRead(&chunk_);
  }

  void OnDone() override {
    if (registered_) streams_->Remove(context_);
    delete this;
  }

 private:
  Coordinator* const coordinator_;
  StreamRegistry* const streams_;
  grpc::CallbackServerContext* const context_;
  v1::UploadDeltaResponse* const response_;
  bool registered_ = true;
  v1::UploadDeltaChunk chunk_;
  std::optional<DeltaUpload> upload_;
};

// Streams a blob from an offset, one chunk in flight at a time; a reader
// that stops reading holds a reactor, not a thread.
class FetchBlobReactor final : public grpc::ServerWriteReactor<v1::BlobChunk> {
 public:
  FetchBlobReactor(Coordinator* coordinator, StreamRegistry* streams,
                   grpc::CallbackServerContext* context,
                   const v1::FetchBlobRequest* request)
      : coordinator_(coordinator),
        streams_(streams),
        context_(context),
        sha256_(request->sha256()),
        offset_(request->offset()) {
    registered_ = streams_->Add(context_);
    if (!registered_) {
      Finish(TooManyStreams());
      return;
    }
    if (absl::Status allowed = coordinator_->CheckFetchAllowed(*request);
        !allowed.ok()) {
      Finish(ToGrpcStatus(allowed, context_));
      return;
    }
    absl::StatusOr<uint64_t> size = coordinator_->blobs().Size(sha256_);
    if (!size.ok()) {
      Finish(ToGrpcStatus(size.status(), context_));
      return;
    }
    size_ = *size;
    if (offset_ > size_) {
      Finish(
          grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                       absl::StrCat("offset ", offset_, " is past the blob's ",
                                    size_, " bytes")));
      return;
    }
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    streams_->Touch(context_);
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "fetch cancelled"));
      return;
    }
    if (offset_ >= size_) {
      Finish(grpc::Status::OK);
      return;
    }
    WriteNext();
  }

  void OnDone() override {
    if (registered_) streams_->Remove(context_);
    delete this;
  }

 private:
  void WriteNext() {
    absl::StatusOr<std::string> data =
        coordinator_->blobs().ReadRange(sha256_, offset_, kMaxChunkBytes);
    if (!data.ok()) {
      Finish(ToGrpcStatus(data.status(), context_));
      return;
    }
    chunk_.Clear();
    chunk_.set_offset(offset_);
    chunk_.set_total_size_bytes(size_);
    offset_ += data->size();
    *chunk_.mutable_data() = *std::move(data);
    StartWrite(&chunk_);
  }

  Coordinator* const coordinator_;
  StreamRegistry* const streams_;
  grpc::CallbackServerContext* const context_;
  const std::string sha256_;
  uint64_t offset_;
  uint64_t size_ = 0;
  bool registered_ = true;
  v1::BlobChunk chunk_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadDeltaChunk>* WorkerServiceImpl::UploadDelta(
    grpc::CallbackServerContext* context, v1::UploadDeltaResponse* response) {
  return new UploadDeltaReactor(coordinator_, streams_, context, response);
}

grpc::ServerWriteReactor<v1::BlobChunk>* WorkerServiceImpl::FetchBlob(
    grpc::CallbackServerContext* context, const v1::FetchBlobRequest* request) {
  return new FetchBlobReactor(coordinator_, streams_, context, request);
}

grpc::Status WorkerServiceImpl::GetLatestAdapter(
    grpc::ServerContext* context, const v1::GetLatestAdapterRequest* request,
    v1::GetLatestAdapterResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->GetLatestAdapter(*request); });
}

grpc::Status WorkerServiceImpl::SubmitValidation(
    grpc::ServerContext* context, const v1::SubmitValidationRequest* request,
    v1::SubmitValidationResponse* response) {
  return Answer(context, response,
                [&] { return coordinator_->SubmitValidation(*request); });
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

grpc::Status AdminServiceImpl::GetStoreStatus(
    grpc::ServerContext* context, const v1::GetStoreStatusRequest*,
    v1::GetStoreStatusResponse* response) {
  if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
  return Answer(context, response,
                [&] { return coordinator_->GetStoreStatus(); });
}

}  // namespace openforce::coordinator
