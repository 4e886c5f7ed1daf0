// Byte quantities; see byte_size.h.
#include "common/byte_size.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace openforce {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  size_t unit_start = 0;
  while (unit_start < trimmed.size() &&
         (absl::ascii_isdigit(trimmed[unit_start]) ||
          trimmed[unit_start] == '.')) {
    ++unit_start;
  }
  absl::string_view number = trimmed.substr(0, unit_start);
  std::string unit = absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(trimmed.substr(unit_start)));
  double value = 0;
  if (number.empty() || !absl::SimpleAtod(number, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not a byte size (examples: 4GiB, 512MiB, 1000000)"));
  }
  static constexpr std::pair<const char*, double> kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", 1024.0},
      {"kib", 1024.0},
      {"m", 1048576.0},
      {"mib", 1048576.0},
      {"g", 1073741824.0},
      {"gib", 1073741824.0},
      {"t", 1099511627776.0},
      {"tib", 1099511627776.0},
      {"kb", 1e3},
      {"mb", 1e6},
      {"gb", 1e9},
      {"tb", 1e12},
  };
  for (const auto& [name, scale] : kUnits) {
    if (unit == name) {
      double bytes = std::round(value * scale);
      if (bytes > 1.8e19) {
        return absl::InvalidArgumentError(
            absl::StrCat("byte size '", text, "' is too large"));
      }
      return static_cast<uint64_t>(bytes);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", text, "' has an unknown unit '", unit,
                   "' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"));
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s", value, kNames[unit]);
}

bool AbslParseFlag(absl::string_view text, ByteSize* size, std::string* error) {
  absl::StatusOr<uint64_t> bytes = ParseByteSize(text);
  if (!bytes.ok()) {
    *error = std::string(bytes.status().message());
    return false;
  }
  size->bytes = *bytes;
  return true;
}

std::string AbslUnparseFlag(ByteSize size) { return absl::StrCat(size.bytes); }

}  // namespace openforce
