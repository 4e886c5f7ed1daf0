// WorkerService client; see coordinator_client.h.
#include "worker/coordinator_client.h"

#include <openssl/rand.h>

#include <chrono>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/call_signing.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::worker {
namespace {

void SetDeadline(grpc::ClientContext* context, std::chrono::seconds seconds) {
  context->set_deadline(std::chrono::system_clock::now() + seconds);
}

}  // namespace

bool IsTransient(const absl::Status& status) {
  if (RejectReasonOf(status) != v1::REJECT_REASON_UNSPECIFIED) return false;
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsResourceExhausted(status) || absl::IsAborted(status);
}

absl::StatusOr<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Connect(
    const std::string& address, const TransportOptions& transport) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(address, transport));
  return std::unique_ptr<CoordinatorClient>(
      new CoordinatorClient(std::move(channel)));
}

CoordinatorClient::CoordinatorClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::WorkerService::NewStub(channel)) {}

std::string CoordinatorClient::worker_id() const {
  absl::MutexLock lock(&mu_);
  return session_.worker_id;
}

absl::StatusOr<v1::RegisterResponse> CoordinatorClient::Register(
    const Ed25519PrivateKey& key, const v1::HardwareProfile& profile,
    const std::string& enrollment_token, const std::string& display_name) {
  Registration registration;
  registration.key = &key;
  registration.profile = profile;
  registration.enrollment_token = enrollment_token;
  registration.display_name = display_name;
  {
    absl::MutexLock lock(&mu_);
    registration_ = registration;
  }
  return RegisterNow(registration);
}

absl::StatusOr<v1::RegisterResponse> CoordinatorClient::RegisterNow(
    const Registration& registration) {
  if (registration.key == nullptr)
    return absl::FailedPreconditionError("Register has not been called");
  v1::RegisterRequest request;
  const std::string public_key = registration.key->PublicKey().Raw();
  std::string nonce(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), 32) != 1)
    return absl::InternalError("RAND_bytes failed");
  request.set_public_key(public_key);
  *request.mutable_profile() = registration.profile;
  request.set_enrollment_token(registration.enrollment_token);
  request.set_display_name(registration.display_name);
  request.set_client_version("openforce-worker 0.1");
  request.set_nonce(nonce);
  ASSIGN_OR_RETURN(
      std::string proof,
      registration.key->Sign(RegistrationProofMessage(public_key, nonce)));
  request.set_proof_of_possession(proof);
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(30));
  v1::RegisterResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Register(&context, request, &response),
                                 context, "Register"));
  absl::MutexLock lock(&mu_);
  session_.worker_id = response.worker_id();
  session_.session_id = response.session_id();
  counter_ = 0;
  if (response.max_chunk_bytes() > 0)
    max_chunk_bytes_ = std::min(response.max_chunk_bytes(), kMaxChunkBytes);
  return response;
}

template <typename Request>
absl::StatusOr<CoordinatorClient::Session> CoordinatorClient::Sign(
    absl::string_view method, Request* request) {
  Session session;
  uint64_t counter;
  const Ed25519PrivateKey* key;
  {
    absl::MutexLock lock(&mu_);
    if (registration_.key == nullptr)
      return absl::FailedPreconditionError("Register has not been called");
    session = session_;
    counter = ++counter_;
    key = registration_.key;
  }
  RETURN_IF_ERROR(SignCall(*key, method, session.worker_id, session.session_id,
                           counter, request));
  return session;
}

template <typename Call>
absl::Status CoordinatorClient::WithSession(Call call) {
  std::string used_session;
  absl::Status status = call(&used_session);
  if (RejectReasonOf(status) != v1::REJECT_UNKNOWN_SESSION) return status;
  Registration registration;
  bool renew;
  {
    absl::MutexLock lock(&mu_);
    registration = registration_;
    // Another thread may have registered again already; then just retry.
    renew = session_.session_id == used_session;
  }
  if (renew) RETURN_IF_ERROR(RegisterNow(registration).status());
  return call(&used_session);
}

absl::StatusOr<v1::HeartbeatResponse> CoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  v1::HeartbeatResponse response;
  RETURN_IF_ERROR(WithSession([&](std::string* session) -> absl::Status {
    v1::HeartbeatRequest signed_request = request;
    ASSIGN_OR_RETURN(Session used, Sign(kHeartbeatMethod, &signed_request));
    *session = used.session_id;
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::seconds(10));
    return FromGrpcStatus(stub_->Heartbeat(&context, signed_request, &response),
                          context, "Heartbeat");
  }));
  return response;
}

absl::StatusOr<v1::LeaseWorkUnitResponse> CoordinatorClient::Lease(
    const v1::LeaseWorkUnitRequest& request) {
  v1::LeaseWorkUnitResponse response;
  RETURN_IF_ERROR(WithSession([&](std::string* session) -> absl::Status {
    v1::LeaseWorkUnitRequest signed_request = request;
    ASSIGN_OR_RETURN(Session used, Sign(kLeaseMethod, &signed_request));
    *session = used.session_id;
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::seconds(30));
    return FromGrpcStatus(
        stub_->LeaseWorkUnit(&context, signed_request, &response), context,
        "LeaseWorkUnit");
  }));
  return response;
}

absl::Status CoordinatorClient::Release(const std::string& worker_id,
                                        const std::string& unit_id,
                                        const std::string& reason) {
  return WithSession([&](std::string* session) -> absl::Status {
    v1::ReleaseWorkUnitRequest request;
    request.set_worker_id(worker_id);
    request.set_unit_id(unit_id);
    request.set_reason(reason);
    ASSIGN_OR_RETURN(Session used, Sign(kReleaseMethod, &request));
    *session = used.session_id;
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::seconds(10));
    v1::ReleaseWorkUnitResponse response;
    return FromGrpcStatus(stub_->ReleaseWorkUnit(&context, request, &response),
                          context, "ReleaseWorkUnit");
  });
}

