// The coordinator's logic with a fake clock, real SQLite and a real blob
// store: job validation, scheduling by tier and memory, replication to
// distinct workers, lease expiry and revocation, round deadlines.
#include "coordinator/coordinator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tests/coordinator/coordinator_fixture.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

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
                       HasSubstr("'median' is not an exact strategy")));
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
  // A quantized base without the hash its workers must match.
  *request.mutable_spec() = Spec();
  request.mutable_spec()->mutable_training()->set_base_format(
      v1::BASE_FORMAT_NF4);
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("training.quantized_base_sha256")));
  request.mutable_spec()->mutable_training()->set_quantized_base_sha256(
      "not-a-hash");
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not a hex SHA-256")));
  request.mutable_spec()->mutable_training()->set_quantized_base_sha256(
      Sha256Hex("quantized"));
  EXPECT_OK(coordinator_->SubmitJob(request));
}

// A model's tokenizer.json is read at submit: one that workers could not use
// is refused once, naming what is wrong, instead of failing every unit.
TEST_F(CoordinatorTest, SubmitReadsTheModelsTokenizerJson) {
  auto add_tokenizer = [&](v1::JobSpec* spec, const std::string& text) {
    const std::string sha = *blobs_->Put(text);
    v1::BlobRef* ref = spec->add_base_model_files();
    ref->set_name("tokenizer.json");
    ref->set_sha256(sha);
    ref->set_size_bytes(text.size());
    std::vector<ManifestFile> manifest;
    for (const auto& file : spec->base_model_files())
      manifest.push_back({file.name(), file.sha256()});
    spec->set_base_model_hash(*ModelContentHash(manifest));
  };
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec();
  add_tokenizer(request.mutable_spec(),
                R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  EXPECT_THAT(
      coordinator_->SubmitJob(request),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("tokenizer.json"), HasSubstr("'WordPiece'"))));
  *request.mutable_spec() = Spec();
  add_tokenizer(request.mutable_spec(),
                R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
                    "merges": ["a b"]}})");
  EXPECT_THAT(coordinator_->SubmitJob(request),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'ab'")));
  *request.mutable_spec() = Spec();
  add_tokenizer(request.mutable_spec(),
                R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1,
                    "ab": 2}, "merges": ["a b"]}})");
  EXPECT_OK(coordinator_->SubmitJob(request));
}

// A conversational dataset needs the model's chat template: refused at
// submit, naming the record and the missing template; accepted once the
// model's files carry one.
TEST_F(CoordinatorTest, ConversationalDatasetsNeedAChatTemplate) {
  const std::string dataset =
      std::string(R"({"text": "plain"})") + "\n" +
      R"({"messages": [{"role": "user", "content": "1=?"}, )" +
      R"({"role": "assistant", "content": "one"}]})" + "\n";
  const std::string dataset_sha = *blobs_->Put(dataset);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec();
  request.mutable_spec()->mutable_dataset()->set_sha256(dataset_sha);
  request.mutable_spec()->set_shards_per_round(1);
  EXPECT_THAT(
      coordinator_->SubmitJob(request),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("line 2"), HasSubstr("no chat template"))));
  const std::string chat = "{% for m in messages %}{{ m.content }}{% endfor %}";
  const std::string chat_sha = *blobs_->Put(chat);
  v1::BlobRef* ref = request.mutable_spec()->add_base_model_files();
  ref->set_name("chat_template.jinja");
  ref->set_sha256(chat_sha);
  ref->set_size_bytes(chat.size());
  std::vector<ManifestFile> manifest;
  for (const auto& file : request.spec().base_model_files())
    manifest.push_back({file.name(), file.sha256()});
  request.mutable_spec()->set_base_model_hash(*ModelContentHash(manifest));
  EXPECT_OK(coordinator_->SubmitJob(request));
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
  // a holds its one lease of this job; the other replica waits for b.
  EXPECT_EQ(RejectReasonOf(Lease(a).status()), v1::REJECT_TOO_MANY_LEASES);
  auto for_b = Lease(b);
  ASSERT_OK(for_b);
  ASSERT_TRUE(for_b->has_unit());
  EXPECT_EQ(for_b->unit().shard_index(), first->unit().shard_index());
  EXPECT_NE(for_b->unit().replica(), first->unit().replica());
  // The same work, so that the two results can be compared.
  EXPECT_EQ(for_b->unit().training().seed(), first->unit().training().seed());
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
  const Worker c = Register(3);
  now_ += 29'000;
  ASSERT_OK(coordinator_->Heartbeat(HeartbeatOf(a)));
  ASSERT_OK(coordinator_->Heartbeat(HeartbeatOf(b)));
  ASSERT_OK(coordinator_->Heartbeat(HeartbeatOf(c)));
  ASSERT_OK(coordinator_->Tick());
  EXPECT_FALSE(Lease(c)->has_unit());  // both still leased
  now_ += 1'000;
  ASSERT_OK(coordinator_->Tick());
  auto response = coordinator_->Heartbeat(HeartbeatOf(a, unit));
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

