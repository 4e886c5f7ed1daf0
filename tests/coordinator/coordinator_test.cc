// The coordinator's logic with a fake clock, real SQLite and a real blob
// store: job validation, scheduling by tier and memory, replication to
// distinct workers, lease expiry and revocation, round deadlines.
#include "coordinator/coordinator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "coordinator/sqlite_state_store.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"
#include "tests/integration/federation.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kStart = 1'800'000'000'000;

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    task_ = testing::WriteDemoTask(dir_.path() + "/task", 40, 4);
    auto identity = Ed25519PrivateKey::Generate();
    ASSERT_OK(identity);
    auto state = OpenSqliteStateStore(dir_.path() + "/state.db");
    ASSERT_OK(state);
    auto blobs = BlobStore::Open(dir_.path() + "/blobs");
    ASSERT_OK(blobs);
    blobs_ = blobs->get();
    CoordinatorOptions options;
    options.data_dir = dir_.path();
    options.now_ms = [this] { return now_; };
    options.worker_timeout_ms = 60'000;
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
  };
  Worker Register(uint64_t seed, v1::Tier tier = v1::TIER_CPU) {
    std::string seed_bytes(32, static_cast<char>(seed));
    Worker worker{*Ed25519PrivateKey::FromSeed(seed_bytes), ""};
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
    return worker;
  }

  absl::StatusOr<v1::LeaseWorkUnitResponse> Lease(const Worker& worker,
                                                  uint64_t memory = 16ull
                                                                    << 30) {
    v1::LeaseWorkUnitRequest request;
    request.set_worker_id(worker.id);
    request.set_free_memory_bytes(memory);
    return coordinator_->LeaseWorkUnit(request);
  }

  // Uploads a small valid delta for `unit` through the coordinator's API.
  absl::StatusOr<v1::UploadDeltaResponse> Deliver(const Worker& worker,
                                                  const v1::WorkUnit& unit) {
    v1::DeltaHeader header = DeltaHeaderForUnit(unit, worker.id);
    const std::string delta = DeltaForJob();
    header.set_content_hash(Sha256Hex(delta));
    header.set_size_bytes(delta.size());
    header.set_sample_count(4);
    header.set_signature(*SignPayload(worker.key, DeltaSigningPayload(header)));
    ASSIGN_OR_RETURN(DeltaUpload upload, coordinator_->BeginUpload(header));
    RETURN_IF_ERROR(coordinator_->AppendUpload(&upload, 0, delta));
    return coordinator_->FinishUpload(&upload);
  }

  // A zero delta for the Spec() LoRA shape (r4 on q and v).
  std::string DeltaForJob() {
    lora::LoraConfig lora;
    lora.rank = 4;
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, shape] :
         lora::ExpectedAdapterTensors(testing::DemoModelConfig(), lora)) {
      tensors.emplace_back(name, at::zeros(shape));
    }
    const std::string path = dir_.path() + "/zero-delta";
    EXPECT_OK(lora::WriteSafetensors(path, tensors));
    return *ReadFileToString(path);
  }

  testing::TempDir dir_;
  testing::DemoTaskFiles task_;
  BlobStore* blobs_ = nullptr;
  std::unique_ptr<Coordinator> coordinator_;
  int64_t now_ = kStart;
};