absl::StatusOr<v1::SubmitValidationResponse>
CoordinatorClient::SubmitValidation(const v1::ValidationReport& report) {
  v1::SubmitValidationResponse response;
  absl::Status status = WithSession([&](std::string* session) -> absl::Status {
    v1::SubmitValidationRequest request;
    *request.mutable_report() = report;
    ASSIGN_OR_RETURN(Session used, Sign(kSubmitValidationMethod, &request));
    *session = used.session_id;
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::seconds(30));
    return FromGrpcStatus(stub_->SubmitValidation(&context, request, &response),
                          context, "SubmitValidation");
  });
  if (!status.ok()) return status;
  return response;
}

absl::Status CoordinatorClient::FetchBlob(const std::string& worker_id,
                                          const v1::BlobRef& blob,
                                          BlobStore* store) {
  if (!IsSha256Hex(blob.sha256())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the coordinator named a blob '", blob.sha256().substr(0, 80),
        "' that is not 64 lowercase hex digits"));
  }
  if (store->Contains(blob.sha256())) return absl::OkStatus();
  const std::string upload_id = "f" + blob.sha256();
  ASSIGN_OR_RETURN(uint64_t offset, store->UploadOffset(upload_id));
  if (offset < blob.size_bytes()) {
    RETURN_IF_ERROR(WithSession([&](std::string* session) -> absl::Status {
      grpc::ClientContext context;
      SetDeadline(&context, std::chrono::minutes(60));
      v1::FetchBlobRequest request;
      request.set_worker_id(worker_id);
      request.set_sha256(blob.sha256());
      request.set_offset(offset);
      if (!worker_id.empty()) {
        ASSIGN_OR_RETURN(Session used, Sign(kFetchBlobMethod, &request));
        *session = used.session_id;
      }
      auto reader = stub_->FetchBlob(&context, request);
      v1::BlobChunk chunk;
      absl::Status appended;
      while (reader->Read(&chunk)) {
        if (chunk.total_size_bytes() != blob.size_bytes() ||
            chunk.offset() != offset ||
            chunk.data().size() > blob.size_bytes() - offset) {
          appended = absl::DataLossError(absl::StrCat(
              "blob ", blob.sha256(), " arrived inconsistent with its size ",
              blob.size_bytes()));
          context.TryCancel();
          break;
        }
        appended = store->AppendUpload(upload_id, offset, chunk.data());
        if (!appended.ok()) {
          context.TryCancel();
          break;
        }
        offset += chunk.data().size();
      }
      absl::Status finished = FromGrpcStatus(
          reader->Finish(), context, absl::StrCat("FetchBlob ", blob.sha256()));
      RETURN_IF_ERROR(appended);
      return finished;
    }));
  }
  if (offset != blob.size_bytes()) {
    return absl::UnavailableError(absl::StrCat("blob ", blob.sha256(),
                                               " stopped at ", offset, " of ",
                                               blob.size_bytes(), " bytes"));
  }
  return store->CommitUpload(upload_id, blob.sha256()).status();
}

absl::StatusOr<v1::UploadDeltaResponse> CoordinatorClient::UploadDelta(
    const v1::DeltaHeader& header, const std::string& path) {
  uint64_t offset = 0;
  RETURN_IF_ERROR(WithSession([&](std::string* session) -> absl::Status {
    v1::GetUploadOffsetRequest request;
    request.set_worker_id(header.worker_id());
    request.set_unit_id(header.unit_id());
    request.set_content_hash(header.content_hash());
    ASSIGN_OR_RETURN(Session used, Sign(kUploadOffsetMethod, &request));
    *session = used.session_id;
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::seconds(30));
    v1::GetUploadOffsetResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->GetUploadOffset(&context, request, &response),
                       context, "GetUploadOffset"));
    offset = std::min(response.offset(), header.size_bytes());
    return absl::OkStatus();
  }));
  uint32_t chunk_bytes;
  {
    absl::MutexLock lock(&mu_);
    chunk_bytes = max_chunk_bytes_;
  }
  v1::UploadDeltaResponse response;
  RETURN_IF_ERROR(WithSession([&](std::string* session) -> absl::Status {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    in.seekg(static_cast<std::streamoff>(offset));
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::minutes(30));
    auto writer = stub_->UploadDelta(&context, &response);
    std::string buffer(chunk_bytes, '\0');
    v1::UploadDeltaChunk chunk;
    *chunk.mutable_header() = header;
    chunk.set_offset(offset);
    ASSIGN_OR_RETURN(Session used, Sign(kUploadDeltaMethod, &chunk));
    *session = used.session_id;
    uint64_t sent = offset;
    bool more = writer->Write(chunk);
    while (more && sent < header.size_bytes()) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      const auto got = static_cast<size_t>(in.gcount());
      if (got == 0) break;
      v1::UploadDeltaChunk data;
      data.set_offset(sent);
      data.set_data(buffer.data(), got);
      sent += got;
      more = writer->Write(data);
    }
    writer->WritesDone();
    return FromGrpcStatus(writer->Finish(), context, "UploadDelta");
  }));
  return response;
}

absl::StatusOr<v1::GetLatestAdapterResponse> CoordinatorClient::GetAdapter(
    const std::string& job_id, uint64_t version) {
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(30));
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job_id);
  request.set_version(version);
  v1::GetLatestAdapterResponse response;
  RETURN_IF_ERROR(
      FromGrpcStatus(stub_->GetLatestAdapter(&context, request, &response),
                     context, "GetLatestAdapter"));
  return response;
}

}  // namespace openforce::worker
