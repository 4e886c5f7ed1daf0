// How a round's accepted deltas become the next adapter version. Strategies
// (FedAvg now; trimmed means or replica-aware ones later) implement this one
// interface and are picked by name from a job's spec.
#ifndef OPENFORCE_COORDINATOR_AGGREGATOR_H_
#define OPENFORCE_COORDINATOR_AGGREGATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce::coordinator {

struct AggregationInput {
  std::string delta_path;  // verified delta safetensors
  uint64_t sample_count = 0;
  std::string worker_id;
  uint32_t shard_index = 0;
};

class Aggregator {
 public:
  virtual ~Aggregator() = default;
  virtual absl::string_view name() const = 0;
  // Writes the next adapter_model.safetensors to `out_path` from the parent
  // version's file and the round's accepted deltas.
  [[nodiscard]] virtual absl::Status Aggregate(
      const std::string& parent_path,
      const std::vector<AggregationInput>& deltas,
      const std::string& out_path) const = 0;
};

// Names MakeAggregator() knows, for error messages and validation.
std::vector<std::string> AggregatorNames();

// The strategy called `name` ("" means "fedavg"); InvalidArgument listing the
// known names otherwise.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Aggregator>> MakeAggregator(
    absl::string_view name);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_AGGREGATOR_H_
