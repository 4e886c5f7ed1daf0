// A compiled Oniguruma regular expression: the engine Hugging Face's
// tokenizers uses for Split patterns and Replace normalizers, so Unicode
// classes (\p{L}), look-ahead and (?i:...) behave exactly as there.
#ifndef OPENFORCE_LORA_INTERNAL_ONIG_REGEX_H_
#define OPENFORCE_LORA_INTERNAL_ONIG_REGEX_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce::lora::internal {

class OnigRegex {
 public:
  // InvalidArgument naming the pattern and Oniguruma's message when it does
  // not compile.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<OnigRegex>> Compile(
      const std::string& pattern);
  ~OnigRegex();
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;

  // Every non-overlapping match, left to right, as [begin, end) byte offsets;
  // after an empty match the search resumes one character later. Safe to
  // call from several threads at once.
  void FindAll(absl::string_view text,
               std::vector<std::pair<size_t, size_t>>* matches) const;

 private:
  explicit OnigRegex(void* regex) : regex_(regex) {}
  void* regex_;  // OnigRegex (regex_t*); opaque to keep oniguruma.h private
};

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_ONIG_REGEX_H_
