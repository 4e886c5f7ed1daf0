// Closing rounds (see round_closer.h): replica
// verdicts, exclusions by norm, coordinator-known weights, aggregation,
// credit, signing and publishing. The validation phase between aggregation
// and publishing, for jobs with a validation split, is validation_phase.cc.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/memory_estimate.h"
#include "common/model_manifest.h"
#include "common/secret_token.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "common/terminal_text.h"
#include "common/tier.h"
#include "coordinator/aggregator.h"
#include "coordinator/credit.h"
#include "coordinator/internal/planning.h"
#include "coordinator/round_closer.h"
#include "lora/adapter_delta.h"
#include "lora/dataset.h"
#include "lora/federated_aggregation.h"
#include "lora/llama_config.h"
#include "lora/lora_adapter.h"
#include "proto/call_signing.h"
#include "proto/channel.h"
#include "proto/lora_convert.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {
namespace {

// Reports the time an aggregation took, whichever way it returns.
class AggregationTimer {
 public:
  explicit AggregationTimer(CoordinatorMetrics* metrics)
      : metrics_(metrics), start_(std::chrono::steady_clock::now()) {}
  ~AggregationTimer() {
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start_;
    metrics_->RecordAggregation(elapsed.count());
  }

 private:
  CoordinatorMetrics* const metrics_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Rounds

absl::Status RoundCloser::CloseReadyRounds() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs,
                   core_.state().ListRunningJobs());
  absl::Status first_error;
  for (const JobRecord& job : jobs) {
    absl::Status closed = MaybeCloseRound(job);
    if (!closed.ok() && first_error.ok()) {
      first_error = absl::Status(
          closed.code(), absl::StrCat(job.job_id, ": ", closed.message()));
    }
  }
  return first_error;
}

RoundCloser::RoundAggregate::~RoundAggregate() {
  if (path.empty()) return;
  std::error_code ignored;
  std::filesystem::remove(path, ignored);
}

absl::Status RoundCloser::FailJob(const JobRecord& job,
                                  const std::string& message) {
  absl::MutexLock lock(&core_.decision_mu());
  return core_.state().SetJobState(job.job_id, v1::JOB_FAILED, message);
}

