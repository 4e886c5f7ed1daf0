// Pre-tokenizers; see hf_pre_tokenizer.h.
#include "lora/internal/hf_pre_tokenizer.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/untrusted_json.h"
#include "lora/internal/hf_pattern.h"
#include "lora/internal/onig_regex.h"
#include "lora/internal/unicode_text.h"

namespace openforce::lora::internal {
namespace {

using Matches = std::vector<std::pair<size_t, size_t>>;

// The character each byte maps to: printable Latin-1 bytes map to
// themselves, the rest to U+0100 onwards in byte order.
struct ByteLevelTable {
  std::array<std::string, 256> chars;
  std::array<int, 512> bytes;  // code point (< 512) -> byte, -1 elsewhere
  ByteLevelTable() {
    bytes.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool kept =
          (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const int code_point = kept ? b : next++;
      AppendUtf8(static_cast<char32_t>(code_point), &chars[b]);
      bytes[code_point] = b;
    }
  }
};

const ByteLevelTable& Table() {
  static const ByteLevelTable* const table = new ByteLevelTable();
  return *table;
}

// Applies `split` to every piece.
template <typename SplitOne>
void SplitEach(std::vector<std::string>* pieces, SplitOne split) {
  std::vector<std::string> out;
  out.reserve(pieces->size());
  for (size_t i = 0; i < pieces->size(); ++i) split(i, (*pieces)[i], &out);
  *pieces = std::move(out);
}

// Matches of single characters satisfying `predicate`.
template <typename Predicate>
Matches CharMatches(const std::string& text, Predicate predicate) {
  Matches matches;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t begin = pos;
    const char32_t c = NextCodePoint(text, &pos);
    if (predicate(c)) matches.emplace_back(begin, pos);
  }
  return matches;
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(std::vector<std::string>* pieces,
                   bool /*starts_text*/) const override {
    Matches matches;
    SplitEach(pieces, [&](size_t, const std::string& piece,
                          std::vector<std::string>* out) {
      matches.clear();
      pattern_.FindAll(piece, &matches);
      SplitByMatches(piece, matches, behavior_, invert_, out);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<OnigRegex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void PreTokenize(std::vector<std::string>* pieces,
                   bool /*starts_text*/) const override {
    Matches matches;
    SplitEach(pieces, [&](size_t, const std::string& piece,
                          std::vector<std::string>* out) {
      std::string text = add_prefix_space_ && (piece.empty() || piece[0] != ' ')
                             ? " " + piece
                             : piece;
      const size_t first = out->size();
      if (regex_ != nullptr) {
        matches.clear();
        regex_->FindAll(text, &matches);
        SplitByMatches(text, matches, SplitBehavior::kIsolated, false, out);
      } else if (!text.empty()) {
        out->push_back(std::move(text));
      }
      for (size_t i = first; i < out->size(); ++i) {
        std::string mapped;
        mapped.reserve((*out)[i].size() * 2);
        for (unsigned char byte : (*out)[i]) mapped += Table().chars[byte];
        (*out)[i] = std::move(mapped);
      }
    });
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<OnigRegex> regex_;  // null without use_regex
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                        bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void PreTokenize(std::vector<std::string>* pieces,
                   bool starts_text) const override {
    Matches matches;
    SplitEach(pieces, [&](size_t index, const std::string& piece,
                          std::vector<std::string>* out) {
      std::string text;
      text.reserve(piece.size() + replacement_.size());
      for (char c : piece) {
        if (c == ' ') {
          text += replacement_;
        } else {
          text.push_back(c);
        }
      }
      const bool starts_with_replacement =
          text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts_with_replacement &&
          (scheme_ == PrependScheme::kAlways ||
           (scheme_ == PrependScheme::kFirst && starts_text && index == 0))) {
        text.insert(0, replacement_);
      }
      if (!split_) {
        if (!text.empty()) out->push_back(std::move(text));
        return;
      }
      matches.clear();
      size_t pos = 0;
      while ((pos = text.find(replacement_, pos)) != std::string::npos) {
        matches.emplace_back(pos, pos + replacement_.size());
        pos += replacement_.size();
      }
      SplitByMatches(text, matches, SplitBehavior::kMergedWithNext, false, out);
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

// Splits on characters satisfying a predicate (Digits, Punctuation,
// WhitespaceSplit, CharDelimiterSplit).
template <typename Predicate>
class CharSplitPreTokenizer : public PreTokenizer {
 public:
  CharSplitPreTokenizer(Predicate predicate, SplitBehavior behavior)
      : predicate_(predicate), behavior_(behavior) {}
  void PreTokenize(std::vector<std::string>* pieces,
                   bool /*starts_text*/) const override {
    SplitEach(pieces, [&](size_t, const std::string& piece,
                          std::vector<std::string>* out) {
      SplitByMatches(piece, CharMatches(piece, predicate_), behavior_, false,
                     out);
    });
  }

 private:
  Predicate predicate_;
  SplitBehavior behavior_;
};

template <typename Predicate>
std::unique_ptr<PreTokenizer> MakeCharSplit(Predicate predicate,
                                            SplitBehavior behavior) {
  return std::make_unique<CharSplitPreTokenizer<Predicate>>(predicate,
                                                            behavior);
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(
      std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void PreTokenize(std::vector<std::string>* pieces,
                   bool starts_text) const override {
    for (const auto& step : steps_) step->PreTokenize(pieces, starts_text);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

bool BoolField(const nlohmann::json& json, const char* key, bool fallback) {
  return json.contains(key) && json[key].is_boolean() ? json[key].get<bool>()
                                                      : fallback;
}

// GPT-2's word pattern, which ByteLevel uses with use_regex.
constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace

const std::string& ByteLevelChar(unsigned char byte) {
  return Table().chars[byte];
}

int ByteLevelByte(char32_t code_point) {
  return code_point < 512 ? Table().bytes[code_point] : -1;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("type") ||
      !json["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("pre_tokenizer ", JsonPreview(json), " has no type"));
  }
  const std::string type = json["type"].get<std::string>();
  if (type == "Split") {
    if (!json.contains("pattern") || !json.contains("behavior")) {
      return absl::InvalidArgumentError(
          "Split pre_tokenizer needs 'pattern' and 'behavior'");
    }
    absl::StatusOr<Pattern> pattern =
        Pattern::Parse(json["pattern"], "Split pre_tokenizer");
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<SplitBehavior> behavior =
        ParseSplitBehavior(json["behavior"]);
    if (!behavior.ok()) return behavior.status();
    return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(
        *std::move(pattern), *behavior, BoolField(json, "invert", false)));
  }
  if (type == "ByteLevel") {
    std::unique_ptr<OnigRegex> regex;
    if (BoolField(json, "use_regex", true)) {
      absl::StatusOr<std::unique_ptr<OnigRegex>> compiled =
          OnigRegex::Compile(kGpt2Pattern);
      if (!compiled.ok()) return compiled.status();
      regex = *std::move(compiled);
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(
        BoolField(json, "add_prefix_space", true), std::move(regex)));
  }
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";  // U+2581
    if (json.contains("replacement") && json["replacement"].is_string()) {
      replacement = json["replacement"].get<std::string>();
    }
    if (replacement.empty()) {
      return absl::InvalidArgumentError(
          "Metaspace pre_tokenizer has an empty replacement");
    }
    PrependScheme scheme = PrependScheme::kAlways;
    if (json.contains("prepend_scheme") && json["prepend_scheme"].is_string()) {
      const std::string name = json["prepend_scheme"].get<std::string>();
      if (name == "always") {
        scheme = PrependScheme::kAlways;
      } else if (name == "first") {
        scheme = PrependScheme::kFirst;
      } else if (name == "never") {
        scheme = PrependScheme::kNever;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("Metaspace prepend_scheme '", name,
                         "' is not supported (always, first, never)"));
      }
    } else if (json.contains("add_prefix_space")) {
      // Older files: add_prefix_space instead of prepend_scheme.
      scheme = BoolField(json, "add_prefix_space", true)
                   ? PrependScheme::kAlways
                   : PrependScheme::kNever;
    }
    return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(
        replacement, scheme, BoolField(json, "split", true)));
  }
  if (type == "Whitespace") {
    absl::StatusOr<Pattern> pattern = Pattern::Parse(
        nlohmann::json{{"Regex", R"(\w+|[^\w\s]+)"}}, "Whitespace");
    if (!pattern.ok()) return pattern.status();
    return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(
        *std::move(pattern), SplitBehavior::kRemoved, /*invert=*/true));
  }
  if (type == "WhitespaceSplit") {
    return MakeCharSplit([](char32_t c) { return IsWhitespace(c); },
                         SplitBehavior::kRemoved);
  }
  if (type == "Digits") {
    return MakeCharSplit([](char32_t c) { return c >= '0' && c <= '9'; },
                         BoolField(json, "individual_digits", false)
                             ? SplitBehavior::kIsolated
                             : SplitBehavior::kContiguous);
  }
  if (type == "Punctuation") {
    SplitBehavior behavior = SplitBehavior::kIsolated;
    if (json.contains("behavior")) {
      absl::StatusOr<SplitBehavior> parsed =
          ParseSplitBehavior(json["behavior"]);
      if (!parsed.ok()) return parsed.status();
      behavior = *parsed;
    }
    return MakeCharSplit([](char32_t c) { return IsPunctuation(c); }, behavior);
  }
  if (type == "CharDelimiterSplit") {
    if (!json.contains("delimiter") || !json["delimiter"].is_string()) {
      return absl::InvalidArgumentError(
          "CharDelimiterSplit pre_tokenizer has no 'delimiter'");
    }
    const std::string delimiter = json["delimiter"].get<std::string>();
    size_t pos = 0;
    const char32_t c = NextCodePoint(delimiter, &pos);
    if (pos != delimiter.size()) {
      return absl::InvalidArgumentError(
          "CharDelimiterSplit delimiter must be one character");
    }
    return MakeCharSplit([c](char32_t x) { return x == c; },
                         SplitBehavior::kRemoved);
  }
  if (type == "Sequence") {
    if (!json.contains("pretokenizers") || !json["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError(
          "Sequence pre_tokenizer has no 'pretokenizers' list");
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const nlohmann::json& step : json["pretokenizers"]) {
      absl::StatusOr<std::unique_ptr<PreTokenizer>> parsed =
          ParsePreTokenizer(step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(*std::move(parsed));
    }
    return std::unique_ptr<PreTokenizer>(
        new SequencePreTokenizer(std::move(steps)));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "pre_tokenizer type '", type,
      "' is not supported (Split, ByteLevel, Metaspace, Digits, Punctuation, "
      "Whitespace, WhitespaceSplit, CharDelimiterSplit, Sequence)"));
}

}  // namespace openforce::lora::internal
