// How a federated round combines its deltas, as a job names it: one exact
// strategy (how LoRA's factors are combined) and optional robust steps (what
// a hostile minority cannot do to the result), written
// "<exact>[+<robust>[:<parameter>]]...", e.g. "ffa+clip:2+trimmed_mean:0.2".
// Torch-free so the coordinator's job validation can parse it.
#ifndef OPENFORCE_LORA_AGGREGATION_RULE_H_
#define OPENFORCE_LORA_AGGREGATION_RULE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce::lora {

enum class ExactStrategy {
  // FedIT: A and B averaged separately. Not the mean of the updates
  // (mean(B) mean(A) != mean(B A)); kept for comparison.
  kFedAvg,
  // FFA-LoRA: A stays at version 0 for the whole job; workers train and
  // upload B only; the mean of B is the exact mean of the updates B A.
  kFfa,
  // The weighted mean of the products B_i A_i, computed in factored form and
  // re-factored to the job's rank by a truncated SVD (the best rank-r
  // approximation); the truncation error is reported.
  kSvd,
};

// Coordinate-wise or selection rules applied to the (clipped) deltas.
enum class RobustCombiner {
  kMean,         // weighted mean: no defence
  kMedian,       // coordinate-wise median: tolerates < 50% hostile
  kTrimmedMean,  // drop the beta fraction at each end: tolerates < beta
  kMultiKrum,    // keep the n - f deltas closest to their peers: f hostile,
                 // n >= 2f + 3
  // Centered clipping (Karimireddy, He & Jaggi 2021) around the geometric
  // median: each delta's distance from the center is clipped to tau x the
  // median distance, a few times. Breakdown point of the geometric median
  // (< 50% hostile) while an honest majority keeps (almost) its full weight;
  // it yields weights over whole deltas, so it composes with svd.
  kCenteredClip,
};

struct AggregationRule {
  ExactStrategy exact = ExactStrategy::kFedAvg;
  // Each delta is scaled down to at most clip_multiple x the round's median
  // delta norm; 0: no clipping. A scaled-up delta then weighs no more than an
  // honest one.
  double clip_multiple = 0;
  RobustCombiner combiner = RobustCombiner::kMean;
  double trim_fraction = 0.2;  // kTrimmedMean: fraction dropped at each end
  // kMultiKrum: hostile deltas tolerated; 0: 30% of the round's deltas.
  int krum_f = 0;
  // kCenteredClip: the clipping radius in multiples of the median distance
  // of the deltas from their geometric median.
  double center_clip_tau = 1.0;
  // Deltas whose cosine with the geometric median of the round's (clipped)
  // deltas is not positive are dropped before the combiner: they would move
  // the adapter against what the majority learned. A sign-flipped delta
  // points away from an honest majority's center; honest deltas, even on
  // non-IID shards, share the direction the common parent improves in.
  bool drop_opposed = false;

  // Uploads hold B only (FFA).
  bool b_only() const { return exact == ExactStrategy::kFfa; }
};

// What a job submitted without --aggregation gets: the rule the federation
// benchmark (tests/bench/federation_bench.cc) picks, the smallest worst case
// under attack (over several seeds) among the rules that cost nothing
// measurable on honest runs, IID and non-IID. Exact products; every delta
// clipped to twice the round's median norm (a scaled or noise delta weighs
// no more than an honest one); deltas pointing against the round's geometric
// median dropped (sign flips); then centered clipping around the geometric
// median of the rest. Multi-Krum and coordinate-wise rules cost 3-72% on
// non-IID honest runs there.
inline constexpr absl::string_view kDefaultAggregation =
    "svd+clip:2+direction+centered_clip:1";

// Parses a rule; "" is kDefaultAggregation. InvalidArgument names the part
// that is wrong and what is accepted.
[[nodiscard]] absl::StatusOr<AggregationRule> ParseAggregationRule(
    absl::string_view text);

// The canonical text of `rule` (every parameter explicit).
std::string FormatAggregationRule(const AggregationRule& rule);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_AGGREGATION_RULE_H_