TEST_F(CoordinatorTest, SubmitRefusesWhatWorkersWouldTripOver) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_base_model_hash(Sha256Hex("other"));
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not match the files")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->mutable_dataset()->set_sha256(Sha256Hex("nothing"));
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("was not uploaded")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_shards_per_round(1000);
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("fewer than 1000 shards")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_aggregation("median");
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown aggregation 'median'")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->mutable_base_model_files()->RemoveLast();
  std::vector<ManifestFile> manifest;
  for (const auto& file : request.spec().base_model_files())
    manifest.push_back({file.name(), file.sha256()});
  request.mutable_spec()->set_base_model_hash(*ModelContentHash(manifest));
  EXPECT_THAT(
      coordinator_->SubmitJob(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tokenizer")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_max_delta_norm(0);
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_delta_norm")));
}

TEST_F(CoordinatorTest, LeasesFitTierAndMemoryOneUnitPerRequest) {
  v1::JobSpec spec = Spec();
  spec.set_min_tier(v1::TIER_GPU_SMALL);
  const std::string gpu_job = Submit(spec);
  const Worker cpu = Register(1, v1::TIER_CPU);
  auto none = Lease(cpu);
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_unit());
  EXPECT_GT(none->retry_after_ms(), 0u);

  const Worker gpu = Register(2, v1::TIER_GPU_MID);
  auto too_small = Lease(gpu, 1024);
  ASSERT_OK(too_small);
  EXPECT_FALSE(too_small->has_unit());
  auto leased = Lease(gpu);
  ASSERT_OK(leased);
  ASSERT_TRUE(leased->has_unit());
  EXPECT_EQ(leased->unit().job_id(), gpu_job);
  EXPECT_EQ(leased->unit().lease_deadline_ms(), kStart + 30'000);
  EXPECT_EQ(leased->unit().parent_adapter_version(), 0u);
  EXPECT_TRUE(leased->unit().parent_adapter().sha256().size() == 64);
  auto job = coordinator_->GetJob(gpu_job);
  ASSERT_OK(job);
  EXPECT_EQ(job->rounds(0).units_leased(), 1u);
  EXPECT_EQ(job->rounds(0).units_pending(), 1u);

  v1::LeaseWorkUnitRequest unknown;
  unknown.set_worker_id("w-nobody");
  auto refused = coordinator_->LeaseWorkUnit(unknown);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnauthenticated,
                                HasSubstr("not registered")));
  EXPECT_EQ(RejectReasonOf(refused.status()), v1::REJECT_UNKNOWN_WORKER);
}

TEST_F(CoordinatorTest, ReplicasOfAShardGoToDistinctWorkers) {
  v1::JobSpec spec = Spec();
  spec.set_shards_per_round(1);
  spec.set_replication(2);
  Submit(spec);
  const Worker a = Register(1), b = Register(2);
  auto first = Lease(a);
  ASSERT_OK(first);
  ASSERT_TRUE(first->has_unit());
  auto second_for_a = Lease(a);
  ASSERT_OK(second_for_a);
  EXPECT_FALSE(second_for_a->has_unit());
  auto for_b = Lease(b);
  ASSERT_OK(for_b);
  ASSERT_TRUE(for_b->has_unit());
  EXPECT_EQ(for_b->unit().shard_index(), first->unit().shard_index());
  EXPECT_NE(for_b->unit().replica(), first->unit().replica());
  EXPECT_NE(for_b->unit().training().seed(), first->unit().training().seed());
}

TEST_F(CoordinatorTest, ExpiredLeasesReturnToPendingAndAreRevoked) {
  Submit(Spec());
  const Worker a = Register(1), b = Register(2);
  auto leased = Lease(a);
  ASSERT_OK(leased);
  const std::string unit = leased->unit().unit_id();
  auto other = Lease(b);  // the second shard
  ASSERT_OK(other);
  ASSERT_TRUE(other->has_unit());
  now_ += 29'000;
  ASSERT_OK(coordinator_->Tick());
  EXPECT_FALSE(Lease(b)->has_unit());  // still leased to a
  now_ += 1'000;
  ASSERT_OK(coordinator_->Tick());
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_worker_id(a.id);
  heartbeat.set_current_unit_id(unit);
  auto response = coordinator_->Heartbeat(heartbeat);
  ASSERT_OK(response);
  ASSERT_EQ(response->revoked_unit_ids_size(), 1);
  EXPECT_EQ(response->revoked_unit_ids(0), unit);
  // b's lease also expired; b takes a's old unit now.
  auto retaken = Lease(b);
  ASSERT_OK(retaken);
  ASSERT_TRUE(retaken->has_unit());
  // And a's upload for it is refused: the lease is no longer a's.
  EXPECT_THAT(
      Deliver(a, leased->unit()),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("no lease")));
}

TEST_F(CoordinatorTest, RoundDeadlineAggregatesWithTheMinimumOrFailsTheJob) {
  v1::JobSpec spec = Spec();
  spec.set_round_deadline_s(60);
  spec.set_min_results_per_round(1);
  const std::string job = Submit(spec);
  const Worker a = Register(1);
  auto leased = Lease(a);
  ASSERT_OK(leased);
  auto delivered = Deliver(a, leased->unit());
  ASSERT_OK(delivered);
  EXPECT_TRUE(delivered->accepted());
  ASSERT_OK(coordinator_->Tick());
  EXPECT_EQ(coordinator_->GetJob(job)->current_round(), 1u);  // one unit left
  now_ += 60'000;
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->current_round(), 2u);
  EXPECT_EQ(status->latest_adapter_version(), 1u);
  EXPECT_EQ(status->rounds(0).adapter_version(), 1u);
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job);
  auto adapter = coordinator_->GetLatestAdapter(request);
  ASSERT_OK(adapter);
  EXPECT_EQ(adapter->adapter().sample_count(), 4u);
  EXPECT_EQ(adapter->adapter().metrics().at("deltas"), 1.0);

  // Round 2 gets nothing before its deadline: the job fails, saying why.
  now_ += 61'000;
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->state(), v1::JOB_FAILED);
  EXPECT_THAT(status->message(), HasSubstr("round 2 reached its deadline"));
}