TEST_F(CoordinatorTest, CreditsAggregatedWorkInFlopAndCountsRejections) {
  Submit(Spec());
  const Worker good = Register(1), bad = Register(2), third = Register(3);
  auto good_unit = Lease(good);
  auto bad_unit = Lease(bad);
  ASSERT_OK(good_unit);
  ASSERT_OK(bad_unit);
  auto accepted = Deliver(good, good_unit->unit());
  ASSERT_OK(accepted);
  EXPECT_TRUE(accepted->accepted());
  // Acknowledging the same delta again counts nothing more.
  auto again = Deliver(good, good_unit->unit());
  ASSERT_OK(again);
  EXPECT_TRUE(again->accepted());
  // A delta that fails the checks: counted as rejected, earns nothing.
  const std::string nan_delta = [&] {
    std::string bytes = DeltaForJob(0.01f);
    const float nan = std::nanf("");
    std::memcpy(bytes.data() + bytes.size() - sizeof(float), &nan,
                sizeof(float));
    return bytes;
  }();
  EXPECT_THAT(DeliverBytes(bad, bad_unit->unit(), nan_delta),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));

  // Accepted but not yet aggregated: no credit yet.
  EXPECT_EQ(WorkerStatusOf(good).units_accepted(), 1u);
  EXPECT_EQ(WorkerStatusOf(good).credit_flop(), 0);

  // The other shard arrives, the round aggregates, and both earn credit.
  auto last_unit = Lease(third);
  ASSERT_OK(last_unit);
  ASSERT_TRUE(last_unit->has_unit());
  ASSERT_OK(Deliver(third, last_unit->unit(), 0.02f));
  ASSERT_OK(coordinator_->Tick());
  // 2 steps x 2 sequences x 12 tokens = 48 tokens, times 4 x 107200 base
  // parameters + 6 x 1792 LoRA parameters (r4 on q and v, 2 layers).
  const double unit_credit = 48.0 * (4 * 107200 + 6 * 1792);
  EXPECT_DOUBLE_EQ(WorkerStatusOf(good).credit_flop(), unit_credit);
  EXPECT_DOUBLE_EQ(WorkerStatusOf(third).credit_flop(), unit_credit);
  EXPECT_EQ(WorkerStatusOf(bad).units_accepted(), 0u);
  EXPECT_EQ(WorkerStatusOf(bad).units_rejected(), 1u);
  EXPECT_EQ(WorkerStatusOf(bad).credit_flop(), 0);
}

