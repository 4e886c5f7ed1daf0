// Normalizers of a Hugging Face tokenizer.json (the tokenizers crate's
// normalizers module): NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend,
// Replace and Sequence. Anything else is refused by name.
#ifndef OPENFORCE_LORA_INTERNAL_HF_NORMALIZER_H_
#define OPENFORCE_LORA_INTERNAL_HF_NORMALIZER_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace openforce::lora::internal {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  [[nodiscard]] virtual absl::Status Normalize(std::string* text) const = 0;
};

// `json` is tokenizer.json's "normalizer" object (not null).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const nlohmann::json& json);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_HF_NORMALIZER_H_
