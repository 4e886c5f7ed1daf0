// Patterns and split behaviours; see hf_pattern.h.
#include "lora/internal/hf_pattern.h"

#include "absl/strings/str_cat.h"
#include "common/untrusted_json.h"

namespace openforce::lora::internal {

absl::StatusOr<Pattern> Pattern::Parse(const nlohmann::json& json,
                                       const char* where) {
  Pattern pattern;
  if (json.is_object() && json.contains("String") &&
      json["String"].is_string()) {
    pattern.literal_ = json["String"].get<std::string>();
    return pattern;
  }
  if (json.is_object() && json.contains("Regex") && json["Regex"].is_string()) {
    absl::StatusOr<std::unique_ptr<OnigRegex>> regex =
        OnigRegex::Compile(json["Regex"].get<std::string>());
    if (!regex.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", regex.status().message()));
    }
    pattern.regex_ = *std::move(regex);
    return pattern;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": pattern ", JsonPreview(json),
                   " is neither {\"String\": ...} nor {\"Regex\": ...}"));
}

void Pattern::FindAll(absl::string_view text,
                      std::vector<std::pair<size_t, size_t>>* matches) const {
  if (regex_ != nullptr) {
    regex_->FindAll(text, matches);
    return;
  }
  if (literal_.empty()) return;
  size_t pos = 0;
  while ((pos = text.find(literal_, pos)) != absl::string_view::npos) {
    matches->emplace_back(pos, pos + literal_.size());
    pos += literal_.size();
  }
}

std::string Pattern::ReplaceAll(absl::string_view text,
                                absl::string_view content) const {
  std::vector<std::pair<size_t, size_t>> matches;
  FindAll(text, &matches);
  if (matches.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    out.append(text.data() + last, begin - last);
    out.append(content.data(), content.size());
    last = end;
  }
  out.append(text.data() + last, text.size() - last);
  return out;
}

absl::StatusOr<SplitBehavior> ParseSplitBehavior(const nlohmann::json& json) {
  if (json == "Removed") return SplitBehavior::kRemoved;
  if (json == "Isolated") return SplitBehavior::kIsolated;
  if (json == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (json == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (json == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(
      absl::StrCat("split behavior ", JsonPreview(json),
                   " is not supported (Removed, Isolated, MergedWithPrevious, "
                   "MergedWithNext, Contiguous)"));
}

void SplitByMatches(absl::string_view text,
                    const std::vector<std::pair<size_t, size_t>>& matches,
                    SplitBehavior behavior, bool invert,
                    std::vector<std::string>* out) {
  // Every span of the text, flagged when it is a match.
  struct Span {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > last) spans.push_back({last, begin, invert});
    spans.push_back({begin, end, !invert});
    last = end;
  }
  if (last < text.size()) spans.push_back({last, text.size(), invert});

  std::vector<Span> pieces;
  pieces.reserve(spans.size());
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Span& span : spans) {
        if (!span.is_match) pieces.push_back(span);
      }
      break;
    case SplitBehavior::kIsolated:
      pieces = spans;
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& span : spans) {
        if (span.is_match && !previous_match && !pieces.empty()) {
          pieces.back().end = span.end;
        } else {
          pieces.push_back(span);
        }
        previous_match = span.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().begin = it->begin;
        } else {
          pieces.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& span : spans) {
        if (span.is_match == previous_match && !pieces.empty()) {
          pieces.back().end = span.end;
        } else {
          pieces.push_back(span);
        }
        previous_match = span.is_match;
      }
      break;
    }
  }
  for (const Span& piece : pieces) {
    if (piece.end > piece.begin) {
      out->emplace_back(text.data() + piece.begin, piece.end - piece.begin);
    }
  }
}

}  // namespace openforce::lora::internal