TEST_F(CoordinatorTest, FfaJobsFreezeAAndTakeBOnlyDeltas) {
  v1::JobSpec spec = Spec();
  spec.set_aggregation("ffa");
  const std::string job = Submit(spec);
  const Worker a = Register(1), b = Register(2);
  auto unit_a = Lease(a);
  auto unit_b = Lease(b);
  ASSERT_OK(unit_a);
  ASSERT_OK(unit_b);
  EXPECT_TRUE(unit_a->unit().training().freeze_lora_a());
  // A full delta would change A: refused by shape, naming the tensor.
  auto full = DeliverBytes(a, unit_a->unit(), DeltaForJob(0.01f));
  EXPECT_THAT(full, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("unexpected tensor")));
  EXPECT_EQ(RejectReasonOf(full.status()), v1::REJECT_BAD_SHAPE);
  // The shard goes to another worker (never back to the one refused on it).
  const Worker c = Register(3);
  auto leased_again = Lease(c);
  ASSERT_OK(leased_again);
  ASSERT_TRUE(leased_again->has_unit());
  ASSERT_OK(DeliverBytes(c, leased_again->unit(), DeltaForJob(0.01f, true)));
  ASSERT_OK(DeliverBytes(b, unit_b->unit(), DeltaForJob(0.03f, true)));
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->spec().aggregation(), "ffa");
  ASSERT_EQ(status->latest_adapter_version(), 1u);
  // Version 1 kept version 0's A and moved B by the mean of the two.
  auto parent = lora::SafetensorsFile::Open(
      *blobs_->ObjectPath(unit_a->unit().parent_adapter().sha256()));
  auto next = lora::SafetensorsFile::Open(
      *blobs_->ObjectPath(LatestAdapter(job).adapter_model().sha256()));
  ASSERT_OK(parent);
  ASSERT_OK(next);
  for (const auto& [name, entry] : (*next)->entries()) {
    const at::Tensor before = *(*parent)->Tensor(name);
    const at::Tensor after = *(*next)->Tensor(name);
    if (lora::IsLoraAKey(name)) {
      EXPECT_TRUE(at::equal(before, after)) << name;
    } else {
      EXPECT_TRUE(at::allclose(after, before + 0.02f)) << name;
    }
  }
}

TEST_F(CoordinatorTest, DefaultAggregationIsRobustAndKrumOutliersEarnNothing) {
  v1::JobSpec spec = Spec();
  spec.clear_aggregation();
  const std::string defaulted = Submit(spec);
  EXPECT_EQ(coordinator_->GetJob(defaulted)->spec().aggregation(),
            lora::FormatAggregationRule(
                *lora::ParseAggregationRule(lora::kDefaultAggregation)));
  v1::CancelJobRequest cancel;
  cancel.set_job_id(defaulted);
  ASSERT_OK(coordinator_->CancelJob(cancel));

  spec = Spec();
  spec.set_aggregation("fedavg+krum:1");
  spec.set_rounds(1);
  spec.set_shards_per_round(5);
  const std::string job = Submit(spec);
  std::vector<Worker> workers;
  for (int i = 0; i < 5; ++i) {
    workers.push_back(Register(10 + i));
    auto unit = Lease(workers.back());
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    // Four agree; the last pulls the other way, within the norm bound.
    ASSERT_OK(Deliver(workers.back(), unit->unit(), i < 4 ? 0.01f : -0.05f));
  }
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->state(), v1::JOB_SUCCEEDED);
  EXPECT_EQ(WorkerStatusOf(workers[4]).credit_flop(), 0);
  EXPECT_EQ(WorkerStatusOf(workers[4]).units_rejected(), 1u);
  EXPECT_GT(WorkerStatusOf(workers[0]).credit_flop(), 0);
  EXPECT_EQ(LatestAdapter(job).metrics().at("deltas"), 4);
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

// The published adapter of `job`'s latest version, tensor by tensor.
std::map<std::string, at::Tensor> ReadAdapterTensors(BlobStore* blobs,
                                                     const std::string& sha) {
  std::map<std::string, at::Tensor> tensors;
  auto path = blobs->ObjectPath(sha);
  EXPECT_OK(path);
  auto file = lora::SafetensorsFile::Open(*path);
  EXPECT_OK(file);
  for (const auto& [name, entry] : (*file)->entries())
    tensors[name] = (*file)->Tensor(name)->clone();
  return tensors;
}

