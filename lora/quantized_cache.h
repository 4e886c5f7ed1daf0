// The quantized base of a model, written next to it so that the next load maps
// the codes instead of quantizing again, and the hash that identifies a
// quantized base: quantizing is deterministic, so every worker of a job that
// quantizes the same files the same way arrives at the same hash, which the
// job records and each worker checks.
//
// The cache is a safetensors file, "openforce-quantized-<format>.safetensors"
// ("-<format>-embeddings" with quantized embeddings and head), holding for
// each quantized weight "<name>.codes", "<name>.scales" and for nf4
// "<name>.group_scales" and "<name>.absmax_mean", with metadata naming the
// format, the source files it was made from (name, size, modification time)
// and the SHA-256 of its matrices. A cache is read only when all of that
// matches the model as it is now; it is validated like any file a user was
// handed (shapes and dtypes against config.json, finite scales, the hash).
#ifndef OPENFORCE_LORA_QUANTIZED_CACHE_H_
#define OPENFORCE_LORA_QUANTIZED_CACHE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/weight_format.h"
#include "lora/quantized_matrix.h"

namespace openforce::lora {

std::string QuantizedCachePath(const std::string& model_dir,
                               WeightFormat format, bool embeddings);

// What a cache must have been made from and with.
struct QuantizedCacheKey {
  WeightFormat format = WeightFormat::kNone;
  bool embeddings = false;
  // SourceFingerprint of the model's weight files.
  std::string source;
};

// "name:size:mtime_ns;" for each of `files` (names in `model_dir`): a file
// replaced or rewritten in place changes it.
[[nodiscard]] absl::StatusOr<std::string> SourceFingerprint(
    const std::string& model_dir, const std::vector<std::string>& files);

// Lowercase hex SHA-256 of one matrix: its format, shape, codes and scales
// (tensors on any device; copied to the CPU to hash). Throws c10::Error.
std::string QuantizedMatrixSha256(const QuantizedMatrix& matrix);

// The quantized base's hash: SHA-256 over each weight's name and
// QuantizedMatrixSha256, in name order (Hugging Face tensor names).
std::string QuantizedBaseSha256(
    const std::map<std::string, std::string>& matrix_sha256);

// Writes `matrices` (keyed by tensor name) atomically, one tensor at a time.
[[nodiscard]] absl::Status WriteQuantizedCache(
    const std::string& path, const QuantizedCacheKey& key,
    const std::map<std::string, QuantizedMatrix>& matrices,
    const std::string& base_sha256);

struct QuantizedCache {
  std::map<std::string, QuantizedMatrix> matrices;  // CPU, views of the file
  std::string base_sha256;  // QuantizedBaseSha256, verified
};

// Maps the cache at `path` holding exactly the weights of `expected` (name ->
// [rows, cols]). NotFound: no file. FailedPrecondition: made from other files
// or with other settings. InvalidArgument: not a valid cache for these
// weights. DataLoss: its contents do not hash to what it records.
[[nodiscard]] absl::StatusOr<QuantizedCache> ReadQuantizedCache(
    const std::string& path, const QuantizedCacheKey& key,
    const std::map<std::string, std::vector<int64_t>>& expected);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_QUANTIZED_CACHE_H_
