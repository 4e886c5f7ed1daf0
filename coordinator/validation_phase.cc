// The validation phase of a round (see round_closer.h), for jobs with a
// held-out split: the aggregate becomes the round's candidate, workers score
// it and its parent on slices of the held-out records in validation units
// (forward only, signed, replicated like training units), the reports of each
// slice are judged by replica quorum, and the candidate is published, or,
// when it is clearly worse than its parent, aggregated once more with
// Multi-Krum leaving out as many deltas as it can and validated again.
#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/credit.h"
#include "coordinator/internal/planning.h"
#include "coordinator/internal/replica_quorum.h"
#include "coordinator/round_closer.h"

namespace openforce::coordinator {
namespace {

double RelativeDifference(double a, double b) {
  const double scale = std::max({std::abs(a), std::abs(b), 1e-12});
  return std::abs(a - b) / scale;
}

}  // namespace

absl::Status RoundCloser::BeginCandidate(const JobRecord& job,
                                         const RoundRecord& round,
                                         RoundAggregate aggregate,
                                         uint32_t attempt) {
  ASSIGN_OR_RETURN(std::string candidate_sha,
                   core_.blobs().PutFile(aggregate.path));
  RoundRecord candidate = round;
  candidate.candidate_sha256 = candidate_sha;
  candidate.candidate_attempt = attempt;
  candidate.candidate_rule = lora::FormatAggregationRule(aggregate.rule);
  // Validators get two lease lengths, and the round's own deadline if it is
  // later; a round without a deadline waits for them.
  if (round.deadline_ms != 0) {
    candidate.deadline_ms =
        std::max(round.deadline_ms,
                 core_.Now() + int64_t{2000} * job.spec.unit_deadline_s());
  }
  const std::vector<UnitRecord> units =
      MakeValidationUnits(job, round.round, attempt);
  absl::MutexLock lock(&core_.decision_mu());
  ASSIGN_OR_RETURN(std::optional<JobRecord> current,
                   core_.state().GetJob(job.job_id));
  if (!current.has_value() || current->state != v1::JOB_RUNNING)
    return absl::OkStatus();  // cancelled while aggregating
  absl::Status begun = core_.state().BeginValidation(candidate, units);
  if (absl::IsFailedPrecondition(begun)) return absl::OkStatus();
  return begun;
}

absl::StatusOr<RoundCloser::ValidationScore>
RoundCloser::JudgeValidationReports(
    const JobRecord& job, const std::vector<UnitRecord>& units,
    const std::vector<ValidationReportRecord>& reports, bool may_add_replicas) {
  ValidationScore score;
  ASSIGN_OR_RETURN(lora::LlamaConfig model, core_.LoadJobModelConfig(job));
  std::map<uint32_t, std::vector<size_t>> by_slice;
  for (size_t i = 0; i < reports.size(); ++i) {
    if (reports[i].accepted) by_slice[reports[i].slice].push_back(i);
  }
  std::map<uint32_t, uint32_t> replicas_made;
  for (const UnitRecord& unit : units) ++replicas_made[unit.shard_index];
  const bool replicated = job.spec.replication() >= 2;
  internal::ReplicaDistance distance = [&](size_t a,
                                           size_t b) -> absl::StatusOr<double> {
    const v1::ValidationReport& x = reports[a].report;
    const v1::ValidationReport& y = reports[b].report;
    return std::max(RelativeDifference(x.candidate_loss(), y.candidate_loss()),
                    RelativeDifference(x.parent_loss(), y.parent_loss()));
  };
  auto verdict = [&](size_t i) {
    ResultVerdict out;
    out.unit_id = reports[i].unit_id;
    out.worker_id = reports[i].worker_id;
    return out;
  };
  double candidate_sum = 0, parent_sum = 0, weight = 0;
  for (const auto& [slice, indices] : by_slice) {
    const auto [begin, end] = ValidationSliceRange(job.spec, slice);
    const double credit =
        ValidationCreditFlop(model.Shape(), end - begin, job.spec.training());
    internal::ShardQuorum quorum;
    if (!replicated) {
      quorum.canonical = indices.front();  // a lone report stands
    } else {
      const bool may_add =
          may_add_replicas &&
          replicas_made[slice] < job.spec.replication() + kMaxExtraReplicas;
      ASSIGN_OR_RETURN(quorum, internal::DecideShardQuorum(
                                   indices, distance, kValidationLossTolerance,
                                   /*trusted_single=*/false, may_add));
    }
    if (quorum.needs_replica) {
      score.slices_needing_replica.push_back(slice);
      continue;
    }
    if (quorum.canonical.has_value()) {
      const v1::ValidationReport& agreed = reports[*quorum.canonical].report;
      const double records = static_cast<double>(end - begin);
      candidate_sum += agreed.candidate_loss() * records;
      parent_sum += agreed.parent_loss() * records;
      weight += records;
      ++score.slices_scored;
      std::vector<size_t> members = quorum.agreeing;
      members.push_back(*quorum.canonical);
      for (size_t i : members) {
        ResultVerdict credited = verdict(i);
        credited.credit_flop = credit;
        credited.replica = replicated ? ResultVerdict::Replica::kAgreed
                                      : ResultVerdict::Replica::kNotCompared;
        score.credited.push_back(credited);
      }
    }
    for (size_t i : quorum.disagreeing) {
      ResultVerdict excluded = verdict(i);
      excluded.reason = v1::REJECT_REPLICA_DISAGREES;
      excluded.message = absl::StrCat(
          "validation losses differ from the quorum of slice ", slice,
          "'s replicas by more than ", kValidationLossTolerance, " (relative)");
      excluded.replica = ResultVerdict::Replica::kDisagreed;
      score.excluded.push_back(excluded);
    }
    for (size_t i : quorum.unresolved) {
      ResultVerdict excluded = verdict(i);
      excluded.reason = v1::REJECT_REPLICA_DISAGREES;
      excluded.message =
          absl::StrCat("validation slice ", slice,
                       " has no two reports that agree and may have no more");
      score.excluded.push_back(excluded);
    }
  }
  if (weight > 0) {
    score.candidate_loss = candidate_sum / weight;
    score.parent_loss = parent_sum / weight;
  }
  return score;
}

absl::Status RoundCloser::AdvanceValidation(
    const JobRecord& job, const RoundRecord& round,
    const std::vector<UnitRecord>& training_units,
    const std::vector<UnitRecord>& validation_units) {
  const uint32_t attempt = round.candidate_attempt;
  std::map<uint32_t, std::vector<UnitRecord>> units_by_attempt;
  for (const UnitRecord& unit : validation_units)
    units_by_attempt[unit.attempt].push_back(unit);
  const std::vector<UnitRecord>& current = units_by_attempt[attempt];
  const bool all_reported =
      !current.empty() &&
      std::all_of(current.begin(), current.end(), [](const UnitRecord& unit) {
        return unit.state == v1::UNIT_ACCEPTED;
      });
  const bool past_deadline =
      round.deadline_ms != 0 && core_.Now() >= round.deadline_ms;
  if (!all_reported && !past_deadline) return absl::OkStatus();

  ASSIGN_OR_RETURN(
      std::vector<ValidationReportRecord> all_reports,
      core_.state().ListValidationReports(job.job_id, round.round));
  std::map<uint32_t, std::vector<ValidationReportRecord>> reports_by_attempt;
  for (ValidationReportRecord& report : all_reports)
    reports_by_attempt[report.attempt].push_back(std::move(report));
  ASSIGN_OR_RETURN(
      ValidationScore score,
      JudgeValidationReports(job, current, reports_by_attempt[attempt],
                             /*may_add_replicas=*/!past_deadline));
  if (!score.slices_needing_replica.empty()) {
    // Validators disagreed without a quorum: one more replica per slice.
    absl::MutexLock lock(&core_.decision_mu());
    return core_.state().AddUnits(
        NextReplicas(current, score.slices_needing_replica));
  }

  // The candidate's verdicts over deltas, made again: training units were
  // closed when the candidate was made, so they come out the same.
  ASSIGN_OR_RETURN(std::vector<ResultRecord> accepted,
                   core_.AcceptedResults(job.job_id, round.round));
  ASSIGN_OR_RETURN(ReplicaVerdicts verdicts,
                   ValidateReplicas(job, training_units, accepted,
                                    /*may_add_replicas=*/false));
  ASSIGN_OR_RETURN(lora::AggregationRule rule,
                   lora::ParseAggregationRule(round.candidate_rule));
  ASSIGN_OR_RETURN(std::optional<RoundAggregate> aggregate,
                   BuildAggregate(job, round, verdicts, rule));
  if (!aggregate.has_value()) {
    return absl::InternalError(absl::StrCat(
        "round ", round.round, "'s candidate has no delta to aggregate now"));
  }
  const double tolerance = job.spec.validation_tolerance() > 0
                               ? job.spec.validation_tolerance()
                               : kDefaultValidationTolerance;
  const int most_outliers = (static_cast<int>(aggregate->inputs) - 3) / 2;
  if (attempt == 1 && score.slices_scored > 0 &&
      score.candidate_loss > score.parent_loss * (1 + tolerance) &&
      most_outliers >= 1) {
    lora::AggregationRule stricter = rule;
    stricter.combiner = lora::RobustCombiner::kMultiKrum;
    stricter.krum_f = most_outliers;
    ASSIGN_OR_RETURN(std::optional<RoundAggregate> retry,
                     BuildAggregate(job, round, verdicts, stricter));
    if (retry.has_value())
      return BeginCandidate(job, round, *std::move(retry), attempt + 1);
  }
  // Earlier attempts' validators did their work too: judged as they stand.
  for (uint32_t earlier = 1; earlier < attempt; ++earlier) {
    ASSIGN_OR_RETURN(ValidationScore judged,
                     JudgeValidationReports(job, units_by_attempt[earlier],
                                            reports_by_attempt[earlier],
                                            /*may_add_replicas=*/false));
    score.credited.insert(score.credited.end(), judged.credited.begin(),
                          judged.credited.end());
    score.excluded.insert(score.excluded.end(), judged.excluded.begin(),
                          judged.excluded.end());
  }
  return PublishRound(job, round, *std::move(aggregate), round.candidate_sha256,
                      score,
                      /*validation_retries=*/attempt - 1);
}

}  // namespace openforce::coordinator