TEST_F(CoordinatorTest, WorkerCallsNeedTheWorkersOwnSignatureAndNoReplay) {
  Submit(Spec());
  const Worker victim = Register(1);
  auto leased = Lease(victim);
  ASSERT_OK(leased);
  ASSERT_TRUE(leased->has_unit());
  // An attacker who knows only the victim's id signs with its own key.
  Worker attacker = Register(2);
  attacker.id = victim.id;
  attacker.session = victim.session;
  v1::ReleaseWorkUnitRequest release;
  release.set_worker_id(victim.id);
  release.set_unit_id(leased->unit().unit_id());
  attacker.Sign(kReleaseMethod, &release);
  absl::Status refused = coordinator_->ReleaseWorkUnit(release);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnauthenticated,
                                HasSubstr("does not verify")));
  EXPECT_EQ(RejectReasonOf(refused), v1::REJECT_BAD_CALL_AUTH);
  EXPECT_THAT(Lease(attacker), StatusIs(absl::StatusCode::kUnauthenticated,
                                        HasSubstr("does not verify")));
  EXPECT_THAT(coordinator_->Heartbeat(HeartbeatOf(attacker)),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  // Without any signature: the id alone is not proof.
  v1::HeartbeatRequest unsigned_heartbeat;
  unsigned_heartbeat.set_worker_id(victim.id);
  EXPECT_THAT(coordinator_->Heartbeat(unsigned_heartbeat),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("the worker id alone is not proof")));
  // A captured call replayed verbatim is refused; changing any field breaks
  // the signature.
  const v1::HeartbeatRequest captured = HeartbeatOf(victim);
  ASSERT_OK(coordinator_->Heartbeat(captured));
  auto replayed = coordinator_->Heartbeat(captured);
  EXPECT_THAT(replayed, StatusIs(absl::StatusCode::kUnauthenticated,
                                 HasSubstr("a replayed call")));
  v1::HeartbeatRequest altered = HeartbeatOf(victim);
  altered.set_availability(v1::PAUSED);
  EXPECT_THAT(coordinator_->Heartbeat(altered),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("does not verify")));
  // The victim's lease is intact and its own release works.
  auto job = coordinator_->GetJob(leased->unit().job_id());
  EXPECT_EQ(job->rounds(0).units_leased(), 1u);
  v1::ReleaseWorkUnitRequest own = release;
  victim.Sign(kReleaseMethod, &own);
  EXPECT_OK(coordinator_->ReleaseWorkUnit(own));
  // A session the coordinator no longer knows (it restarted, or the worker
  // registered again) asks the worker to register.
  Worker stale{*Ed25519PrivateKey::FromSeed(std::string(32, '\x01')), victim.id,
               std::string(16, 'x')};
  auto unknown = coordinator_->Heartbeat(HeartbeatOf(stale));
  EXPECT_THAT(unknown, StatusIs(absl::StatusCode::kUnauthenticated,
                                HasSubstr("call Register")));
  EXPECT_EQ(RejectReasonOf(unknown.status()), v1::REJECT_UNKNOWN_SESSION);
}

