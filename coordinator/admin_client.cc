// AdminService client and renderings; see admin_client.h.
#include "coordinator/admin_client.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/byte_size.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/terminal_text.h"
#include "common/tier.h"
#include "coordinator/credit.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {

absl::StatusOr<std::unique_ptr<AdminClient>> AdminClient::Connect(
    const std::string& address, const TransportOptions& transport,
    std::string admin_token) {
  if (admin_token.empty())
    return absl::InvalidArgumentError("no admin token given");
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   MakeChannel(address, transport));
  return std::unique_ptr<AdminClient>(
      new AdminClient(std::move(channel), std::move(admin_token)));
}

AdminClient::AdminClient(std::shared_ptr<grpc::Channel> channel,
                         std::string token)
    : stub_(v1::AdminService::NewStub(channel)), token_(std::move(token)) {}

void AdminClient::Authorize(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", "Bearer " + token_);
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::minutes(10));
}

absl::StatusOr<v1::BlobRef> AdminClient::UploadFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string sha256, Sha256FileHex(path));
  std::error_code error;
  const uint64_t size = std::filesystem::file_size(path, error);
  if (error)
    return absl::NotFoundError(absl::StrCat(path, ": ", error.message()));
  v1::BlobRef ref;
  ref.set_sha256(sha256);
  ref.set_size_bytes(size);
  ref.set_name(std::filesystem::path(path).filename().string());

  // Ask how far an earlier attempt got (a header with no data), then stream
  // the rest from there.
  uint64_t offset = 0;
  {
    grpc::ClientContext context;
    Authorize(&context);
    v1::UploadBlobResponse response;
    auto writer = stub_->UploadBlob(&context, &response);
    v1::UploadBlobChunk header;
    header.set_sha256(sha256);
    header.set_size_bytes(size);
    writer->Write(header);
    writer->WritesDone();
    RETURN_IF_ERROR(FromGrpcStatus(writer->Finish(), context,
                                   absl::StrCat("upload ", path)));
    if (response.complete()) return ref;
    offset = response.received_bytes();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  in.seekg(static_cast<std::streamoff>(offset));
  grpc::ClientContext context;
  Authorize(&context);
  v1::UploadBlobResponse response;
  auto writer = stub_->UploadBlob(&context, &response);
  std::string buffer(kMaxChunkBytes, '\0');
  bool first = true;
  while (offset < size || first) {
    v1::UploadBlobChunk chunk;
    if (first) {
      chunk.set_sha256(sha256);
      chunk.set_size_bytes(size);
      first = false;
    }
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<size_t>(in.gcount());
    chunk.set_offset(offset);
    chunk.set_data(buffer.data(), got);
    offset += got;
    if (!writer->Write(chunk) || got == 0) break;
  }
  writer->WritesDone();
  RETURN_IF_ERROR(
      FromGrpcStatus(writer->Finish(), context, absl::StrCat("upload ", path)));
  if (!response.complete()) {
    return absl::DataLossError(absl::StrCat(
        "upload of ", path, " stopped at ", response.received_bytes(), " of ",
        size, " bytes; run the command again to resume"));
  }
  return ref;
}

absl::Status AdminClient::UploadModel(const std::string& dir,
                                      v1::JobSpec* spec) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListModelFiles(dir));
  std::vector<ManifestFile> manifest;
  spec->clear_base_model_files();
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(v1::BlobRef ref, UploadFile(dir + "/" + name));
    manifest.push_back({ref.name(), ref.sha256()});
    *spec->add_base_model_files() = ref;
  }
  ASSIGN_OR_RETURN(std::string hash, ModelContentHash(manifest));
  spec->set_base_model_hash(hash);
  return absl::OkStatus();
}

absl::StatusOr<std::string> AdminClient::SubmitJob(const v1::JobSpec& spec) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitJobResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->SubmitJob(&context, request, &response),
                                 context, "SubmitJob"));
  return response.job_id();
}

absl::StatusOr<v1::JobStatus> AdminClient::GetJob(const std::string& job_id) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::GetJobResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->GetJob(&context, request, &response),
                                 context, "GetJob"));
  return response.job();
}

absl::StatusOr<std::vector<v1::JobStatus>> AdminClient::ListJobs() {
  std::vector<v1::JobStatus> jobs;
  std::string token;
  do {
    grpc::ClientContext context;
    Authorize(&context);
    v1::ListJobsRequest request;
    request.set_page_token(token);
    v1::ListJobsResponse response;
    RETURN_IF_ERROR(FromGrpcStatus(
        stub_->ListJobs(&context, request, &response), context, "ListJobs"));
    jobs.insert(jobs.end(), response.jobs().begin(), response.jobs().end());
    token = response.next_page_token();
  } while (!token.empty());
  return jobs;
}

absl::StatusOr<v1::JobState> AdminClient::CancelJob(const std::string& job_id,
                                                    const std::string& reason) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  request.set_reason(reason);
  v1::CancelJobResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->CancelJob(&context, request, &response),
                                 context, "CancelJob"));
  return response.state();
}

absl::StatusOr<v1::GetStoreStatusResponse> AdminClient::GetStoreStatus() {
  grpc::ClientContext context;
  Authorize(&context);
  v1::GetStoreStatusResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(
      stub_->GetStoreStatus(&context, v1::GetStoreStatusRequest(), &response),
      context, "GetStoreStatus"));
  return response;
}

