// The validation split through the coordinator's API: held-out records never
// reach a shard; each round's candidate is scored by validation units that
// workers run (worker::UnitTrainer, forward only), signed and replicated
// like training units, before it is published with its validation loss and
// its parent's; validators outside their slice's quorum are rejected and a
// slice without one gets another replica; and an aggregate clearly worse
// than its parent is aggregated again without the outlier that made it so.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "proto/lora_convert.h"
#include "tests/coordinator/coordinator_fixture.h"
#include "worker/unit_trainer.h"

namespace openforce::coordinator {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class RoundValidationTest : public CoordinatorTest {
 protected:
  // A delta that learned something: Spec()'s adapter (the job's version 0)
  // trained for a few steps on the whole training set, times `scale`, as
  // safetensors bytes.
  std::string TrainedDelta(double scale, bool b_only) {
    lora::LoraConfig config;
    config.rank = 4;
    config.alpha = 8;
    config.targets = {lora::Projection::kQ, lora::Projection::kV};
    lora::TrainingOptions options;
    options.learning_rate = 2e-2;
    options.max_steps = 8;
    options.batch_size = 8;
    options.freeze_lora_a = b_only;
    auto training = testing::TrainOnDemoTask(task_, config,
                                             Spec().training().seed(), options);
    EXPECT_OK(training);
    auto delta = training->trained.Subtract(training->parent);
    EXPECT_OK(delta);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, tensor] : delta->NamedTensors()) {
      if (b_only && lora::IsLoraAKey(name)) continue;
      tensors.emplace_back(name, tensor.detach() * scale);
    }
    const std::string path = absl::StrCat(dir_.path(), "/trained-", scale);
    EXPECT_OK(lora::WriteSafetensors(path, tensors));
    return *ReadFileToString(path);
  }

  // `adapter` laid out as a PEFT directory for `unit`'s LoRA shape.
  std::string AdapterDir(const v1::WorkUnit& unit, const v1::BlobRef& adapter) {
    const std::string dir =
        absl::StrCat(dir_.path(), "/adapters/", adapter.sha256().substr(0, 16));
    EXPECT_OK(MakeDirectories(dir));
    EXPECT_OK(WriteFileAtomically(dir + "/adapter_model.safetensors",
                                  *blobs_->Get(adapter.sha256())));
    auto config = LoraConfigFromProto(unit.lora());
    EXPECT_OK(config);
    EXPECT_OK(WriteFileAtomically(dir + "/adapter_config.json",
                                  lora::AdapterConfigToJson(*config)));
    return dir;
  }

  // What the worker binary computes for validation unit `unit`: the losses
  // of the candidate and the parent on its slice (worker::UnitTrainer).
  worker::ValidationLosses Score(const v1::WorkUnit& unit) {
    worker::UnitPaths paths;
    paths.model_dir = task_.model_dir;
    paths.parent_adapter_dir = AdapterDir(unit, unit.parent_adapter());
    paths.candidate_adapter_dir = AdapterDir(unit, unit.candidate_adapter());
    paths.validation_path = *blobs_->ObjectPath(unit.validation_set().sha256());
    auto losses = trainer_.Validate(unit, paths);
    EXPECT_OK(losses);
    return losses.ok() ? *losses : worker::ValidationLosses();
  }

  // A signed report of `losses` for `unit`, as the worker sends it.
  v1::SubmitValidationRequest Report(const Worker& worker,
                                     const v1::WorkUnit& unit,
                                     const worker::ValidationLosses& losses) {
    v1::SubmitValidationRequest request;
    v1::ValidationReport& report = *request.mutable_report();
    report = ValidationReportForUnit(unit, worker.id);
    report.set_candidate_loss(losses.candidate_loss);
    report.set_parent_loss(losses.parent_loss);
    report.set_signature(
        *SignPayload(worker.key, ValidationSigningPayload(report)));
    worker.Sign(kSubmitValidationMethod, &request);
    return request;
  }

  // Leases the next unit for `worker`, which must be a validation unit.
  v1::WorkUnit LeaseValidation(const Worker& worker) {
    auto lease = Lease(worker);
    EXPECT_OK(lease);
    EXPECT_TRUE(lease.ok() && lease->has_unit());
    if (!lease.ok()) return v1::WorkUnit();
    EXPECT_EQ(lease->unit().kind(), v1::WORK_VALIDATE);
    return lease->unit();
  }

  // Leases and runs a validation unit as an honest worker does; the losses
  // may be shifted (a lying validator) before they are signed.
  void Validate(const Worker& worker, double candidate_shift = 0) {
    const v1::WorkUnit unit = LeaseValidation(worker);
    worker::ValidationLosses losses = Score(unit);
    losses.candidate_loss += candidate_shift;
    auto response =
        coordinator_->SubmitValidation(Report(worker, unit, losses));
    ASSERT_OK(response);
    EXPECT_TRUE(response->accepted());
  }

  // Spec()'s two shards delivered by two workers, and a tick: the round's
  // candidate is made.
  void TrainTwoShards() {
    for (uint64_t seed : {1, 2}) {
      const Worker worker = Register(seed);
      auto unit = Lease(worker);
      ASSERT_OK(unit);
      ASSERT_OK(Deliver(worker, unit->unit()));
    }
    ASSERT_OK(coordinator_->Tick());
  }

  worker::UnitTrainer trainer_;
};

