// Oniguruma wrapper; see onig_regex.h.
#include "lora/internal/onig_regex.h"

#include <oniguruma.h>

#include "absl/strings/str_cat.h"
#include "lora/internal/unicode_text.h"

namespace openforce::lora::internal {
namespace {

void InitializeOniguruma() {
  static const bool initialized = [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
    return true;
  }();
  (void)initialized;
}

struct RegionDeleter {
  void operator()(OnigRegion* region) const { onig_region_free(region, 1); }
};

}  // namespace

absl::StatusOr<std::unique_ptr<OnigRegex>> OnigRegex::Compile(
    const std::string& pattern) {
  InitializeOniguruma();
  regex_t* regex = nullptr;
  OnigErrorInfo error_info;
  const auto* begin = reinterpret_cast<const OnigUChar*>(pattern.data());
  const int result =
      onig_new(&regex, begin, begin + pattern.size(), ONIG_OPTION_NONE,
               ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &error_info);
  if (result != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, result, &error_info);
    return absl::InvalidArgumentError(
        absl::StrCat("regular expression '", pattern,
                     "' does not compile: ", reinterpret_cast<char*>(message)));
  }
  return std::unique_ptr<OnigRegex>(new OnigRegex(regex));
}

OnigRegex::~OnigRegex() { onig_free(static_cast<regex_t*>(regex_)); }

void OnigRegex::FindAll(absl::string_view text,
                        std::vector<std::pair<size_t, size_t>>* matches) const {
  std::unique_ptr<OnigRegion, RegionDeleter> region(onig_region_new());
  const auto* begin = reinterpret_cast<const OnigUChar*>(text.data());
  const OnigUChar* end = begin + text.size();
  size_t start = 0;
  while (start <= text.size()) {
    const int found =
        onig_search(static_cast<regex_t*>(regex_), begin, end, begin + start,
                    end, region.get(), ONIG_OPTION_NONE);
    if (found < 0) break;  // ONIG_MISMATCH, or an error: no more matches
    const size_t match_begin = static_cast<size_t>(region->beg[0]);
    const size_t match_end = static_cast<size_t>(region->end[0]);
    matches->emplace_back(match_begin, match_end);
    if (match_end > match_begin) {
      start = match_end;
    } else {
      if (match_end >= text.size()) break;
      start = match_end +
              Utf8SequenceLength(static_cast<unsigned char>(text[match_end]));
    }
  }
}

}  // namespace openforce::lora::internal
