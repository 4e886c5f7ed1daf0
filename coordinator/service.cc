// gRPC service handlers; see service.h.
#include "coordinator/service.h"

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/secret_token.h"
#include "common/status_macros.h"
#include "proto/channel.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {
namespace {

// What a call answers once its outcome is on disk: `outcome` unless the
// fsync that makes it durable failed. No acknowledgement, and no refusal
// that recorded something, goes out before it (group commit: concurrent
// calls share the fsync).
absl::Status Durable(Coordinator* coordinator, absl::Status outcome) {
  absl::Status synced = coordinator->Sync();
  if (!synced.ok()) {
    return absl::UnavailableError(
        absl::StrCat("the coordinator could not make its state durable (",
                     synced.message(), "); retry"));
  }
  return outcome;
}

// Runs `call` (returning StatusOr<Response>) and, once durable, moves its
// value into `response`.
template <typename Response, typename Call>
grpc::Status Answer(Coordinator* coordinator, grpc::ServerContextBase* context,
                    Response* response, Call call) {
  absl::StatusOr<Response> result = call();
  absl::Status status = Durable(coordinator, result.status());
  if (!status.ok()) return ToGrpcStatus(status, context);
  *response = *std::move(result);
  return grpc::Status::OK;
}

// What a call gets when the executor's queue is full: transient.
absl::Status CallQueueFull() {
  return absl::ResourceExhaustedError(
      "the coordinator has too many calls waiting; retry later");
}

// Runs `work` (returning grpc::Status) on the executor and finishes the call
// with its status; refuses at once when the executor's queue is full.
template <typename Work>
grpc::ServerUnaryReactor* RunUnary(CallExecutor* executor,
                                   grpc::CallbackServerContext* context,
                                   Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!executor->Submit([reactor, work]() { reactor->Finish(work()); })) {
    reactor->Finish(ToGrpcStatus(CallQueueFull(), context));
  }
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* WorkerServiceImpl::Register(
    grpc::CallbackServerContext* context, const v1::RegisterRequest* request,
    v1::RegisterResponse* response) {
  return RunUnary(executor_, context, [=] {
    return Answer(coordinator_, context, response,
                  [&] { return coordinator_->Register(*request); });
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  return RunUnary(executor_, context, [=] {
    return Answer(coordinator_, context, response,
                  [&] { return coordinator_->Heartbeat(*request); });
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::LeaseWorkUnit(
    grpc::CallbackServerContext* context,
    const v1::LeaseWorkUnitRequest* request,
    v1::LeaseWorkUnitResponse* response) {
  return RunUnary(executor_, context, [=] {
    return Answer(coordinator_, context, response,
                  [&] { return coordinator_->LeaseWorkUnit(*request); });
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::ReleaseWorkUnit(
    grpc::CallbackServerContext* context,
    const v1::ReleaseWorkUnitRequest* request, v1::ReleaseWorkUnitResponse*) {
  return RunUnary(executor_, context, [=] {
    return ToGrpcStatus(
        Durable(coordinator_, coordinator_->ReleaseWorkUnit(*request)),
        context);
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::GetUploadOffset(
    grpc::CallbackServerContext* context,
    const v1::GetUploadOffsetRequest* request,
    v1::GetUploadOffsetResponse* response) {
  return RunUnary(executor_, context, [=] {
    return Answer(coordinator_, context, response,
                  [&] { return coordinator_->GetUploadOffset(*request); });
  });
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
                     CallExecutor* executor,
                     grpc::CallbackServerContext* context,
                     v1::UploadDeltaResponse* response)
      : coordinator_(coordinator),
        streams_(streams),
        executor_(executor),
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
        Refuse(absl::InvalidArgumentError("empty upload stream"));
        return;
      }
      // Checking the delta (hashing, tensor checks) and waiting for its
      // fsync run on the executor, not on gRPC's callback threads.
      if (!executor_->Submit([this] { FinishUpload(); })) {
        Refuse(CallQueueFull());
      }
      return;
    }
    if (!upload_.has_value()) {
      if (!chunk_.has_header()) {
        Refuse(absl::InvalidArgumentError(
            "the first upload message must carry the header"));
        return;
      }
      absl::StatusOr<DeltaUpload> upload = coordinator_->BeginUpload(chunk_);
      if (!upload.ok()) {
        // A refusal may have recorded a rejected result.
        Refuse(Durable(coordinator_, upload.status()));
        return;
      }
      upload_ = *std::move(upload);
    }
    if (!chunk_.data().empty()) {
      absl::Status appended =
          coordinator_->AppendUpload(&*upload_, chunk_.offset(), chunk_.data());
      if (!appended.ok()) {
        Refuse(appended);
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
  CallExecutor* const executor_;
  grpc::CallbackServerContext* const context_;
  v1::UploadDeltaResponse* const response_;
  bool registered_ = true;
  void FinishUpload() {
    absl::StatusOr<v1::UploadDeltaResponse> finished =
        coordinator_->FinishUpload(&*upload_);
    if (absl::Status durable = Durable(coordinator_, finished.status());
        !durable.ok()) {
      Refuse(durable);
      return;
    }
    *response_ = *std::move(finished);
    // Not accepted without an error: bytes are missing, and the worker
    // resumes from the offset it was given.
    if (response_->accepted()) coordinator_->metrics().RecordUploadAccepted();
    Finish(grpc::Status::OK);
  }

  // Ends the call with `status` (an error), counted by its reason.
  void Refuse(const absl::Status& status) {
    const v1::RejectReason reason = RejectReasonOf(status);
    coordinator_->metrics().RecordUploadRejected(
        reason == v1::REJECT_REASON_UNSPECIFIED
            ? absl::StatusCodeToString(status.code())
            : v1::RejectReason_Name(reason));
    Finish(ToGrpcStatus(status, context_));
  }

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
  return new UploadDeltaReactor(coordinator_, streams_, executor_, context,
                                response);
}

grpc::ServerWriteReactor<v1::BlobChunk>* WorkerServiceImpl::FetchBlob(
    grpc::CallbackServerContext* context, const v1::FetchBlobRequest* request) {
  return new FetchBlobReactor(coordinator_, streams_, context, request);
}

grpc::ServerUnaryReactor* WorkerServiceImpl::GetLatestAdapter(
    grpc::CallbackServerContext* context,
    const v1::GetLatestAdapterRequest* request,
    v1::GetLatestAdapterResponse* response) {
  return RunUnary(executor_, context, [=] {
    return Answer(coordinator_, context, response,
                  [&] { return coordinator_->GetLatestAdapter(*request); });
  });
}

grpc::ServerUnaryReactor* WorkerServiceImpl::SubmitValidation(
    grpc::CallbackServerContext* context,
    const v1::SubmitValidationRequest* request,
    v1::SubmitValidationResponse* response) {
  return RunUnary(executor_, context, [=] {
    return Answer(coordinator_, context, response,
                  [&] { return coordinator_->SubmitValidation(*request); });
  });
}

grpc::Status AdminServiceImpl::Authorize(
    const grpc::ServerContextBase& context) const {
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

// An admin call: authorized first, then `call` as Answer runs it.
template <typename Response, typename Call>
grpc::ServerUnaryReactor* AdminServiceImpl::RunAdmin(
    grpc::CallbackServerContext* context, Response* response, Call call) {
  return RunUnary(executor_, context, [=]() -> grpc::Status {
    if (grpc::Status ok = Authorize(*context); !ok.ok()) return ok;
    return Answer(coordinator_, context, response, call);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::SubmitJob(
    grpc::CallbackServerContext* context, const v1::SubmitJobRequest* request,
    v1::SubmitJobResponse* response) {
  return RunAdmin(context, response,
                  [=] { return coordinator_->SubmitJob(*request); });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetJob(
    grpc::CallbackServerContext* context, const v1::GetJobRequest* request,
    v1::GetJobResponse* response) {
  return RunAdmin(context, response,
                  [=]() -> absl::StatusOr<v1::GetJobResponse> {
                    v1::GetJobResponse out;
                    ASSIGN_OR_RETURN(*out.mutable_job(),
                                     coordinator_->GetJob(request->job_id()));
                    return out;
                  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListJobs(
    grpc::CallbackServerContext* context, const v1::ListJobsRequest* request,
    v1::ListJobsResponse* response) {
  return RunAdmin(context, response,
                  [=] { return coordinator_->ListJobs(*request); });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CancelJob(
    grpc::CallbackServerContext* context, const v1::CancelJobRequest* request,
    v1::CancelJobResponse* response) {
  return RunAdmin(context, response,
                  [=] { return coordinator_->CancelJob(*request); });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListWorkers(
    grpc::CallbackServerContext* context, const v1::ListWorkersRequest* request,
    v1::ListWorkersResponse* response) {
  return RunAdmin(context, response,
                  [=] { return coordinator_->ListWorkers(*request); });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetStoreStatus(
    grpc::CallbackServerContext* context, const v1::GetStoreStatusRequest*,
    v1::GetStoreStatusResponse* response) {
  return RunAdmin(context, response,
                  [=] { return coordinator_->GetStoreStatus(); });
}

namespace {

// Reads an admin blob upload chunk by chunk; the first chunk is checked
// (and, without data, only asks how far an earlier upload got).
class BlobUploadReactor final
    : public grpc::ServerReadReactor<v1::UploadBlobChunk> {
 public:
  BlobUploadReactor(Coordinator* coordinator, StreamRegistry* streams,
                    grpc::CallbackServerContext* context,
                    v1::UploadBlobResponse* response, grpc::Status authorized)
      : coordinator_(coordinator),
        streams_(streams),
        context_(context),
        response_(response) {
    if (!authorized.ok()) {
      registered_ = false;
      Finish(authorized);
      return;
    }
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
      Finish(Answer(coordinator_, context_, response_,
                    [&] { return coordinator_->FinishBlobUpload(&*upload_); }));
      return;
    }
    if (!upload_.has_value()) {
      absl::StatusOr<BlobUpload> upload = coordinator_->BeginBlobUpload(chunk_);
      if (!upload.ok()) {
        Finish(ToGrpcStatus(upload.status(), context_));
        return;
      }
      upload_ = *std::move(upload);
    }
    if (absl::Status appended =
            coordinator_->AppendBlobChunk(&*upload_, chunk_);
        !appended.ok()) {
      Finish(ToGrpcStatus(appended, context_));
      return;
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
  v1::UploadBlobResponse* const response_;
  bool registered_ = true;
  v1::UploadBlobChunk chunk_;
  std::optional<BlobUpload> upload_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadBlobChunk>* AdminServiceImpl::UploadBlob(
    grpc::CallbackServerContext* context, v1::UploadBlobResponse* response) {
  return new BlobUploadReactor(coordinator_, streams_, context, response,
                               Authorize(*context));
}

}  // namespace openforce::coordinator