TEST_F(RoundValidationTest, HeldOutRecordsAreNeverLeasedAndScoreEachRound) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_validation_fraction(0.25);
  const std::string job = Submit(spec);
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  const v1::BlobRef held = status->spec().validation_set();
  ASSERT_FALSE(held.sha256().empty());
  auto held_text = blobs_->Get(held.sha256());
  ASSERT_OK(held_text);
  const std::vector<std::string> held_lines = Lines(*held_text);
  EXPECT_EQ(held_lines.size(), 10u);  // a quarter of 40
  // Records may repeat in a dataset: what is held out plus what is trained
  // is the dataset, record for record.
  std::multiset<std::string> remaining;
  for (const std::string& line : Lines(*ReadFileToString(task_.train_path)))
    remaining.insert(line);
  for (const std::string& line : held_lines) {
    ASSERT_EQ(remaining.count(line) > 0, true) << line;
    remaining.erase(remaining.find(line));
  }

  size_t trained = 0;
  for (uint64_t seed : {1, 2}) {
    const Worker worker = Register(seed);
    auto unit = Lease(worker);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    auto shard = blobs_->Get(unit->unit().shard().sha256());
    ASSERT_OK(shard);
    for (const std::string& line : Lines(*shard)) {
      auto it = remaining.find(line);
      ASSERT_TRUE(it != remaining.end()) << "held-out record leased: " << line;
      remaining.erase(it);
      ++trained;
    }
    ASSERT_OK(Deliver(worker, unit->unit(), 0.01f));
  }
  EXPECT_EQ(trained, 30u);
  EXPECT_TRUE(remaining.empty());
  // The deltas are in: the aggregate is a candidate, not yet published, and
  // one validation unit (ten records) waits for a worker.
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->state(), v1::JOB_RUNNING);
  EXPECT_EQ(status->latest_adapter_version(), 0u);
  EXPECT_EQ(status->rounds(0).validation_units_open(), 1u);
  EXPECT_THAT(FormatJobStatus(*status),
              HasSubstr("validating: 0 of 1 units reported"));
  const Worker validator = Register(3);
  const double credit_before = WorkerStatusOf(validator).credit_flop();
  const v1::WorkUnit unit = LeaseValidation(validator);
  EXPECT_EQ(unit.validation_set().sha256(), held.sha256());
  EXPECT_EQ(unit.validation_begin(), 0u);
  EXPECT_EQ(unit.validation_end(), 10u);
  EXPECT_FALSE(unit.candidate_adapter().sha256().empty());
  EXPECT_EQ(unit.parent_adapter_version(), 0u);
  // Blobs the validation lease needs are fetchable by its holder.
  v1::FetchBlobRequest fetch;
  fetch.set_worker_id(validator.id);
  fetch.set_sha256(unit.candidate_adapter().sha256());
  validator.Sign(kFetchBlobMethod, &fetch);
  EXPECT_OK(coordinator_->CheckFetchAllowed(fetch));
  const worker::ValidationLosses losses = Score(unit);
  auto response =
      coordinator_->SubmitValidation(Report(validator, unit, losses));
  ASSERT_OK(response);
  EXPECT_TRUE(response->accepted());
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  const v1::RoundStatus& round = status->rounds(0);
  // What the worker measured is what the round reports.
  EXPECT_DOUBLE_EQ(round.validation_loss(), losses.candidate_loss);
  EXPECT_DOUBLE_EQ(round.parent_validation_loss(), losses.parent_loss);
  EXPECT_GT(round.validation_loss(), 0);
  EXPECT_EQ(round.validation_retries(), 0u);
  EXPECT_EQ(round.validation_units_reported(), 1u);
  EXPECT_EQ(round.validation_units_open(), 0u);
  EXPECT_THAT(FormatJobStatus(*status), HasSubstr("validation_loss"));
  // The published adapter is the candidate that was scored, and validation
  // work earns credit.
  EXPECT_EQ(LatestAdapter(job).adapter_model().sha256(),
            unit.candidate_adapter().sha256());
  EXPECT_GT(WorkerStatusOf(validator).credit_flop(), credit_before);
}

