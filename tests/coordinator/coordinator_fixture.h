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

// Real SQLite and blob store in a temporary directory, a fake clock and
// random source, the demo task, and the helpers that need no coordinator.
class CoordinatorTestBase : public ::testing::Test {
 protected:
  struct Stores {
    Ed25519PrivateKey identity;
    std::unique_ptr<StateStore> state;
    std::unique_ptr<BlobStore> blobs;
    CoordinatorOptions options;
  };
  // Opens the stores and options every coordinator test uses; blobs_ points
  // at the blob store.
  Stores OpenStores() {
    task_ = testing::WriteDemoTask(dir_.path() + "/task", 40, 4);
    auto identity = Ed25519PrivateKey::Generate();
    EXPECT_OK(identity);
    auto state = OpenSqliteStateStore(dir_.path() + "/state.db");
    EXPECT_OK(state);
    // The store stamps partial uploads with the same (fake) clock.
    BlobStoreOptions blob_options;
    blob_options.now_ms = [this] { return now_; };
    auto blobs = BlobStore::Open(dir_.path() + "/blobs", blob_options);
    EXPECT_OK(blobs);
    blobs_ = blobs->get();
    CoordinatorOptions options;
    options.data_dir = dir_.path();
    options.now_ms = [this] { return now_; };
    options.random_fraction = [this] { return random_; };
    options.worker_timeout_ms = 60'000;
    options.max_open_uploads_per_worker = 1;
    return {*std::move(identity), *std::move(state), *std::move(blobs),
            std::move(options)};
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
  // A worker with the key of `seed`, not yet registered.
  static Worker NewWorker(uint64_t seed) {
    std::string seed_bytes(32, static_cast<char>(seed));
    return Worker{*Ed25519PrivateKey::FromSeed(seed_bytes), "", ""};
  }
  // The request that registers `worker`, with proof of possession.
  static v1::RegisterRequest RegisterRequestOf(const Worker& worker,
                                               v1::Tier tier) {
    v1::RegisterRequest request;
    request.set_public_key(worker.key.PublicKey().Raw());
    request.mutable_profile()->set_tier(tier);
    const std::string nonce(16, 'n');
    request.set_nonce(nonce);
    request.set_proof_of_possession(*worker.key.Sign(
        RegistrationProofMessage(request.public_key(), nonce)));
    return request;
  }
  static v1::LeaseWorkUnitRequest LeaseRequestOf(const Worker& worker,
                                                 uint64_t memory = 16ull
                                                                   << 30) {
    v1::LeaseWorkUnitRequest request;
    request.set_worker_id(worker.id);
    request.set_free_memory_bytes(memory);
    worker.Sign(kLeaseMethod, &request);
    return request;
  }
  // The first message of an upload of `delta`, signed as the worker binary
  // signs it.
  static v1::UploadDeltaChunk FirstChunk(const Worker& worker,
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

  static v1::HeartbeatRequest HeartbeatOf(const Worker& worker,
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
  int64_t now_ = kStart;
  double random_ = 0.5;  // adaptive replication's draw
};

// The coordinator under test, and helpers that act as workers through it.
class CoordinatorTest : public CoordinatorTestBase {
 protected:
  void SetUp() override {
    Stores stores = OpenStores();
    auto coordinator = Coordinator::Create(
        std::move(stores.options), std::move(stores.identity),
        std::move(stores.state), std::move(stores.blobs));
    ASSERT_OK(coordinator);
    coordinator_ = *std::move(coordinator);
  }

  std::string Submit(const v1::JobSpec& spec) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    auto response = coordinator_->SubmitJob(request);
    EXPECT_OK(response);
    return response.ok() ? response->job_id() : "";
  }

  Worker Register(uint64_t seed, v1::Tier tier = v1::TIER_CPU) {
    Worker worker = NewWorker(seed);
    auto response = coordinator_->Register(RegisterRequestOf(worker, tier));
    EXPECT_OK(response);
    worker.id = response->worker_id();
    worker.session = response->session_id();
    return worker;
  }

  absl::StatusOr<v1::LeaseWorkUnitResponse> Lease(const Worker& worker,
                                                  uint64_t memory = 16ull
                                                                    << 30) {
    return coordinator_->LeaseWorkUnit(LeaseRequestOf(worker, memory));
  }

  // Uploads a small valid delta for `unit` through the coordinator's API.
  absl::StatusOr<v1::UploadDeltaResponse> Deliver(const Worker& worker,
                                                  const v1::WorkUnit& unit,
                                                  float value = 0.01f,
                                                  uint64_t samples = 4) {
    return DeliverBytes(worker, unit, DeltaForJob(value), samples);
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

  std::unique_ptr<Coordinator> coordinator_;
};

// One CoordinatorCore on the same stores, for the tests of each part
// (scheduler, delta intake, round closer, job planner, reporter): a test
// builds the parts it exercises on core_, without the Coordinator that
// composes them.
class CoordinatorPartsTest : public CoordinatorTestBase {
 protected:
  void SetUp() override {
    Stores stores = OpenStores();
    // Coordinator::Create makes it; the planner writes the initial adapter
    // there.
    ASSERT_OK(MakeDirectories(dir_.path() + "/tmp"));
    core_ = std::make_unique<CoordinatorCore>(
        std::move(stores.options), std::move(stores.identity),
        std::move(stores.state), std::move(stores.blobs));
  }

  StateStore& state() { return core_->state(); }

  std::string Submit(JobPlanner& planner, const v1::JobSpec& spec) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    auto response = planner.SubmitJob(request);
    EXPECT_OK(response);
    return response.ok() ? response->job_id() : "";
  }

  Worker Register(Scheduler& scheduler, uint64_t seed,
                  v1::Tier tier = v1::TIER_CPU) {
    Worker worker = NewWorker(seed);
    auto response = scheduler.Register(RegisterRequestOf(worker, tier));
    EXPECT_OK(response);
    if (response.ok()) {
      worker.id = response->worker_id();
      worker.session = response->session_id();
    }
    return worker;
  }

  // Leases a unit for `worker`; fails the test when none is offered.
  v1::WorkUnit LeaseOne(Scheduler& scheduler, const Worker& worker) {
    auto leased = scheduler.LeaseWorkUnit(LeaseRequestOf(worker));
    EXPECT_OK(leased);
    EXPECT_TRUE(leased.ok() && leased->has_unit());
    return leased.ok() ? leased->unit() : v1::WorkUnit();
  }

  absl::StatusOr<v1::UploadDeltaResponse> Deliver(DeltaIntake& intake,
                                                  const Worker& worker,
                                                  const v1::WorkUnit& unit,
                                                  const std::string& delta) {
    ASSIGN_OR_RETURN(DeltaUpload upload,
                     intake.BeginUpload(FirstChunk(worker, unit, delta)));
    RETURN_IF_ERROR(intake.AppendUpload(&upload, 0, delta));
    return intake.FinishUpload(&upload);
  }

  std::unique_ptr<CoordinatorCore> core_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_TESTS_COORDINATOR_COORDINATOR_FIXTURE_H_
