// WorkerService client; see coordinator_client.h.
#include "worker/coordinator_client.h"

#include <openssl/rand.h>

#include <chrono>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
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

absl::StatusOr<v1::RegisterResponse> CoordinatorClient::Register(
    const Ed25519PrivateKey& key, const v1::HardwareProfile& profile,
    const std::string& enrollment_token, const std::string& display_name) {
  v1::RegisterRequest request;
  const std::string public_key = key.PublicKey().Raw();
  std::string nonce(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), 32) != 1)
    return absl::InternalError("RAND_bytes failed");
  request.set_public_key(public_key);
  *request.mutable_profile() = profile;
  request.set_enrollment_token(enrollment_token);
  request.set_display_name(display_name);
  request.set_client_version("openforce-worker 0.1");
  request.set_nonce(nonce);
  ASSIGN_OR_RETURN(std::string proof,
                   key.Sign(RegistrationProofMessage(public_key, nonce)));
  request.set_proof_of_possession(proof);
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(30));
  v1::RegisterResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Register(&context, request, &response),
                                 context, "Register"));
  if (response.max_chunk_bytes() > 0)
    max_chunk_bytes_ = std::min(response.max_chunk_bytes(), kMaxChunkBytes);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> CoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(10));
  v1::HeartbeatResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Heartbeat(&context, request, &response),
                                 context, "Heartbeat"));
  return response;
}

absl::StatusOr<v1::LeaseWorkUnitResponse> CoordinatorClient::Lease(
    const v1::LeaseWorkUnitRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(30));
  v1::LeaseWorkUnitResponse response;
  RETURN_IF_ERROR(
      FromGrpcStatus(stub_->LeaseWorkUnit(&context, request, &response),
                     context, "LeaseWorkUnit"));
  return response;
}

absl::Status CoordinatorClient::Release(const std::string& worker_id,
                                        const std::string& unit_id,
                                        const std::string& reason) {
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::seconds(10));
  v1::ReleaseWorkUnitRequest request;
  request.set_worker_id(worker_id);
  request.set_unit_id(unit_id);
  request.set_reason(reason);
  v1::ReleaseWorkUnitResponse response;
  return FromGrpcStatus(stub_->ReleaseWorkUnit(&context, request, &response),
                        context, "ReleaseWorkUnit");
}

absl::Status CoordinatorClient::FetchBlob(const std::string& worker_id,
                                          const v1::BlobRef& blob,
                                          BlobStore* store) {
  if (store->Contains(blob.sha256())) return absl::OkStatus();
  const std::string upload_id = "f" + blob.sha256();
  ASSIGN_OR_RETURN(uint64_t offset, store->UploadOffset(upload_id));
  if (offset < blob.size_bytes()) {
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::minutes(60));
    v1::FetchBlobRequest request;
    request.set_worker_id(worker_id);
    request.set_sha256(blob.sha256());
    request.set_offset(offset);
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
    RETURN_IF_ERROR(finished);
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
  {
    grpc::ClientContext context;
    SetDeadline(&context, std::chrono::seconds(30));
    v1::GetUploadOffsetRequest request;
    request.set_worker_id(header.worker_id());
    request.set_unit_id(header.unit_id());
    request.set_content_hash(header.content_hash());
    v1::GetUploadOffsetResponse response;
    RETURN_IF_ERROR(
        FromGrpcStatus(stub_->GetUploadOffset(&context, request, &response),
                       context, "GetUploadOffset"));
    offset = std::min(response.offset(), header.size_bytes());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  in.seekg(static_cast<std::streamoff>(offset));
  grpc::ClientContext context;
  SetDeadline(&context, std::chrono::minutes(30));
  v1::UploadDeltaResponse response;
  auto writer = stub_->UploadDelta(&context, &response);
  std::string buffer(max_chunk_bytes_, '\0');
  v1::UploadDeltaChunk chunk;
  *chunk.mutable_header() = header;
  chunk.set_offset(offset);
  bool more = writer->Write(chunk);
  while (more && offset < header.size_bytes()) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (got == 0) break;
    v1::UploadDeltaChunk data;
    data.set_offset(offset);
    data.set_data(buffer.data(), got);
    offset += got;
    more = writer->Write(data);
  }
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish(), context, "UploadDelta"));
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
