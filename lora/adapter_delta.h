// Federated arithmetic on adapter files: what a worker uploads (the trained
// adapter minus the adapter it started from, as PEFT-keyed F32 safetensors),
// the checks the coordinator runs on such a delta before accepting it (names,
// shapes, dtypes, finiteness, L2 norm), and how far apart two replicas are.
// Combining deltas is federated_aggregation.h's.
#ifndef OPENFORCE_LORA_ADAPTER_DELTA_H_
#define OPENFORCE_LORA_ADAPTER_DELTA_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lora/llama_config.h"
#include "lora/lora_adapter.h"

namespace openforce::lora {

struct DeltaCheck {
  // What is wrong with a delta, most basic first; kNone when it passed.
  enum class Problem {
    kNone,
    kBadShape,
    kNonFinite,
    kNormTooLarge,
    kNormTooSmall
  };
  Problem problem = Problem::kNone;
  std::string message;  // names the tensor and the value found
  double l2_norm = 0;   // over every tensor; set when shapes were right
  bool ok() const { return problem == Problem::kNone; }
};

// What a delta holds: every A and B, or B only (FFA-LoRA, where A is frozen
// for the whole job: half the upload).
enum class DeltaLayout { kFull, kBOnly };

struct DeltaLimits {
  double max_norm = 0;  // 0: no upper bound
  double min_norm = 0;  // below it nothing was trained; 0: no floor
};

// The largest safetensors header a delta for `expected_tensors` tensors may
// have: a few KiB per tensor, so a hostile header cannot cost more memory
// than the tensors it describes.
uint64_t MaxDeltaHeaderBytes(size_t expected_tensors);

// Checks the safetensors file at `path` against the adapter shape of `model`
// and `config` (only B tensors for kBOnly): a header within
// MaxDeltaHeaderBytes(), exactly the expected tensor names, their shapes, dtype
// F32, every value finite, and the L2 norm over all tensors within `limits`. A
// file that is not valid safetensors is kBadShape. Errors (non-OK status) are
// for failures that say nothing about the delta, such as an unreadable file.
[[nodiscard]] absl::StatusOr<DeltaCheck> CheckAdapterDelta(
    const std::string& path, const LlamaConfig& model, const LoraConfig& config,
    const DeltaLimits& limits, DeltaLayout layout = DeltaLayout::kFull);

// Writes `adapter` - `parent` to `path` (atomically) as F32 safetensors with
// PEFT keys: the bytes a worker signs and uploads. kBOnly leaves A out.
[[nodiscard]] absl::Status WriteAdapterDelta(
    const LoraAdapter& adapter, const LoraAdapter& parent,
    const std::string& path, DeltaLayout layout = DeltaLayout::kFull);

// ||a - b|| / max(||a||, ||b||) over every tensor of two delta files with the
// same names and shapes (0 when both are zero): how far apart two replicas
// of one unit are.
[[nodiscard]] absl::StatusOr<double> RelativeDeltaDistance(
    const std::string& path_a, const std::string& path_b);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_ADAPTER_DELTA_H_