absl::Status RoundCloser::MaybeCloseRound(const JobRecord& job) {
  ASSIGN_OR_RETURN(const RoundRecord round,
                   core_.FindRound(job.job_id, job.current_round));
  if (round.adapter_version != 0) return absl::OkStatus();
  const bool past_deadline =
      round.deadline_ms != 0 && core_.Now() >= round.deadline_ms;
  if (!past_deadline) {
    // The counters say whether every training unit is done (or, with a
    // candidate, every validation unit of its attempt: earlier attempts'
    // open units were skipped); until then there is nothing to read, and
    // the units and results of a big round are read once, when it closes.
    ASSIGN_OR_RETURN(const RoundProgress progress,
                     core_.state().GetRoundProgress(job.job_id, round.round));
    if (round.candidate_attempt == 0) {
      const uint64_t done = progress.Count(v1::WORK_TRAIN, v1::UNIT_ACCEPTED) +
                            progress.Count(v1::WORK_TRAIN, v1::UNIT_SKIPPED);
      if (done < progress.Total(v1::WORK_TRAIN)) return absl::OkStatus();
    } else if (progress.Count(v1::WORK_VALIDATE, v1::UNIT_PENDING) +
                   progress.Count(v1::WORK_VALIDATE, v1::UNIT_LEASED) >
               0) {
      return absl::OkStatus();
    }
  }
  // Replicas sharing the store leave a round to the one closing it; what
  // that one did before the lock was free is in the round as read again.
  ASSIGN_OR_RETURN(std::unique_ptr<StateStore::ClosingLock> closing,
                   core_.state().TryLockRoundClosing(job.job_id));
  if (closing == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(const RoundRecord current,
                   core_.FindRound(job.job_id, job.current_round));
  if (current.adapter_version != 0 ||
      current.candidate_attempt != round.candidate_attempt ||
      current.candidate_sha256 != round.candidate_sha256) {
    return absl::OkStatus();  // the next tick sees what changed
  }
  ASSIGN_OR_RETURN(std::vector<UnitRecord> all_units,
                   core_.state().ListUnits(job.job_id, round.round));
  std::vector<UnitRecord> units, validation_units;
  for (UnitRecord& unit : all_units) {
    (unit.kind == v1::WORK_VALIDATE ? validation_units : units)
        .push_back(std::move(unit));
  }
  if (round.candidate_attempt > 0)
    return AdvanceValidation(job, round, units, validation_units);
  ASSIGN_OR_RETURN(std::vector<ResultRecord> accepted,
                   core_.AcceptedResults(job.job_id, round.round));
  // Done when every unit has its result, or was skipped because a trusted
  // worker's replica stands for it.
  const bool all_done =
      !units.empty() &&
      std::all_of(units.begin(), units.end(), [](const UnitRecord& unit) {
        return unit.state == v1::UNIT_ACCEPTED ||
               unit.state == v1::UNIT_SKIPPED;
      });
  if (all_done || (past_deadline && accepted.size() >= MinResults(job.spec))) {
    ASSIGN_OR_RETURN(ReplicaVerdicts verdicts,
                     ValidateReplicas(job, units, accepted,
                                      /*may_add_replicas=*/!past_deadline));
    if (!verdicts.shards_needing_replica.empty()) {
      // Replicas disagreed without a quorum: one more replica each, and the
      // round waits for them.
      absl::MutexLock lock(&core_.decision_mu());
      return core_.state().AddUnits(
          NextReplicas(units, verdicts.shards_needing_replica));
    }
    return AggregateRound(job, round, verdicts);
  }
  if (past_deadline) {
    return FailJob(
        job, absl::StrCat("round ", round.round, " reached its deadline with ",
                          accepted.size(), " accepted results, fewer than the ",
                          MinResults(job.spec), " it needs"));
  }
  return absl::OkStatus();
}

absl::Status RoundCloser::AggregateRound(const JobRecord& job,
                                         const RoundRecord& round,
                                         const ReplicaVerdicts& verdicts) {
  ASSIGN_OR_RETURN(std::unique_ptr<Aggregator> aggregator,
                   MakeAggregator(job.spec.aggregation()));
  ASSIGN_OR_RETURN(std::optional<RoundAggregate> aggregate,
                   BuildAggregate(job, round, verdicts, aggregator->rule()));
  if (!aggregate.has_value()) {
    // Everything was left out: publish nothing.
    return FailJob(job, absl::StrCat("round ", round.round,
                                     " has no delta above the norm floor to "
                                     "aggregate"));
  }
  if (ValidationSliceCount(job.spec) > 0) {
    return BeginCandidate(job, round, *std::move(aggregate), /*attempt=*/1);
  }
  return PublishRound(job, round, *std::move(aggregate), /*model_sha=*/"",
                      std::nullopt, /*validation_retries=*/0);
}

absl::StatusOr<std::optional<RoundCloser::RoundAggregate>>
RoundCloser::BuildAggregate(const JobRecord& job, const RoundRecord& round,
                            const ReplicaVerdicts& verdicts,
                            const lora::AggregationRule& rule) {
  const AggregationTimer timer(&core_.metrics());
  const std::vector<ResultRecord>& accepted = verdicts.canonical;
  std::string parent_sha = job.initial_adapter.sha256();
  if (round.parent_version != 0) {
    ASSIGN_OR_RETURN(
        std::optional<AdapterRecord> parent,
        core_.state().GetAdapter(job.job_id, round.parent_version));
    if (!parent.has_value())
      return absl::InternalError("parent adapter version is missing");
    parent_sha = parent->adapter.adapter_model().sha256();
  }
  ASSIGN_OR_RETURN(std::string parent_path,
                   core_.blobs().ObjectPath(parent_sha));
  RoundAggregate aggregate;
  aggregate.rule = rule;
  aggregate.excluded = verdicts.excluded;
  const std::vector<ResultRecord> no_duplicates;
  auto duplicates_of =
      [&](const std::string& unit_id) -> const std::vector<ResultRecord>& {
    auto it = verdicts.duplicates.find(unit_id);
    return it == verdicts.duplicates.end() ? no_duplicates : it->second;
  };
  // A result left out takes the replicas that agreed with it along.
  auto exclude_with_duplicates = [&](ResultVerdict verdict) {
    aggregate.excluded.push_back(verdict);
    for (const ResultRecord& duplicate : duplicates_of(verdict.unit_id)) {
      verdict.unit_id = duplicate.unit_id;
      verdict.worker_id = duplicate.worker_id;
      aggregate.excluded.push_back(verdict);
    }
  };
  // A delta far below its peers' median norm did (almost) no training: it is
  // left out of the aggregate and earns nothing.
  std::vector<double> norms;
  for (const ResultRecord& result : accepted) norms.push_back(result.l2_norm);
  double floor = 0;
  if (norms.size() >= 2) {
    floor = lora::Median(norms) * (job.spec.min_norm_fraction() > 0
                                       ? job.spec.min_norm_fraction()
                                       : kDefaultMinNormFraction);
  }
  // Weights and credit come from what the coordinator knows: the shard's
  // record count and the job's own settings, never the worker's claims.
  ASSIGN_OR_RETURN(std::vector<ShardRecord> shards,
                   core_.state().ListShards(job.job_id));
  ASSIGN_OR_RETURN(lora::LlamaConfig model, core_.LoadJobModelConfig(job));
  ASSIGN_OR_RETURN(
      const double unit_credit,
      UnitCreditFlop(model.Shape(), job.spec.lora(), job.spec.training()));
  std::vector<AggregationInput> inputs;
  std::vector<ResultVerdict> input_verdicts;
  std::vector<double> input_losses;
  for (const ResultRecord& result : accepted) {
    ResultVerdict verdict;
    verdict.unit_id = result.unit_id;
    verdict.worker_id = result.worker_id;
    if (result.l2_norm < floor) {
      verdict.reason = v1::REJECT_NORM_TOO_SMALL;
      verdict.message = absl::StrCat(
          "L2 norm ", result.l2_norm, " is below ", floor,
          ", the round's floor from its median: left out of the aggregate");
      exclude_with_duplicates(verdict);
      continue;
    }
    if (result.shard_index >= shards.size())
      return absl::InternalError("result for a shard the job does not have");
    AggregationInput input;
    ASSIGN_OR_RETURN(input.delta_path,
                     core_.blobs().ObjectPath(result.header.content_hash()));
    input.sample_count =
        std::max<uint64_t>(1, shards[result.shard_index].records);
    input.worker_id = result.worker_id;
    input.shard_index = result.shard_index;
    inputs.push_back(input);
    input_verdicts.push_back(verdict);
    auto loss = result.header.metrics().find("train_loss");
    input_losses.push_back(loss != result.header.metrics().end()
                               ? loss->second
                               : std::numeric_limits<double>::quiet_NaN());
  }
  if (inputs.empty()) return std::nullopt;
  aggregate.inputs = inputs.size();
  const Aggregator aggregator(rule);
  aggregate.path = absl::StrCat(core_.options().data_dir, "/tmp/aggregate-",
                                job.job_id, "-r", round.round, ".safetensors");
  ASSIGN_OR_RETURN(lora::AggregationReport report,
                   aggregator.Aggregate(parent_path, inputs, aggregate.path));
  aggregate.truncation_error = report.truncation_error;
  double loss_sum = 0, loss_weight = 0;
  const bool replicated = job.spec.replication() >= 2;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ResultVerdict& verdict = input_verdicts[i];
    const std::vector<ResultRecord>& duplicates =
        duplicates_of(verdict.unit_id);
    if (!report.selected[i]) {
      // Far from its peers: the robust rule left it out; it earns nothing,
      // and neither do the replicas that agreed with it.
      verdict.reason = v1::REJECT_OUTLIER;
      const bool opposed =
          i < report.cosines.size() && !(report.cosines[i] > 0);
      verdict.message = absl::StrCat(
          "left out of the aggregate by ", aggregator.name(), ": ",
          opposed ? absl::StrFormat("points against the round's other deltas "
                                    "(cosine %.3f with their median)",
                                    report.cosines[i])
                  : "too far from the round's other deltas");
      exclude_with_duplicates(verdict);
      continue;
    }
    ++aggregate.used;
    aggregate.samples += ExpectedSamples(job.spec.training());
    verdict.credit_flop = unit_credit;
    // Validated by a quorum when replicas agreed; a lone trusted result was
    // not compared.
    verdict.replica = replicated && !duplicates.empty()
                          ? ResultVerdict::Replica::kAgreed
                          : ResultVerdict::Replica::kNotCompared;
    aggregate.credited.push_back(verdict);
    for (const ResultRecord& duplicate : duplicates) {
      ResultVerdict agreed = verdict;
      agreed.unit_id = duplicate.unit_id;
      agreed.worker_id = duplicate.worker_id;
      aggregate.credited.push_back(agreed);
    }
    if (std::isfinite(input_losses[i])) {
      loss_sum += input_losses[i] * static_cast<double>(inputs[i].sample_count);
      loss_weight += static_cast<double>(inputs[i].sample_count);
    }
  }
  aggregate.train_loss = loss_weight > 0
                             ? loss_sum / loss_weight
                             : std::numeric_limits<double>::quiet_NaN();
  return std::optional<RoundAggregate>(std::move(aggregate));
}