TEST_F(CoordinatorTest, FetchesAreForWhatALeaseNeedsAndAdaptersForAnyone) {
  const v1::JobSpec spec = Spec();
  Submit(spec);
  const Worker holder = Register(1), idle = Register(2);
  auto leased = Lease(holder);
  ASSERT_OK(leased);
  const v1::WorkUnit& unit = leased->unit();
  auto fetch = [&](const Worker& worker, const std::string& sha) {
    v1::FetchBlobRequest request;
    request.set_worker_id(worker.id);
    request.set_sha256(sha);
    worker.Sign(kFetchBlobMethod, &request);
    return coordinator_->CheckFetchAllowed(request);
  };
  EXPECT_OK(fetch(holder, unit.base_model_files(0).sha256()));
  EXPECT_OK(fetch(holder, unit.shard().sha256()));
  EXPECT_OK(fetch(holder, unit.parent_adapter().sha256()));
  // The whole dataset is never a unit's to fetch, nor anything for a worker
  // without a lease.
  absl::Status dataset = fetch(holder, spec.dataset().sha256());
  EXPECT_THAT(dataset, StatusIs(absl::StatusCode::kPermissionDenied,
                                HasSubstr("not needed by any lease")));
  EXPECT_EQ(RejectReasonOf(dataset), v1::REJECT_NOT_LEASED_BLOB);
  EXPECT_THAT(fetch(idle, unit.base_model_files(0).sha256()),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  // The id without the worker's signature gets nothing.
  v1::FetchBlobRequest forged;
  forged.set_worker_id(holder.id);
  forged.set_sha256(unit.shard().sha256());
  idle.Sign(kFetchBlobMethod, &forged);
  EXPECT_THAT(coordinator_->CheckFetchAllowed(forged),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  v1::FetchBlobRequest anonymous;
  anonymous.set_sha256(unit.shard().sha256());
  EXPECT_THAT(coordinator_->CheckFetchAllowed(anonymous),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("only published adapter files")));
}

TEST_F(CoordinatorTest, OneLeasePerJobAndSilentWorkersLoseTheirs) {
  v1::JobSpec spec = Spec();
  spec.set_unit_deadline_s(3600);
  Submit(spec);
  const Worker greedy = Register(1), other = Register(2);
  auto first = Lease(greedy);
  ASSERT_OK(first);
  ASSERT_TRUE(first->has_unit());
  auto second = Lease(greedy);
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted,
                               HasSubstr("already holds 1 lease")));
  EXPECT_EQ(RejectReasonOf(second.status()), v1::REJECT_TOO_MANY_LEASES);
  auto others = Lease(other);
  ASSERT_OK(others);
  ASSERT_TRUE(others->has_unit());  // the shard greedy could not hoard

  // `other` keeps heartbeating, `greedy` goes silent: after three intervals
  // (30 s here) its lease goes back to pending, long before the hour-long
  // unit deadline.
  now_ += 20'000;
  ASSERT_OK(coordinator_->Heartbeat(HeartbeatOf(other)));
  ASSERT_OK(coordinator_->Tick());
  EXPECT_EQ(
      coordinator_->GetJob(first->unit().job_id())->rounds(0).units_leased(),
      2u);
  now_ += 11'000;
  ASSERT_OK(coordinator_->Heartbeat(HeartbeatOf(other)));
  ASSERT_OK(coordinator_->Tick());
  auto job = coordinator_->GetJob(first->unit().job_id());
  EXPECT_EQ(job->rounds(0).units_leased(), 1u);
  EXPECT_EQ(job->rounds(0).units_pending(), 1u);
  // When it comes back, its heartbeat says the lease was revoked.
  auto back =
      coordinator_->Heartbeat(HeartbeatOf(greedy, first->unit().unit_id()));
  ASSERT_OK(back);
  ASSERT_EQ(back->revoked_unit_ids_size(), 1);
}

TEST_F(CoordinatorTest, ClaimedSamplesAreRefusedAndWeightsComeFromShards) {
  // 42 records in 4 shards: 11, 11, 10 and 10 records.
  std::string dataset = *ReadFileToString(task_.train_path);
  std::vector<std::string> lines =
      absl::StrSplit(dataset, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u);
  while (lines.size() < 42) lines.push_back(lines[lines.size() % 2]);
  lines.resize(42);
  const std::string dataset42 = absl::StrJoin(lines, "\n") + "\n";
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_shards_per_round(4);
  spec.set_round_deadline_s(60);
  spec.set_min_results_per_round(3);
  spec.mutable_dataset()->set_sha256(*blobs_->Put(dataset42));
  const std::string job = Submit(spec);
  std::vector<Worker> workers;
  std::vector<v1::WorkUnit> units;
  for (int i = 0; i < 4; ++i) {
    workers.push_back(Register(10 + i));
    auto leased = Lease(workers.back());
    ASSERT_OK(leased);
    ASSERT_TRUE(leased->has_unit());
    units.push_back(leased->unit());
    EXPECT_EQ(units.back().shard_index(), static_cast<uint32_t>(i));
  }
  // The cheater claims a million samples to decide the average alone.
  auto cheat = Deliver(workers[3], units[3], 0.5f, 1'000'000);
  EXPECT_THAT(cheat, StatusIs(absl::StatusCode::kInvalidArgument,
                              HasSubstr("claims 1000000 samples")));
  EXPECT_EQ(RejectReasonOf(cheat.status()), v1::REJECT_SAMPLE_COUNT_MISMATCH);
  const float values[3] = {0.01f, 0.02f, 0.04f};
  for (int i = 0; i < 3; ++i)
    ASSERT_OK(Deliver(workers[i], units[i], values[i]));
  now_ += 61'000;
  ASSERT_OK(coordinator_->Tick());
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job);
  auto adapter = coordinator_->GetLatestAdapter(request);
  ASSERT_OK(adapter);
  ASSERT_EQ(adapter->adapter().version(), 1u);
  EXPECT_EQ(adapter->adapter().metrics().at("deltas"), 3.0);
  // Exactly FedAvg of the honest deltas with the shards' record counts.
  const double expected_delta =
      (11.0 * values[0] + 11.0 * values[1] + 10.0 * values[2]) / 32.0;
  auto parent = ReadAdapterTensors(blobs_, units[0].parent_adapter().sha256());
  auto published =
      ReadAdapterTensors(blobs_, adapter->adapter().adapter_model().sha256());
  ASSERT_EQ(parent.size(), published.size());
  for (const auto& [name, tensor] : published) {
    const at::Tensor delta = tensor - parent.at(name);
    EXPECT_TRUE(
        at::allclose(delta, at::full_like(delta, expected_delta), 1e-5, 1e-7))
        << name << " " << delta.mean().item<double>();
  }
}