TEST_F(RoundValidationTest, AWorseAggregateIsRetriedWithoutItsOutlier) {
  // FFA, so that an update is linear in the uploaded B.
  v1::JobSpec spec = Spec();
  spec.set_aggregation("ffa");
  spec.set_rounds(2);
  spec.set_shards_per_round(5);
  spec.set_validation_fraction(0.25);
  spec.set_validation_tolerance(0.01);
  spec.set_max_delta_norm(50);
  const std::string job = Submit(spec);
  const std::string learned = TrainedDelta(1.0, /*b_only=*/true);
  const std::string more = TrainedDelta(0.1, /*b_only=*/true);
  const std::string undone = TrainedDelta(-8.0, /*b_only=*/true);
  std::vector<Worker> workers;
  for (int i = 0; i < 5; ++i) workers.push_back(Register(20 + i));
  // Round 1: everyone learns; version 1 is better than version 0.
  for (const Worker& worker : workers) {
    auto unit = Lease(worker);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    ASSERT_OK(DeliverBytes(worker, unit->unit(), learned));
  }
  ASSERT_OK(coordinator_->Tick());
  Validate(workers[0]);
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->latest_adapter_version(), 1u) << status->message();
  EXPECT_LT(status->rounds(0).validation_loss(),
            status->rounds(0).parent_validation_loss());
  EXPECT_EQ(status->rounds(0).validation_retries(), 0u);
  // Round 2: four learn a little more; the last undoes it all, eight times
  // over (within the norm bound). Their mean is worse than version 1.
  for (int i = 0; i < 5; ++i) {
    auto unit = Lease(workers[i]);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    ASSERT_OK(DeliverBytes(workers[i], unit->unit(), i < 4 ? more : undone));
  }
  ASSERT_OK(coordinator_->Tick());
  // The first candidate scores worse than version 1: it is aggregated again
  // without the outlier, and the new candidate is validated in turn.
  Validate(workers[1]);
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->latest_adapter_version(), 1u);
  EXPECT_EQ(status->rounds(1).validation_units_open(), 1u);
  Validate(workers[2]);
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  const v1::RoundStatus& round = status->rounds(1);
  EXPECT_EQ(round.validation_retries(), 1u);
  // Without the outlier the aggregate is no worse than version 1.
  EXPECT_LE(round.validation_loss(), round.parent_validation_loss() * 1.01);
  EXPECT_EQ(WorkerStatusOf(workers[4]).units_rejected(), 1u);  // round 2
  EXPECT_EQ(WorkerStatusOf(workers[0]).units_rejected(), 0u);
}

