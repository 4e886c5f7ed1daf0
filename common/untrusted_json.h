// Parsing JSON that came from a file a user was handed or from the wire:
// bounded nesting (so nothing downstream recurses without bound), no
// exception escaping, and error messages that quote at most a short prefix
// of a value.
#ifndef OPENFORCE_COMMON_UNTRUSTED_JSON_H_
#define OPENFORCE_COMMON_UNTRUSTED_JSON_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace openforce {

// Deeper than any config, tokenizer or adapter file needs.
inline constexpr int kMaxJsonDepth = 64;

// InvalidArgument naming `what` when arrays and objects in `text` nest deeper
// than `max_depth` (strings are skipped, so brackets inside them do not
// count). Linear time, constant memory.
[[nodiscard]] absl::Status CheckJsonDepth(absl::string_view text,
                                          absl::string_view what,
                                          int max_depth = kMaxJsonDepth);

// Parses `text`; InvalidArgument naming `what` for a syntax error or too deep
// a nesting. Never throws.
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseUntrustedJson(
    absl::string_view text, absl::string_view what,
    int max_depth = kMaxJsonDepth);

// Parses `text` as a JSON object and returns `read(object)` (a StatusOr).
// Not an object is InvalidArgument; so is any nlohmann exception `read` lets
// escape (a value of an unexpected type), so none crosses a Status API.
template <typename Read>
auto ReadUntrustedJsonObject(absl::string_view text, absl::string_view what,
                             Read read)
    -> decltype(read(std::declval<const nlohmann::json&>())) {
  absl::StatusOr<nlohmann::json> json = ParseUntrustedJson(text, what);
  if (!json.ok()) return json.status();
  if (!json->is_object()) {
    return absl::InvalidArgumentError(std::string(what) +
                                      ": not a JSON object");
  }
  try {
    return read(*json);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(std::string(what) +
                                      ": unexpected value: " + e.what());
  }
}

// `value` as compact JSON, cut to at most `max_chars` (with "..." appended
// when cut), for error messages.
std::string JsonPreview(const nlohmann::json& value, size_t max_chars = 64);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_UNTRUSTED_JSON_H_