TEST_F(CoordinatorTest, UntrainedDeltasAreRefusedAndFarSmallerOnesLeftOut) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_shards_per_round(3);
  const std::string job = Submit(spec);
  std::vector<Worker> workers;
  std::vector<v1::WorkUnit> units;
  for (int i = 0; i < 3; ++i) {
    workers.push_back(Register(20 + i));
    auto leased = Lease(workers.back());
    ASSERT_OK(leased);
    units.push_back(leased->unit());
  }
  // An all-zero delta did no training: refused with its own reason.
  auto zero = Deliver(workers[0], units[0], 0.0f);
  EXPECT_THAT(zero, StatusIs(absl::StatusCode::kInvalidArgument,
                             HasSubstr("shows no training")));
  EXPECT_EQ(RejectReasonOf(zero.status()), v1::REJECT_NORM_TOO_SMALL);
  // A token effort passes the absolute floor but not the round's.
  ASSERT_OK(Deliver(workers[1], units[1], 0.01f));
  ASSERT_OK(Deliver(workers[2], units[2], 0.012f));
  const Worker freerider = Register(30);
  auto retaken = Lease(freerider);
  ASSERT_OK(retaken);
  ASSERT_EQ(retaken->unit().unit_id(), units[0].unit_id());
  auto tiny = Deliver(freerider, retaken->unit(), 1e-5f);
  ASSERT_OK(tiny);
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->state(), v1::JOB_SUCCEEDED);
  EXPECT_EQ(status->rounds(0).units_accepted(), 2u);
  EXPECT_EQ(status->rounds(0).units_rejected(), 2u);
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job);
  EXPECT_EQ(
      coordinator_->GetLatestAdapter(request)->adapter().metrics().at("deltas"),
      2.0);
  v1::ListWorkersRequest list;
  list.set_include_inactive(true);
  auto listed = coordinator_->ListWorkers(list);
  ASSERT_OK(listed);
  for (const v1::WorkerStatus& worker : listed->workers()) {
    if (worker.worker_id() == freerider.id ||
        worker.worker_id() == workers[0].id) {
      EXPECT_EQ(worker.credit_flop(), 0) << worker.worker_id();
      EXPECT_EQ(worker.units_rejected(), 1u);
    } else {
      EXPECT_GT(worker.credit_flop(), 0) << worker.worker_id();
    }
  }
}

