// Aggregation strategies; see aggregator.h.
#include "coordinator/aggregator.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lora/adapter_delta.h"

namespace openforce::coordinator {
namespace {

// FedAvg (McMahan et al.): the parent plus the sample-weighted mean of the
// deltas. Applied to LoRA's A and B separately, as federated LoRA commonly
// does; every worker of a round starts from the same A and B.
class FedAvgAggregator : public Aggregator {
 public:
  absl::string_view name() const override { return "fedavg"; }
  absl::Status Aggregate(const std::string& parent_path,
                         const std::vector<AggregationInput>& deltas,
                         const std::string& out_path) const override {
    std::vector<lora::WeightedDelta> weighted;
    for (const AggregationInput& delta : deltas) {
      weighted.push_back(
          {delta.delta_path, static_cast<double>(delta.sample_count)});
    }
    return lora::FedAvgAdapterFiles(parent_path, weighted, out_path);
  }
};

}  // namespace

std::vector<std::string> AggregatorNames() { return {"fedavg"}; }

absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(
    absl::string_view name) {
  if (name.empty() || name == "fedavg")
    return std::make_unique<FedAvgAggregator>();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown aggregation '", name,
                   "' (known: ", absl::StrJoin(AggregatorNames(), ", "), ")"));
}

}  // namespace openforce::coordinator
