// Decoders of a Hugging Face tokenizer.json (the tokenizers crate's decoders
// module): ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and
// Sequence turn a token list back into text. Anything else is refused by
// name.
#ifndef OPENFORCE_LORA_INTERNAL_HF_DECODER_H_
#define OPENFORCE_LORA_INTERNAL_HF_DECODER_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace openforce::lora::internal {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings; the text is their concatenation afterwards.
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
};

// `json` is tokenizer.json's "decoder" object (not null).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(
    const nlohmann::json& json);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_HF_DECODER_H_