absl::StatusOr<std::vector<v1::WorkerStatus>> AdminClient::ListWorkers(
    bool include_inactive) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::ListWorkersRequest request;
  request.set_include_inactive(include_inactive);
  v1::ListWorkersResponse response;
  RETURN_IF_ERROR(
      FromGrpcStatus(stub_->ListWorkers(&context, request, &response), context,
                     "ListWorkers"));
  return std::vector<v1::WorkerStatus>(response.workers().begin(),
                                       response.workers().end());
}

namespace {

std::string StateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  absl::string_view view(name);
  if (absl::ConsumePrefix(&view, "JOB_")) name = std::string(view);
  for (char& c : name) c = static_cast<char>(std::tolower(c));
  return name;
}

}  // namespace

std::string FormatJobStatus(const v1::JobStatus& job) {
  std::string out = absl::StrFormat(
      "job %s (%s): %s, round %d of %d, adapter version %d\n", job.job_id(),
      EscapeForTerminal(job.spec().name()), StateName(job.state()),
      job.current_round(), job.spec().rounds(), job.latest_adapter_version());
  if (!job.message().empty()) {
    absl::StrAppend(&out, "  ", EscapeForTerminal(job.message()), "\n");
  }
  absl::StrAppend(&out, "  aggregation: ",
                  EscapeForTerminal(job.spec().aggregation()), "\n");
  const bool svd = absl::StartsWith(job.spec().aggregation(), "svd");
  const bool validated = !job.spec().validation_set().sha256().empty();
  absl::StrAppend(&out,
                  "  round  pending  leased  accepted  rejected  train_loss  "
                  "version",
                  validated ? "  validation_loss (parent, retries)" : "",
                  svd ? "  truncation_error" : "", "\n");
  for (const v1::RoundStatus& round : job.rounds()) {
    absl::StrAppendFormat(
        &out, "  %5d  %7d  %6d  %8d  %8d  %10s  %7s", round.round(),
        round.units_pending(), round.units_leased(), round.units_accepted(),
        round.units_rejected(),
        round.units_accepted() > 0
            ? absl::StrFormat("%.4f", round.mean_train_loss())
            : std::string("-"),
        round.adapter_version() > 0 ? absl::StrCat(round.adapter_version())
                                    : std::string("open"));
    if (validated) {
      // An open round's candidate is being scored by validation units; a
      // version published without any report says so.
      const uint32_t validators =
          round.validation_units_open() + round.validation_units_reported();
      if (round.adapter_version() > 0 && round.validation_loss() > 0) {
        absl::StrAppendFormat(
            &out, "  %15.4f (%.4f, %d)", round.validation_loss(),
            round.parent_validation_loss(), round.validation_retries());
      } else if (round.adapter_version() > 0) {
        absl::StrAppend(&out, "  unscored (no validator reported)");
      } else if (validators > 0) {
        absl::StrAppendFormat(&out, "  validating: %d of %d units reported",
                              round.validation_units_reported(), validators);
      } else {
        absl::StrAppend(&out, "                 -");
      }
    }
    if (svd && round.adapter_version() > 0) {
      absl::StrAppendFormat(&out, "  %16.3g", round.truncation_error());
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

std::string FormatJobList(const std::vector<v1::JobStatus>& jobs) {
  std::string out =
      "job                name                  state       round  version\n";
  for (const v1::JobStatus& job : jobs) {
    absl::StrAppendFormat(&out, "%-18s %-21s %-11s %2d/%-3d %7d\n",
                          EscapeForTerminal(job.job_id()),
                          EscapeForTerminal(job.spec().name()),
                          StateName(job.state()), job.current_round(),
                          job.spec().rounds(), job.latest_adapter_version());
  }
  return out;
}

std::string FormatStoreStatus(const v1::GetStoreStatusResponse& status) {
  return absl::StrFormat("blobs            %d (%s)\npartial uploads  %d (%s)\n",
                         status.blob_count(), FormatBytes(status.blob_bytes()),
                         status.partial_upload_count(),
                         FormatBytes(status.partial_upload_bytes()));
}

std::string FormatWorkers(const std::vector<v1::WorkerStatus>& workers,
                          int64_t now_ms) {
  std::string out =
      "worker              name          tier        ram       credit       "
      "accepted  rejected  last seen  unit\n";
  for (const v1::WorkerStatus& worker : workers) {
    const absl::string_view tier_name =
        TierName(static_cast<Tier>(static_cast<int>(worker.profile().tier())));
    absl::StrAppendFormat(
        &out, "%-19s %-13s %-11s %-9s %-12s %8d  %8d  %7.1fs  %s\n",
        EscapeForTerminal(worker.worker_id()),
        EscapeForTerminal(worker.display_name()), tier_name,
        FormatBytes(worker.profile().ram_total_bytes()),
        FormatFlop(worker.credit_flop()), worker.units_accepted(),
        worker.units_rejected(),
        static_cast<double>(now_ms - worker.last_heartbeat_ms()) / 1000.0,
        worker.current_unit_id().empty()
            ? "-"
            : EscapeForTerminal(worker.current_unit_id()));
  }
  return out;
}

}  // namespace openforce::coordinator