TEST_F(RoundValidationTest, ValidatorsOutsideTheQuorumEarnNothing) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_replication(2);
  spec.set_validation_fraction(0.25);
  const std::string job = Submit(spec);
  std::vector<Worker> trainers;
  for (int i = 0; i < 4; ++i) trainers.push_back(Register(40 + i));
  // Two shards, two replicas each, and replicas agree.
  for (const Worker& worker : trainers) {
    auto unit = Lease(worker);
    ASSERT_OK(unit);
    ASSERT_TRUE(unit->has_unit());
    ASSERT_OK(
        Deliver(worker, unit->unit(),
                0.01f * static_cast<float>(1 + unit->unit().shard_index())));
  }
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->rounds(0).validation_units_open(), 2u);  // one slice x 2
  const Worker honest = Register(50), liar = Register(51), third = Register(52);
  Validate(honest);
  Validate(liar, /*candidate_shift=*/-0.5);  // claims the candidate is great
  // No two reports agree: a third replica is opened, the round waits.
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->latest_adapter_version(), 0u);
  EXPECT_EQ(status->rounds(0).validation_units_open(), 1u);
  // A worker gets no second replica of a slice it reported on.
  auto again = Lease(honest);
  ASSERT_OK(again);
  EXPECT_FALSE(again->has_unit());
  Validate(third);
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  // The quorum's losses are the round's; the liar's are not.
  EXPECT_GT(status->rounds(0).validation_loss(), 0);
  const v1::WorkerStatus liar_status = WorkerStatusOf(liar);
  EXPECT_EQ(liar_status.credit_flop(), 0);
  EXPECT_EQ(liar_status.units_invalid(), 1u);
  EXPECT_EQ(liar_status.units_rejected(), 1u);
  EXPECT_EQ(liar_status.units_accepted(), 0u);
  for (const Worker* validator : {&honest, &third}) {
    const v1::WorkerStatus agreed = WorkerStatusOf(*validator);
    EXPECT_GT(agreed.credit_flop(), 0);
    EXPECT_EQ(agreed.validated_streak(), 1u);
    EXPECT_EQ(agreed.units_accepted(), 1u);
  }
}

TEST_F(RoundValidationTest, ReportsAreCheckedAgainstTheLeaseAndTheRound) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_validation_fraction(0.25);
  const std::string job = Submit(spec);
  TrainTwoShards();
  const Worker validator = Register(3), stranger = Register(4);
  const v1::WorkUnit unit = LeaseValidation(validator);
  worker::ValidationLosses losses;
  losses.candidate_loss = 2.0;
  losses.parent_loss = 2.1;
  auto reason_of = [&](const v1::SubmitValidationRequest& request) {
    return RejectReasonOf(coordinator_->SubmitValidation(request).status());
  };
  // Signed by someone else's key: the call is the validator's, the report
  // is not.
  v1::SubmitValidationRequest forged = Report(validator, unit, losses);
  forged.mutable_report()->set_signature(
      *SignPayload(stranger.key, ValidationSigningPayload(forged.report())));
  validator.Sign(kSubmitValidationMethod, &forged);
  EXPECT_EQ(reason_of(forged), v1::REJECT_BAD_SIGNATURE);
  // Another candidate than the round's.
  v1::WorkUnit other = unit;
  other.mutable_candidate_adapter()->set_sha256(std::string(64, 'a'));
  EXPECT_EQ(reason_of(Report(validator, other, losses)),
            v1::REJECT_HASH_MISMATCH);
  // Fewer records than the slice.
  other = unit;
  other.set_validation_end(unit.validation_end() - 1);
  EXPECT_EQ(reason_of(Report(validator, other, losses)),
            v1::REJECT_SAMPLE_COUNT_MISMATCH);
  // Not a loss (which no one can sign: the payload takes finite metrics).
  v1::SubmitValidationRequest nan = Report(validator, unit, losses);
  nan.mutable_report()->set_candidate_loss(std::nan(""));
  validator.Sign(kSubmitValidationMethod, &nan);
  EXPECT_EQ(reason_of(nan), v1::REJECT_NON_FINITE);
  // Not its lease.
  EXPECT_EQ(reason_of(Report(stranger, unit, losses)),
            v1::REJECT_LEASE_NOT_HELD);
  // A delta for a validation unit is the wrong call.
  EXPECT_THAT(coordinator_->BeginUpload(
                  FirstChunk(validator, unit, DeltaForJob(0.01f))),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("SubmitValidation")));
  // The real report is stored, and its retry acknowledged.
  const v1::SubmitValidationRequest good = Report(validator, unit, losses);
  auto first = coordinator_->SubmitValidation(good);
  ASSERT_OK(first);
  EXPECT_TRUE(first->accepted());
  v1::SubmitValidationRequest retry = good;
  validator.Sign(kSubmitValidationMethod, &retry);
  auto second = coordinator_->SubmitValidation(retry);
  ASSERT_OK(second);
  EXPECT_TRUE(second->accepted());
  EXPECT_EQ(second->message(), "already recorded");
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  EXPECT_DOUBLE_EQ(status->rounds(0).validation_loss(), 2.0);
  EXPECT_EQ(WorkerStatusOf(validator).units_accepted(), 1u);
}

