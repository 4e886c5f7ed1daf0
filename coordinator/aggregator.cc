// Aggregation of delta files by a job's rule; see aggregator.h.
#include "coordinator/aggregator.h"

#include <algorithm>

#include "common/status_macros.h"

namespace openforce::coordinator {

absl::StatusOr<lora::AggregationReport> Aggregator::Aggregate(
    const std::string& parent_path, const std::vector<AggregationInput>& deltas,
    const std::string& out_path) const {
  std::vector<std::string> paths;
  std::vector<double> weights;
  for (const AggregationInput& delta : deltas) {
    paths.push_back(delta.delta_path);
    weights.push_back(
        static_cast<double>(std::max<uint64_t>(1, delta.sample_count)));
  }
  lora::AggregationReport report;
  RETURN_IF_ERROR(lora::AggregateAdapterFiles(parent_path, paths, weights,
                                              rule_, out_path, &report));
  return report;
}

absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(
    absl::string_view name) {
  ASSIGN_OR_RETURN(lora::AggregationRule rule,
                   lora::ParseAggregationRule(name));
  return std::make_unique<Aggregator>(rule);
}

}  // namespace openforce::coordinator