TEST_F(CoordinatorTest, RefusedDeltasLeaveNothingAndPartialUploadsExpire) {
  Submit(Spec());
  const Worker worker = Register(1);
  auto leased = Lease(worker);
  ASSERT_OK(leased);
  const std::string zero = DeltaForJob(0.0f);
  EXPECT_THAT(DeliverBytes(worker, leased->unit(), zero),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_FALSE(blobs_->Contains(Sha256Hex(zero)));  // never committed
  auto store = coordinator_->GetStoreStatus();
  ASSERT_OK(store);
  EXPECT_EQ(store->partial_upload_count(), 0u);
  const uint64_t blobs_before = store->blob_count();

  // Half an upload, then silence.
  const Worker other = Register(2);
  auto other_unit = Lease(other);
  ASSERT_OK(other_unit);
  const std::string delta = DeltaForJob(0.01f);
  auto upload =
      coordinator_->BeginUpload(FirstChunk(other, other_unit->unit(), delta));
  ASSERT_OK(upload);
  ASSERT_OK(coordinator_->AppendUpload(&*upload, 0, delta.substr(0, 100)));
  store = coordinator_->GetStoreStatus();
  EXPECT_EQ(store->partial_upload_count(), 1u);
  EXPECT_EQ(store->partial_upload_bytes(), 100u);
  // An hour without progress (the default expiry) and it is gone.
  now_ += 3'600'001;
  ASSERT_OK(coordinator_->Tick());
  store = coordinator_->GetStoreStatus();
  EXPECT_EQ(store->partial_upload_count(), 0u);
  EXPECT_EQ(store->blob_count(), blobs_before);
}

TEST_F(CoordinatorTest, OpenUploadsPerWorkerAreCappedAndReplaceAbandonedOnes) {
  v1::JobSpec spec = Spec();
  spec.set_max_leases_per_worker(2);
  Submit(spec);
  const Worker worker = Register(1);
  auto first = Lease(worker);
  auto second = Lease(worker);
  ASSERT_OK(first);
  ASSERT_OK(second);
  ASSERT_TRUE(second->has_unit());  // the job allows this worker two leases
  auto begin = [&](const v1::WorkUnit& unit, const std::string& bytes) {
    return coordinator_->BeginUpload(FirstChunk(worker, unit, bytes));
  };
  const std::string a = DeltaForJob(0.01f), b = DeltaForJob(0.02f);
  auto open_a = begin(first->unit(), a);
  ASSERT_OK(open_a);
  // The cap here is one open upload per worker: the second unit waits.
  auto refused = begin(second->unit(), b);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                HasSubstr("partial uploads open")));
  EXPECT_EQ(RejectReasonOf(refused.status()), v1::REJECT_TOO_MANY_UPLOADS);
  // Another delta for the same unit replaces the abandoned one.
  auto open_b = begin(first->unit(), b);
  ASSERT_OK(open_b);
  EXPECT_EQ(coordinator_->GetStoreStatus()->partial_upload_count(), 1u);
  EXPECT_THAT(coordinator_->AppendUpload(&*open_a, 0, a),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("replaced or expired")));
  ASSERT_OK(coordinator_->AppendUpload(&*open_b, 0, b));
  auto finished = coordinator_->FinishUpload(&*open_b);
  ASSERT_OK(finished);
  EXPECT_TRUE(finished->accepted());
  EXPECT_EQ(coordinator_->GetStoreStatus()->partial_upload_count(), 0u);
}

TEST_F(CoordinatorTest, DisplayNamesWithControlCharactersAreRefused) {
  std::string seed_bytes(32, 'z');
  auto key = *Ed25519PrivateKey::FromSeed(seed_bytes);
  v1::RegisterRequest request;
  request.set_public_key(key.PublicKey().Raw());
  request.mutable_profile()->set_tier(v1::TIER_CPU);
  request.set_nonce(std::string(16, 'n'));
  request.set_proof_of_possession(*key.Sign(
      RegistrationProofMessage(request.public_key(), request.nonce())));
  request.set_display_name("ok\nw-0000000000000000  fake-row");
  EXPECT_THAT(
      coordinator_->Register(request),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ok\\x0aw-0000")));
  // What the CLI prints of remote text is escaped whatever is stored.
  v1::WorkerStatus status;
  status.set_worker_id("w-1");
  status.set_display_name("evil\x1b[2J\nrow");
  const std::string table = FormatWorkers({status}, 0);
  EXPECT_EQ(table.find('\x1b'), std::string::npos);
  EXPECT_NE(table.find("evil\\x1b[2J\\x0arow"), std::string::npos);
}

}  // namespace
}  // namespace openforce::coordinator
