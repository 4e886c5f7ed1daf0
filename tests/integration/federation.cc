// The loopback federation for integration tests; see federation.h.
#include "tests/integration/federation.h"

#include <ATen/ATen.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "grpcpp/create_channel.h"
#include "lora/adapter_delta.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "proto/channel.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::testing {
namespace {

std::string Must(absl::StatusOr<std::string> value) {
  if (!value.ok()) throw std::runtime_error(value.status().ToString());
  return *std::move(value);
}

}  // namespace

Federation::Federation(std::string root) : root_(std::move(root)) {
  task_ = WriteDemoTask(root_ + "/task");
  ProcessResult keygen =
      RunProcess({OPENFORCE_COORDINATOR_PATH, "keygen", "--data", data_dir()});
  if (keygen.exit_code != 0)
    throw std::runtime_error("keygen failed: " + keygen.stderr_text);
}

Federation::~Federation() {
  for (auto& worker : workers_) worker->Signal(SIGKILL);
  if (coordinator_ != nullptr) coordinator_->Signal(SIGKILL);
}

void Federation::StartCoordinator(const std::vector<std::string>& extra_flags,
                                  const std::string& listen) {
  const std::string address_file = data_dir() + "/coordinator.address";
  std::filesystem::remove(address_file);
  std::vector<std::string> argv = {OPENFORCE_COORDINATOR_PATH,
                                   "serve",
                                   "--data",
                                   data_dir(),
                                   "--listen",
                                   listen,
                                   "--heartbeat-interval-ms",
                                   "300",
                                   "--lease-retry-ms",
                                   "200"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  coordinator_ = std::make_unique<ChildProcess>(
      argv,
      absl::StrCat(root_, "/coordinator-", ++coordinator_starts_, ".log"));
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<std::string> text = ReadFileToString(address_file);
    if (text.ok() && !text->empty()) {
      address_ = text->substr(0, text->find('\n'));
      admin_.reset();
      return;
    }
    if (!coordinator_->running()) break;
    usleep(50 * 1000);
  }
  throw std::runtime_error("coordinator did not start: " + coordinator_->Log());
}

coordinator::AdminClient& Federation::admin() {
  if (admin_ == nullptr) {
    absl::StatusOr<std::string> token =
        ReadFileToString(data_dir() + "/admin.token");
    if (!token.ok()) throw std::runtime_error("no admin token");
    auto client = coordinator::AdminClient::Connect(
        address_, {}, token->substr(0, token->find('\n')));
    if (!client.ok()) throw std::runtime_error(client.status().ToString());
    admin_ = *std::move(client);
  }
  return *admin_;
}

std::unique_ptr<v1::WorkerService::Stub> Federation::WorkerStub() const {
  auto channel = MakeChannel(address_, {});
  if (!channel.ok()) throw std::runtime_error(channel.status().ToString());
  return v1::WorkerService::NewStub(*channel);
}

v1::JobSpec Federation::DemoSpec(uint32_t rounds, uint32_t shards,
                                 int32_t steps) const {
  v1::JobSpec spec;
  spec.set_name("lookup");
  spec.mutable_lora()->set_rank(8);
  spec.mutable_lora()->set_alpha(16);
  spec.mutable_lora()->set_dropout(0.05);
  for (const char* target : {"q_proj", "k_proj", "v_proj", "o_proj",
                             "gate_proj", "up_proj", "down_proj"}) {
    spec.mutable_lora()->add_target_modules(target);
  }
  v1::TrainingConfig* training = spec.mutable_training();
  training->set_learning_rate(1e-2);
  training->set_steps_per_shard(steps);
  training->set_batch_size(16);
  training->set_sequence_length(12);
  training->set_seed(7);
  training->set_warmup_steps(5);
  training->set_max_grad_norm(1.0);
  spec.set_rounds(rounds);
  spec.set_shards_per_round(shards);
  spec.set_replication(1);
  spec.set_min_tier(v1::TIER_CPU);
  spec.set_unit_deadline_s(120);
  spec.set_max_delta_norm(50);
  return spec;
}