TEST_F(CoordinatorTest, CreditsAcceptedWorkInFlopAndCountsRejections) {
  Submit(Spec());
  const Worker good = Register(1), bad = Register(2);
  auto good_unit = Lease(good);
  auto bad_unit = Lease(bad);
  ASSERT_OK(good_unit);
  ASSERT_OK(bad_unit);
  auto accepted = Deliver(good, good_unit->unit());
  ASSERT_OK(accepted);
  EXPECT_TRUE(accepted->accepted());
  // A delta that fails the checks: counted as rejected, earns nothing.
  const std::string nan_delta = [&] {
    std::string bytes = DeltaForJob();
    const float nan = std::nanf("");
    std::memcpy(bytes.data() + bytes.size() - sizeof(float), &nan,
                sizeof(float));
    return bytes;
  }();
  v1::DeltaHeader header = DeltaHeaderForUnit(bad_unit->unit(), bad.id);
  header.set_content_hash(Sha256Hex(nan_delta));
  header.set_size_bytes(nan_delta.size());
  header.set_sample_count(4);
  header.set_signature(*SignPayload(bad.key, DeltaSigningPayload(header)));
  auto upload = coordinator_->BeginUpload(header);
  ASSERT_OK(upload);
  ASSERT_OK(coordinator_->AppendUpload(&*upload, 0, nan_delta));
  EXPECT_THAT(coordinator_->FinishUpload(&*upload),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));

  v1::ListWorkersRequest request;
  request.set_include_inactive(true);
  auto workers = coordinator_->ListWorkers(request);
  ASSERT_OK(workers);
  ASSERT_EQ(workers->workers_size(), 2);
  for (const v1::WorkerStatus& worker : workers->workers()) {
    if (worker.worker_id() == good.id) {
      EXPECT_EQ(worker.units_accepted(), 1u);
      EXPECT_EQ(worker.units_rejected(), 0u);
      // 2 steps x 2 sequences x 12 tokens = 48 tokens, times 4 x 107200 base
      // parameters + 6 x 1792 LoRA parameters (r4 on q and v, 2 layers).
      EXPECT_DOUBLE_EQ(worker.credit_flop(), 48.0 * (4 * 107200 + 6 * 1792));
    } else {
      EXPECT_EQ(worker.units_accepted(), 0u);
      EXPECT_EQ(worker.units_rejected(), 1u);
      EXPECT_EQ(worker.credit_flop(), 0);
    }
  }
  // Acknowledging the same delta again credits nothing more.
  auto again = Deliver(good, good_unit->unit());
  ASSERT_OK(again);
  EXPECT_TRUE(again->accepted());
  workers = coordinator_->ListWorkers(request);
  for (const v1::WorkerStatus& worker : workers->workers()) {
    if (worker.worker_id() == good.id) {
      EXPECT_EQ(worker.units_accepted(), 1u);
    }
  }
}

TEST_F(CoordinatorTest, CancelEndsLeasesAndRefusesUploads) {
  const std::string job = Submit(Spec());
  const Worker a = Register(1);
  auto leased = Lease(a);
  ASSERT_OK(leased);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job);
  cancel.set_reason("wrong dataset");
  ASSERT_OK(coordinator_->CancelJob(cancel));
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->state(), v1::JOB_CANCELLED);
  EXPECT_THAT(status->message(), HasSubstr("wrong dataset"));
  EXPECT_EQ(status->rounds(0).units_leased(), 0u);
  auto refused = Deliver(a, leased->unit());
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("JOB_CANCELLED")));
  EXPECT_EQ(RejectReasonOf(refused.status()), v1::REJECT_JOB_NOT_ACTIVE);
  EXPECT_THAT(
      coordinator_->CancelJob(cancel),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already")));
}

}  // namespace
}  // namespace openforce::coordinator
