// How a round's accepted deltas become the next adapter version: the job's
// aggregation rule (lora/aggregation_rule.h: fedavg, ffa or svd, with
// clipping, median, trimmed mean or Multi-Krum) applied to delta files.
#ifndef OPENFORCE_COORDINATOR_AGGREGATOR_H_
#define OPENFORCE_COORDINATOR_AGGREGATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lora/aggregation_rule.h"
#include "lora/federated_aggregation.h"

namespace openforce::coordinator {

struct AggregationInput {
  std::string delta_path;  // verified delta safetensors
  uint64_t sample_count = 0;
  std::string worker_id;
  uint32_t shard_index = 0;
};

class Aggregator {
 public:
  explicit Aggregator(lora::AggregationRule rule) : rule_(rule) {}

  // The canonical rule text, e.g. "ffa+clip:2+median".
  std::string name() const { return lora::FormatAggregationRule(rule_); }
  const lora::AggregationRule& rule() const { return rule_; }

  // Writes the next adapter_model.safetensors to `out_path` from the parent
  // version's file and the round's accepted deltas, weighted by their
  // coordinator-known sample counts; what it decided, input by input.
  [[nodiscard]] absl::StatusOr<lora::AggregationReport> Aggregate(
      const std::string& parent_path,
      const std::vector<AggregationInput>& deltas,
      const std::string& out_path) const;

 private:
  lora::AggregationRule rule_;
};

// The aggregator for a job's `aggregation` text ("" is the default rule);
// InvalidArgument naming what is wrong otherwise.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(
    absl::string_view name);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_AGGREGATOR_H_
