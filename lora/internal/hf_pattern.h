// The {"String": ...} / {"Regex": ...} patterns of tokenizer.json's Split,
// Replace normalizer and Replace decoder: matches of a literal string or of an
// Oniguruma expression, and the crate's SplitDelimiterBehavior applied to
// them.
#ifndef OPENFORCE_LORA_INTERNAL_HF_PATTERN_H_
#define OPENFORCE_LORA_INTERNAL_HF_PATTERN_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lora/internal/onig_regex.h"

namespace openforce::lora::internal {

class Pattern {
 public:
  [[nodiscard]] static absl::StatusOr<Pattern> Parse(const nlohmann::json& json,
                                                     const char* where);
  // Non-overlapping matches, left to right, as [begin, end) byte offsets.
  void FindAll(absl::string_view text,
               std::vector<std::pair<size_t, size_t>>* matches) const;
  // Every match replaced by `content`.
  std::string ReplaceAll(absl::string_view text,
                         absl::string_view content) const;

 private:
  std::string literal_;
  std::shared_ptr<const OnigRegex> regex_;  // null for a literal
};

enum class SplitBehavior {
  kRemoved,
  kIsolated,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous
};
[[nodiscard]] absl::StatusOr<SplitBehavior> ParseSplitBehavior(
    const nlohmann::json& json);

// Splits `text` at `matches` (sorted, non-overlapping) the way the crate's
// NormalizedString::split does, appending the non-empty pieces to `out`.
// With `invert`, matches and the text between them swap roles.
void SplitByMatches(absl::string_view text,
                    const std::vector<std::pair<size_t, size_t>>& matches,
                    SplitBehavior behavior, bool invert,
                    std::vector<std::string>* out);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_HF_PATTERN_H_
