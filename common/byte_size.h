// Human-readable byte quantities for flags, config files and probe output:
// "4GiB", "512 MiB", "8GB" (decimal), "1048576". ByteSize is usable as an
// ABSL_FLAG type.
#ifndef OPENFORCE_COMMON_BYTE_SIZE_H_
#define OPENFORCE_COMMON_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;

// Accepts an integer or decimal number followed by an optional unit: B,
// KiB/MiB/GiB/TiB (powers of 1024), KB/MB/GB/TB (powers of 1000);
// case-insensitive, spaces allowed.
[[nodiscard]] absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// "3.5 GiB", "512 MiB", "17 B": binary units with one decimal where useful.
std::string FormatBytes(uint64_t bytes);

struct ByteSize {
  uint64_t bytes = 0;
};

// Abseil flag support for ByteSize.
bool AbslParseFlag(absl::string_view text, ByteSize* size, std::string* error);
std::string AbslUnparseFlag(ByteSize size);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_BYTE_SIZE_H_
