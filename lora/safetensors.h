// Reading and writing the safetensors format (Hugging Face checkpoints and PEFT
// adapters). Files are memory-mapped copy-on-write: tensors are views of the
// mapping, so loading an F32 checkpoint for F32 compute makes no second copy in
// RAM, and merging an adapter into a weight copies only the pages it touches.
// Every header is validated before any tensor is handed out; each failure names
// the file and the tensor.
#ifndef OPENFORCE_LORA_SAFETENSORS_H_
#define OPENFORCE_LORA_SAFETENSORS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace openforce::lora {

// The JSON header is bounded so a hostile file cannot make us parse gigabytes.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

struct SafetensorsOpenOptions {
  // Lowers the header limit for files whose expected contents are known (an
  // adapter delta needs a few KiB per tensor).
  uint64_t max_header_bytes = kMaxSafetensorsHeaderBytes;
  // I8 and U8 tensors: openforce's quantized-base cache holds them. Models,
  // adapters and deltas are floating point, so they are refused by default.
  bool allow_int8 = false;
};

struct SafetensorsEntry {
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`: header length within the file and under the
  // limit, valid JSON, known dtypes (F32, F16, BF16), byte ranges that match
  // dtype and shape, lie inside the data section and do not overlap.
  // `max_header_bytes` lowers the header limit for files whose expected
  // contents are known (an adapter delta needs a few KiB per tensor).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path,
      uint64_t max_header_bytes = kMaxSafetensorsHeaderBytes);
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path, const SafetensorsOpenOptions& options);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  const std::map<std::string, SafetensorsEntry>& entries() const {
    return entries_;
  }
  bool Contains(const std::string& name) const {
    return entries_.count(name) > 0;
  }

  // A CPU tensor viewing the mapped bytes; it keeps the mapping alive. Writing
  // to it changes this process's private copy only, never the file.
  [[nodiscard]] absl::StatusOr<at::Tensor> Tensor(
      const std::string& name) const;

  // Gives back the memory of the mapped pages wholly inside tensor `name`
  // (madvise MADV_DONTNEED) once a loader has made its own copy (quantized
  // or converted): touched file pages otherwise stay in this process's
  // resident set until the file is closed, which on a 7B checkpoint doubles
  // the peak. Reading the tensor again maps the file's bytes back; only a
  // caller that wrote into the tensor (this process's private copy) would
  // lose something, and loaders never do.
  void DropPages(const std::string& name) const;

 private:
  struct Mapping;
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  uint64_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, SafetensorsEntry> entries_;
};

// Writes tensors (any device; F32, F16, BF16, I8 or U8) and string metadata
// atomically (temporary file, fsync, rename), one tensor at a time. Names must
// be unique and non-empty.
[[nodiscard]] absl::Status WriteSafetensors(
    const std::string& path,
    const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// "F32", "F16", "BF16", "I8", "U8" <-> at::ScalarType.
[[nodiscard]] absl::StatusOr<at::ScalarType> ParseSafetensorsDtype(
    const std::string& name);
[[nodiscard]] absl::StatusOr<std::string> SafetensorsDtypeName(
    at::ScalarType dtype);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_SAFETENSORS_H_