TEST_F(RoundValidationTest, TrainingEndsWhenTheCandidateIsMade) {
  // Past its deadline a round aggregates what it has; a delta that comes
  // after that would change what the validators are scoring.
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_shards_per_round(3);
  spec.set_min_results_per_round(2);
  spec.set_round_deadline_s(600);
  spec.set_validation_fraction(0.25);
  const std::string job = Submit(spec);
  const Worker late = Register(9);
  auto late_unit = Lease(late);
  ASSERT_OK(late_unit);
  ASSERT_TRUE(late_unit->has_unit());
  for (uint64_t seed : {1, 2}) {
    const Worker worker = Register(seed);
    auto unit = Lease(worker);
    ASSERT_OK(unit);
    ASSERT_OK(Deliver(worker, unit->unit()));
  }
  now_ += 601'000;
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->rounds(0).validation_units_open(), 1u);
  // The late delta is refused; a fresh worker gets the validation unit,
  // never the abandoned training unit.
  EXPECT_THAT(Deliver(late, late_unit->unit()),
              testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("came too late")));
  const Worker fresh = Register(10);
  Validate(fresh);
  auto nothing = Lease(Register(11));
  ASSERT_OK(nothing);
  EXPECT_FALSE(nothing->has_unit());
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  EXPECT_EQ(LatestAdapter(job).metrics().at("deltas"), 2);
}

TEST_F(RoundValidationTest, WithoutValidatorsTheRoundPublishesAtItsDeadline) {
  v1::JobSpec spec = Spec();
  spec.set_rounds(1);
  spec.set_validation_fraction(0.25);
  spec.set_round_deadline_s(600);
  const std::string job = Submit(spec);
  TrainTwoShards();
  now_ += 599'000;  // validators may still come
  ASSERT_OK(coordinator_->Tick());
  auto status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->latest_adapter_version(), 0u);
  now_ += 60'000;  // past the deadline, and no validator came
  ASSERT_OK(coordinator_->Tick());
  status = coordinator_->GetJob(job);
  ASSERT_OK(status);
  ASSERT_EQ(status->state(), v1::JOB_SUCCEEDED) << status->message();
  // Published, unscored: no validation loss is claimed.
  EXPECT_EQ(status->rounds(0).validation_loss(), 0);
  EXPECT_EQ(LatestAdapter(job).metrics().at("validation_slices"), 0);
  EXPECT_THAT(FormatJobStatus(*status), HasSubstr("unscored"));
}

TEST_F(RoundValidationTest, SubmitRefusesBadValidationSettings) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_validation_fraction(0.7);
  EXPECT_THAT(coordinator_->SubmitJob(request),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("validation_fraction")));
  *request.mutable_spec() = Spec();
  request.mutable_spec()->set_validation_fraction(0.5);
  request.mutable_spec()->set_shards_per_round(25);  // 20 left for training
  EXPECT_THAT(coordinator_->SubmitJob(request),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("after the validation split")));
}

}  // namespace
}  // namespace openforce::coordinator
