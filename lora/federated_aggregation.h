// The aggregation math of a federated round: the parent adapter plus the
// round's deltas, combined by an AggregationRule (aggregation_rule.h) into the
// next adapter. Deltas are read one tensor at a time through a DeltaSource, so
// a round of many large deltas costs memory for one tensor per delta, not for
// every delta whole.
#ifndef OPENFORCE_LORA_FEDERATED_AGGREGATION_H_
#define OPENFORCE_LORA_FEDERATED_AGGREGATION_H_

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lora/aggregation_rule.h"

namespace openforce::lora {

// PEFT key -> tensor.
using AdapterTensors = std::map<std::string, at::Tensor>;

// Delta `client` (0-based) for the parent key `key`, as fp32 of the parent's
// shape; an undefined tensor means zero (B-only deltas have no A tensors).
using DeltaSource = std::function<absl::StatusOr<at::Tensor>(
    size_t client, const std::string& key)>;

struct AggregationReport {
  std::vector<double> norms;        // each delta's L2 norm as received
  std::vector<double> clip_scales;  // factor applied (1: not clipped)
  std::vector<bool> selected;  // went into the combination (direction, Krum)
  // direction: each delta's cosine with the round's geometric median (not
  // positive: dropped); empty for the other rules.
  std::vector<double> cosines;
  int krum_f = 0;  // f used (Krum)
  // Each delta's share of the combination (summing to 1 over the selected
  // ones): its weight, or what centered clipping left of it.
  std::vector<double> shares;
  // svd: ||M - M_r||_F / ||M||_F over every module, M the mean product and
  // M_r its rank-r re-factoring; 0 for the other strategies.
  double truncation_error = 0;
};

// The next adapter: parent combined with `num_clients` deltas by `rule`.
// `weights` (one per client, > 0, e.g. shard sizes) weight the mean; the
// coordinate-wise rules are unweighted, as in the literature. With kFfa the
// parent's A tensors are kept and the deltas' A ignored.
[[nodiscard]] absl::StatusOr<AdapterTensors> AggregateAdapterDeltas(
    const AdapterTensors& parent, const DeltaSource& deltas,
    const std::vector<double>& weights, const AggregationRule& rule,
    AggregationReport* report);

// The same over files: the parent's adapter_model.safetensors and delta
// safetensors (full or B-only), writing the result to `out_path`
// atomically.
[[nodiscard]] absl::Status AggregateAdapterFiles(
    const std::string& parent_path, const std::vector<std::string>& delta_paths,
    const std::vector<double>& weights, const AggregationRule& rule,
    const std::string& out_path, AggregationReport* report);

// The median of `values` (the mean of the middle two for an even count; 0
// when empty): the reference the round's norm rules scale from.
double Median(std::vector<double> values);

// "x.lora_A.weight" <-> "x.lora_B.weight"; empty when `key` is neither.
std::string PairedLoraKey(const std::string& key);
bool IsLoraAKey(const std::string& key);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_FEDERATED_AGGREGATION_H_
