// The coordinator under test with a fake clock, a fake random source, real
// SQLite and a real blob store, and helpers that act as workers (register,
// lease, sign and deliver deltas). Shared by the coordinator's test files.
#ifndef OPENFORCE_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
#define OPENFORCE_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "coordinator/admin_client.h"
#include "coordinator/coordinator.h"
#include "coordinator/sqlite_state_store.h"
#include "lora/aggregation_rule.h"
#include "lora/federated_aggregation.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "proto/call_signing.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"
#include "tests/integration/federation.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {

inline constexpr int64_t kStart = 1'800'000'000'000;

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    task_ = testing::WriteDemoTask(dir_.path() + "/task", 40, 4);
    auto identity = Ed25519PrivateKey::Generate();
    ASSERT_OK(identity);
    auto state = OpenSqliteStateStore(dir_.path() + "/state.db");
    ASSERT_OK(state);
    // The store stamps partial uploads with the same (fake) clock.
    BlobStoreOptions blob_options;
    blob_options.now_ms = [this] { return now_; };
    auto blobs = BlobStore::Open(dir_.path() + "/blobs", blob_options);
    ASSERT_OK(blobs);
    blobs_ = blobs->get();
    CoordinatorOptions options;
    options.data_dir = dir_.path();
    options.now_ms = [this] { return now_; };
    options.random_fraction = [this] { return random_; };
    options.worker_timeout_ms = 60'000;
    options.max_open_uploads_per_worker = 1;
    auto coordinator = Coordinator::Create(
        options, *std::move(identity), *std::move(state), *std::move(blobs));
    ASSERT_OK(coordinator);
    coordinator_ = *std::move(coordinator);
  }

  v1::JobSpec Spec() {
    v1::JobSpec spec;
    spec.set_name("test");
    std::vector<ManifestFile> manifest;
    for (const char* name :
         {"config.json", "model.safetensors", "openforce_tokenizer.json"}) {
      const std::string path = task_.model_dir + "/" + name;
      auto sha = blobs_->PutFile(path);
      EXPECT_OK(sha);
      v1::BlobRef* ref = spec.add_base_model_files();
      ref->set_name(name);
      ref->set_sha256(*sha);
      ref->set_size_bytes(*blobs_->Size(*sha));
      manifest.push_back({name, *sha});
    }
    spec.set_base_model_hash(*ModelContentHash(manifest));
    auto dataset = blobs_->PutFile(task_.train_path);
    EXPECT_OK(dataset);
    spec.mutable_dataset()->set_sha256(*dataset);
    spec.mutable_lora()->set_rank(4);
    spec.mutable_lora()->set_alpha(8);
    spec.mutable_lora()->add_target_modules("q_proj");
    spec.mutable_lora()->add_target_modules("v_proj");
    spec.mutable_training()->set_learning_rate(1e-3);
    spec.mutable_training()->set_steps_per_shard(2);
    spec.mutable_training()->set_batch_size(2);
    spec.mutable_training()->set_sequence_length(12);
    spec.set_rounds(2);
    spec.set_shards_per_round(2);
    spec.set_replication(1);
    spec.set_unit_deadline_s(30);
    spec.set_max_delta_norm(10);
    // The arithmetic these tests check is FedAvg's; FFA and robust rules have
    // their own tests.
    spec.set_aggregation("fedavg");
    return spec;
  }

  std::string Submit(const v1::JobSpec& spec) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    auto response = coordinator_->SubmitJob(request);
    EXPECT_OK(response);
    return response.ok() ? response->job_id() : "";
  }

  struct Worker {
    Ed25519PrivateKey key;
    std::string id;
    std::string session;
    std::shared_ptr<uint64_t> counter = std::make_shared<uint64_t>(0);

    // Signs `request` as the worker binary does.
    template <typename Request>
    void Sign(absl::string_view method, Request* request) const {
      ASSERT_OK(
          openforce::SignCall(key, method, id, session, ++*counter, request));
    }
  };
  Worker Register(uint64_t seed, v1::Tier tier = v1::TIER_CPU) {
    std::string seed_bytes(32, static_cast<char>(seed));
    Worker worker{*Ed25519PrivateKey::FromSeed(seed_bytes), "", ""};
    v1::RegisterRequest request;
    request.set_public_key(worker.key.PublicKey().Raw());
    request.mutable_profile()->set_tier(tier);
    const std::string nonce(16, 'n');
    request.set_nonce(nonce);
    request.set_proof_of_possession(*worker.key.Sign(
        RegistrationProofMessage(request.public_key(), nonce)));
    auto response = coordinator_->Register(request);
    EXPECT_OK(response);
    worker.id = response->worker_id();
    worker.session = response->session_id();
    return worker;
  }

  absl::StatusOr<v1::LeaseWorkUnitResponse> Lease(const Worker& worker,
                                                  uint64_t memory = 16ull
                                                                    << 30) {
    v1::LeaseWorkUnitRequest request;
    request.set_worker_id(worker.id);
    request.set_free_memory_bytes(memory);
    worker.Sign(kLeaseMethod, &request);
    return coordinator_->LeaseWorkUnit(request);
  }

  // Uploads a small valid delta for `unit` through the coordinator's API.
  absl::StatusOr<v1::UploadDeltaResponse> Deliver(const Worker& worker,
                                                  const v1::WorkUnit& unit,
                                                  float value = 0.01f,
                                                  uint64_t samples = 4) {
    return DeliverBytes(worker, unit, DeltaForJob(value), samples);
  }

  // The first message of an upload of `delta`, signed as the worker binary
  // signs it.
  v1::UploadDeltaChunk FirstChunk(const Worker& worker,
                                  const v1::WorkUnit& unit,
                                  const std::string& delta,
                                  uint64_t samples = 4) {
    v1::UploadDeltaChunk first;
    v1::DeltaHeader& header = *first.mutable_header();
    header = DeltaHeaderForUnit(unit, worker.id);
    header.set_content_hash(Sha256Hex(delta));
    header.set_size_bytes(delta.size());
    header.set_sample_count(samples);
    header.set_signature(*SignPayload(worker.key, DeltaSigningPayload(header)));
    worker.Sign(kUploadDeltaMethod, &first);
    return first;
  }

  absl::StatusOr<v1::UploadDeltaResponse> DeliverBytes(const Worker& worker,
                                                       const v1::WorkUnit& unit,
                                                       const std::string& delta,
                                                       uint64_t samples = 4) {
    ASSIGN_OR_RETURN(DeltaUpload upload, coordinator_->BeginUpload(FirstChunk(
                                             worker, unit, delta, samples)));
    RETURN_IF_ERROR(coordinator_->AppendUpload(&upload, 0, delta));
    return coordinator_->FinishUpload(&upload);
  }

  // A delta for the Spec() LoRA shape (r4 on q and v) with every value
  // `value` (Spec() trains 2 steps x 2 sequences = 4 samples per unit).
  std::string DeltaForJob(float value, bool b_only = false) {
    lora::LoraConfig lora;
    lora.rank = 4;
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, shape] :
         lora::ExpectedAdapterTensors(testing::DemoModelConfig(), lora)) {
      if (b_only && lora::IsLoraAKey(name)) continue;
      tensors.emplace_back(name, at::full(shape, value));
    }
    const std::string path = absl::StrCat(dir_.path(), "/delta-", value,
                                          b_only ? "-b" : "", ".safetensors");
    EXPECT_OK(lora::WriteSafetensors(path, tensors));
    return *ReadFileToString(path);
  }

  // The job's latest published adapter (unset when none is).
  v1::SignedAdapter LatestAdapter(const std::string& job) {
    v1::GetLatestAdapterRequest request;
    request.set_job_id(job);
    auto response = coordinator_->GetLatestAdapter(request);
    EXPECT_OK(response);
    return response.ok() ? response->adapter() : v1::SignedAdapter();
  }

  // What ListWorkers says about `worker`.
  v1::WorkerStatus WorkerStatusOf(const Worker& worker) {
    v1::ListWorkersRequest request;
    request.set_include_inactive(true);
    auto workers = coordinator_->ListWorkers(request);
    EXPECT_OK(workers);
    for (const v1::WorkerStatus& status : workers->workers()) {
      if (status.worker_id() == worker.id) return status;
    }
    return v1::WorkerStatus();
  }

  v1::HeartbeatRequest HeartbeatOf(const Worker& worker,
                                   const std::string& unit = "") {
    v1::HeartbeatRequest heartbeat;
    heartbeat.set_worker_id(worker.id);
    heartbeat.set_current_unit_id(unit);
    worker.Sign(kHeartbeatMethod, &heartbeat);
    return heartbeat;
  }

  testing::TempDir dir_;
  testing::DemoTaskFiles task_;
  BlobStore* blobs_ = nullptr;
  std::unique_ptr<Coordinator> coordinator_;
  int64_t now_ = kStart;
  double random_ = 0.5;  // adaptive replication's draw
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