std::string Federation::Submit(v1::JobSpec spec,
                               const std::string& dataset_path) {
  absl::Status uploaded = admin().UploadModel(task_.model_dir, &spec);
  if (!uploaded.ok()) throw std::runtime_error(uploaded.ToString());
  auto dataset = admin().UploadFile(dataset_path.empty() ? task_.train_path
                                                         : dataset_path);
  if (!dataset.ok()) throw std::runtime_error(dataset.status().ToString());
  *spec.mutable_dataset() = *dataset;
  return Must(admin().SubmitJob(spec));
}

ChildProcess& Federation::StartWorker(
    const std::string& name, const std::vector<std::string>& extra_flags) {
  std::vector<std::string> argv = {
      OPENFORCE_WORKER_PATH, "run", "--coordinator", address_, "--data",
      root_ + "/" + name, "--name", name, "--threads", "1", "--measure=false",
      // Tests share the machine with each other:
      // load must not pause these workers
      // unless a test asks for it.
      "--max-other-cpu", "1", "--idle-for", "0s"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  workers_.push_back(
      std::make_unique<ChildProcess>(argv, root_ + "/" + name + ".log"));
  return *workers_.back();
}

v1::JobStatus Federation::WaitForJob(
    const std::string& job_id,
    const std::function<bool(const v1::JobStatus&)>& done,
    double timeout_seconds) {
  v1::JobStatus last;
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<v1::JobStatus> status = admin().GetJob(job_id);
    if (status.ok()) {
      last = *status;
      if (done(last)) return last;
    }
    usleep(200 * 1000);
  }
  return last;
}

ScriptedWorker::ScriptedWorker(v1::WorkerService::Stub* stub, uint64_t seed)
    : stub_(stub), key_([seed] {
        std::string seed_bytes(32, '\0');
        for (int i = 0; i < 8; ++i)
          seed_bytes[i] = static_cast<char>((seed >> (8 * i)) & 0xff);
        auto key = Ed25519PrivateKey::FromSeed(seed_bytes);
        if (!key.ok()) throw std::runtime_error(key.status().ToString());
        return *std::move(key);
      }()) {}

grpc::Status ScriptedWorker::Register(const std::string& enrollment_token,
                                      const std::string& display_name) {
  v1::RegisterRequest request;
  request.set_public_key(key_.PublicKey().Raw());
  request.mutable_profile()->set_tier(v1::TIER_CPU);
  request.mutable_profile()->set_ram_available_bytes(16ull << 30);
  request.set_enrollment_token(enrollment_token);
  request.set_display_name(display_name);
  const std::string nonce(16, 'n');
  request.set_nonce(nonce);
  request.set_proof_of_possession(
      Must(key_.Sign(RegistrationProofMessage(request.public_key(), nonce))));
  grpc::ClientContext context;
  v1::RegisterResponse response;
  grpc::Status status = stub_->Register(&context, request, &response);
  if (status.ok()) {
    worker_id_ = response.worker_id();
    session_id_ = response.session_id();
    counter_ = 0;
  }
  return status;
}

namespace {

v1::RejectReason ReasonOf(const grpc::Status& status,
                          const grpc::ClientContext& context) {
  return RejectReasonOf(FromGrpcStatus(status, context, ""));
}

}  // namespace

grpc::Status ScriptedWorker::Heartbeat(const std::string& current_unit_id,
                                       std::vector<std::string>* revoked) {
  grpc::ClientContext context;
  v1::HeartbeatRequest request;
  request.set_worker_id(worker_id_);
  request.set_availability(v1::AVAILABLE);
  request.set_current_unit_id(current_unit_id);
  SignCall(kHeartbeatMethod, &request);
  v1::HeartbeatResponse response;
  grpc::Status status = stub_->Heartbeat(&context, request, &response);
  if (revoked != nullptr) {
    revoked->assign(response.revoked_unit_ids().begin(),
                    response.revoked_unit_ids().end());
  }
  return status;
}

grpc::Status ScriptedWorker::TryLease(v1::LeaseWorkUnitResponse* response,
                                      v1::RejectReason* reason) {
  grpc::ClientContext context;
  v1::LeaseWorkUnitRequest request;
  request.set_worker_id(worker_id_);
  request.set_free_memory_bytes(16ull << 30);
  SignCall(kLeaseMethod, &request);
  grpc::Status status = stub_->LeaseWorkUnit(&context, request, response);
  if (reason != nullptr) *reason = ReasonOf(status, context);
  return status;
}

