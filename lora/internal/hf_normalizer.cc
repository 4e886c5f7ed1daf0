// Normalizers; see hf_normalizer.h.
#include "lora/internal/hf_normalizer.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/untrusted_json.h"
#include "lora/internal/hf_pattern.h"
#include "lora/internal/unicode_text.h"

namespace openforce::lora::internal {
namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  absl::Status Normalize(std::string* text) const override {
    absl::StatusOr<std::string> normalized = internal::Normalize(*text, form_);
    if (!normalized.ok()) return normalized.status();
    *text = *std::move(normalized);
    return absl::OkStatus();
  }

 private:
  NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    *text = Lowercase(*text);
    return absl::OkStatus();
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size();
    if (left_) {
      while (begin < end) {
        size_t next = begin;
        if (!IsWhitespace(NextCodePoint(*text, &next))) break;
        begin = next;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin &&
               (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) {
          --start;
        }
        size_t next = start;
        if (!IsWhitespace(NextCodePoint(*text, &next))) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* text) const override {
    // The crate prepends only to non-empty text.
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    *text = pattern_.ReplaceAll(*text, content_);
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& step : steps_) {
      absl::Status status = step->Normalize(text);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

bool BoolField(const nlohmann::json& json, const char* key, bool fallback) {
  return json.contains(key) && json[key].is_boolean() ? json[key].get<bool>()
                                                      : fallback;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("type") ||
      !json["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("normalizer ", JsonPreview(json), " has no type"));
  }
  const std::string type = json["type"].get<std::string>();
  if (type == "NFC")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalForm::kNfc));
  if (type == "NFD")
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalForm::kNfd));
  if (type == "NFKC") {
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(NormalForm::kNfkc));
  }
  if (type == "NFKD") {
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(NormalForm::kNfkd));
  }
  if (type == "Lowercase")
    return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "Strip") {
    return std::unique_ptr<Normalizer>(
        new StripNormalizer(BoolField(json, "strip_left", true),
                            BoolField(json, "strip_right", true)));
  }
  if (type == "Prepend") {
    if (!json.contains("prepend") || !json["prepend"].is_string()) {
      return absl::InvalidArgumentError("Prepend normalizer has no 'prepend'");
    }
    return std::unique_ptr<Normalizer>(
        new PrependNormalizer(json["prepend"].get<std::string>()));
  }
  if (type == "Replace") {
    if (!json.contains("content") || !json["content"].is_string() ||
        !json.contains("pattern")) {
      return absl::InvalidArgumentError(
          "Replace normalizer needs 'pattern' and 'content'");
    }
    absl::StatusOr<Pattern> pattern =
        Pattern::Parse(json["pattern"], "Replace normalizer");
    if (!pattern.ok()) return pattern.status();
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(
        *std::move(pattern), json["content"].get<std::string>()));
  }
  if (type == "Sequence") {
    if (!json.contains("normalizers") || !json["normalizers"].is_array()) {
      return absl::InvalidArgumentError(
          "Sequence normalizer has no 'normalizers' list");
    }
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const nlohmann::json& step : json["normalizers"]) {
      absl::StatusOr<std::unique_ptr<Normalizer>> parsed =
          ParseNormalizer(step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(*std::move(parsed));
    }
    return std::unique_ptr<Normalizer>(
        new SequenceNormalizer(std::move(steps)));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "normalizer type '", type,
      "' is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, "
      "Replace, Sequence)"));
}

}  // namespace openforce::lora::internal