absl::Status RoundCloser::PublishRound(
    const JobRecord& job, const RoundRecord& round, RoundAggregate aggregate,
    const std::string& model_sha, const std::optional<ValidationScore>& score,
    uint32_t validation_retries) {
  std::string published_sha = model_sha;
  if (published_sha.empty()) {
    ASSIGN_OR_RETURN(published_sha, core_.blobs().PutFile(aggregate.path));
  }
  ASSIGN_OR_RETURN(uint64_t model_size, core_.blobs().Size(published_sha));
  RoundOutcome outcome;
  outcome.credited = std::move(aggregate.credited);
  outcome.excluded = std::move(aggregate.excluded);
  v1::SignedAdapter& adapter = outcome.adapter.adapter;
  adapter.set_job_id(job.job_id);
  adapter.set_version(round.round);
  adapter.set_parent_version(round.parent_version);
  adapter.set_base_model_hash(job.spec.base_model_hash());
  *adapter.mutable_adapter_model() =
      MakeRef(published_sha, model_size, "adapter_model.safetensors");
  *adapter.mutable_adapter_config() = job.adapter_config;
  adapter.set_sample_count(aggregate.samples);
  auto& metrics = *adapter.mutable_metrics();
  if (std::isfinite(aggregate.train_loss))
    metrics["train_loss"] = aggregate.train_loss;
  metrics["deltas"] = static_cast<double>(aggregate.used);
  if (score.has_value()) {
    if (score->slices_scored > 0) {
      metrics["validation_loss"] = score->candidate_loss;
      metrics["parent_validation_loss"] = score->parent_loss;
    }
    metrics["validation_slices"] = score->slices_scored;
    metrics["validation_retries"] = validation_retries;
    outcome.credited.insert(outcome.credited.end(), score->credited.begin(),
                            score->credited.end());
    outcome.excluded.insert(outcome.excluded.end(), score->excluded.begin(),
                            score->excluded.end());
  }
  if (aggregate.rule.exact == lora::ExactStrategy::kSvd)
    metrics["truncation_error"] = aggregate.truncation_error;
  adapter.set_published_at_ms(core_.Now());
  adapter.set_content_hash(
      AdapterContentHash(published_sha, job.adapter_config.sha256()));
  ASSIGN_OR_RETURN(
      std::string signature,
      SignPayload(core_.identity(), AdapterSigningPayload(adapter)));
  adapter.set_signature(signature);
  if (round.round < job.spec.rounds()) {
    outcome.next_round =
        MakeRound(job, round.round + 1, adapter.version(), core_.Now());
    outcome.next_units = MakeUnits(job, round.round + 1);
  }
  absl::MutexLock lock(&core_.decision_mu());
  ASSIGN_OR_RETURN(std::optional<JobRecord> current,
                   core_.state().GetJob(job.job_id));
  if (!current.has_value() || current->state != v1::JOB_RUNNING)
    return absl::OkStatus();  // cancelled while aggregating
  absl::Status closed =
      core_.state().CloseRound(job.job_id, round.round, outcome);
  if (absl::IsFailedPrecondition(closed)) return absl::OkStatus();
  if (closed.ok()) {
    core_.metrics().RecordRoundPublished(
        static_cast<double>(core_.Now() - round.opened_ms) / 1000.0);
  }
  return closed;
}

}  // namespace openforce::coordinator