v1::WorkUnit ScriptedWorker::Lease() {
  (void)Heartbeat();
  v1::LeaseWorkUnitResponse response;
  grpc::Status status = TryLease(&response);
  if (!status.ok()) throw std::runtime_error(status.error_message());
  return response.unit();
}

grpc::Status ScriptedWorker::Release(const std::string& unit_id,
                                     v1::RejectReason* reason) {
  grpc::ClientContext context;
  v1::ReleaseWorkUnitRequest request;
  request.set_worker_id(worker_id_);
  request.set_unit_id(unit_id);
  SignCall(kReleaseMethod, &request);
  v1::ReleaseWorkUnitResponse response;
  grpc::Status status = stub_->ReleaseWorkUnit(&context, request, &response);
  if (reason != nullptr) *reason = ReasonOf(status, context);
  return status;
}

grpc::Status ScriptedWorker::Fetch(const std::string& sha256, std::string* data,
                                   bool anonymous, v1::RejectReason* reason) {
  grpc::ClientContext context;
  v1::FetchBlobRequest request;
  request.set_sha256(sha256);
  if (!anonymous) {
    request.set_worker_id(worker_id_);
    SignCall(kFetchBlobMethod, &request);
  }
  auto reader = stub_->FetchBlob(&context, request);
  v1::BlobChunk chunk;
  data->clear();
  while (reader->Read(&chunk)) data->append(chunk.data());
  grpc::Status status = reader->Finish();
  if (reason != nullptr) *reason = ReasonOf(status, context);
  return status;
}

void ScriptedWorker::Sign(v1::DeltaHeader* header,
                          const Ed25519PrivateKey* signer) const {
  header->set_signature(Must(SignPayload(signer != nullptr ? *signer : key_,
                                         DeltaSigningPayload(*header))));
}

v1::DeltaHeader ScriptedWorker::MakeHeader(
    const v1::WorkUnit& unit, const std::string& bytes,
    const Ed25519PrivateKey* signer) const {
  v1::DeltaHeader header = DeltaHeaderForUnit(unit, worker_id_);
  header.set_content_hash(Sha256Hex(bytes));
  header.set_size_bytes(bytes.size());
  // What the job's settings say the unit trains on, as an honest worker
  // reports it.
  header.set_sample_count(
      uint64_t(unit.training().steps_per_shard()) *
      uint64_t(unit.training().batch_size()) *
      uint64_t(std::max(1, unit.training().gradient_accumulation())));
  (*header.mutable_metrics())["train_loss"] = 1.0;
  Sign(&header, signer);
  return header;
}

ScriptedWorker::UploadResult ScriptedWorker::Upload(
    const v1::DeltaHeader& header, const std::string& bytes, uint64_t offset) {
  UploadResult result;
  grpc::ClientContext context;
  auto writer = stub_->UploadDelta(&context, &result.response);
  v1::UploadDeltaChunk chunk;
  *chunk.mutable_header() = header;
  chunk.set_offset(offset);
  SignCall(kUploadDeltaMethod, &chunk);
  writer->Write(chunk);
  v1::UploadDeltaChunk data;
  data.set_offset(offset);
  data.set_data(bytes.substr(std::min<size_t>(offset, bytes.size())));
  writer->Write(data);
  writer->WritesDone();
  result.status = writer->Finish();
  result.reason = RejectReasonOf(FromGrpcStatus(result.status, context, ""));
  return result;
}

std::string MakeDeltaBytes(const std::string& dir, int64_t rank, float value) {
  lora::LoraConfig config;
  config.rank = rank;
  config.targets.assign(std::begin(lora::kAllProjections),
                        std::end(lora::kAllProjections));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, shape] :
       lora::ExpectedAdapterTensors(DemoModelConfig(), config)) {
    tensors.emplace_back(name, at::full(shape, value));
  }
  const std::string path =
      absl::StrCat(dir, "/delta-r", rank, "-", value, ".safetensors");
  absl::Status written = lora::WriteSafetensors(path, tensors);
  if (!written.ok()) throw std::runtime_error(written.ToString());
  return Must(ReadFileToString(path));
}

}  // namespace openforce::testing
