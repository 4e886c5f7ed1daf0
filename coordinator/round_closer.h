// Round closing: when a running job's current round is complete or past its
// deadline, the replicas of each shard are judged (replica_validation.cc),
// the accepted deltas aggregated under the job's rule, and the result either
// handed to validation units (validation_phase.cc) or signed and published
// as the next adapter version, with credit for the workers whose deltas it
// used; a round that cannot close fails its job (round_closing.cc).
#ifndef OPENFORCE_COORDINATOR_ROUND_CLOSER_H_
#define OPENFORCE_COORDINATOR_ROUND_CLOSER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/internal/coordinator_core.h"
#include "coordinator/state_store.h"
#include "lora/aggregation_rule.h"

namespace openforce::coordinator {

class RoundCloser {
 public:
  explicit RoundCloser(CoordinatorCore* core) : core_(*core) {}
  RoundCloser(const RoundCloser&) = delete;
  RoundCloser& operator=(const RoundCloser&) = delete;

  // Closes the current round of every running job that is ready; one job's
  // failure does not stop the others (the first error is returned). A
  // round is closed under its job's closing lock (StateStore), so two
  // calls, here or in another replica, never aggregate it at once.
  [[nodiscard]] absl::Status CloseReadyRounds();

 private:
  absl::Status MaybeCloseRound(const JobRecord& job);
  // Replica validation of a finished (or past-deadline) round: which result
  // of each shard is aggregated, which agree with it, which are invalid, and
  // the shards that need another replica.
  struct ReplicaVerdicts {
    std::vector<ResultRecord> canonical;
    // canonical unit id -> results that agreed with it
    std::map<std::string, std::vector<ResultRecord>> duplicates;
    std::vector<ResultVerdict> excluded;
    std::vector<uint32_t> shards_needing_replica;
  };
  absl::StatusOr<ReplicaVerdicts> ValidateReplicas(
      const JobRecord& job, const std::vector<UnitRecord>& units,
      const std::vector<ResultRecord>& accepted, bool may_add_replicas);
  // A round's deltas aggregated under one rule, not yet published: the
  // file (removed with this), what each result earns or why it is left out,
  // and the numbers the adapter carries.
  struct RoundAggregate {
    RoundAggregate() = default;
    RoundAggregate(RoundAggregate&&) = default;
    RoundAggregate& operator=(RoundAggregate&&) = default;
    ~RoundAggregate();
    std::string path;
    lora::AggregationRule rule;
    std::vector<ResultVerdict> credited;
    std::vector<ResultVerdict> excluded;
    size_t inputs = 0;  // deltas offered to the rule
    size_t used = 0;    // deltas it kept
    uint64_t samples = 0;
    double train_loss = 0;  // sample-weighted; NaN without reports
    double truncation_error = 0;
  };
  // nullopt when every delta was left out.
  absl::StatusOr<std::optional<RoundAggregate>> BuildAggregate(
      const JobRecord& job, const RoundRecord& round,
      const ReplicaVerdicts& verdicts, const lora::AggregationRule& rule);
  // The round's deltas are in: aggregate, then publish or, with a validation
  // split, hand the candidate to validation units.
  absl::Status AggregateRound(const JobRecord& job, const RoundRecord& round,
                              const ReplicaVerdicts& verdicts);
  // Scores from a round's validation reports, and what each report earns.
  struct ValidationScore {
    double parent_loss = 0;
    double candidate_loss = 0;
    uint32_t slices_scored = 0;  // slices with an agreed (or lone) report
    std::vector<ResultVerdict> credited;
    std::vector<ResultVerdict> excluded;
    std::vector<uint32_t> slices_needing_replica;
  };
  // Validation phase (validation_phase.cc): stores `aggregate` as the
  // round's candidate of `attempt` and opens its validation units; then,
  // once they reported (or the deadline passed), judges the reports by
  // replica quorum, retries a worse candidate once without outliers, and
  // publishes.
  absl::Status BeginCandidate(const JobRecord& job, const RoundRecord& round,
                              RoundAggregate aggregate, uint32_t attempt);
  absl::Status AdvanceValidation(
      const JobRecord& job, const RoundRecord& round,
      const std::vector<UnitRecord>& training_units,
      const std::vector<UnitRecord>& validation_units);
  absl::StatusOr<ValidationScore> JudgeValidationReports(
      const JobRecord& job, const std::vector<UnitRecord>& units,
      const std::vector<ValidationReportRecord>& reports,
      bool may_add_replicas);
  // Signs and publishes `aggregate` (its file, or the stored candidate
  // `model_sha` when set) as the round's version, credits, and opens the
  // next round.
  absl::Status PublishRound(const JobRecord& job, const RoundRecord& round,
                            RoundAggregate aggregate,
                            const std::string& model_sha,
                            const std::optional<ValidationScore>& score,
                            uint32_t validation_retries);
  absl::Status FailJob(const JobRecord& job, const std::string& message);

  CoordinatorCore& core_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_ROUND_CLOSER_H_
