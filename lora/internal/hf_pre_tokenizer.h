// Pre-tokenizers of a Hugging Face tokenizer.json (the tokenizers crate's
// pre_tokenizers module): Split (each behaviour, invert), ByteLevel,
// Metaspace (each prepend_scheme), Digits, Punctuation, Whitespace,
// WhitespaceSplit, CharDelimiterSplit and Sequence. They cut normalized text
// into the words the model tokenizes one by one. Anything else is refused by
// name.
#ifndef OPENFORCE_LORA_INTERNAL_HF_PRE_TOKENIZER_H_
#define OPENFORCE_LORA_INTERNAL_HF_PRE_TOKENIZER_H_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace openforce::lora::internal {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by the pieces it splits into. `starts_text` is true
  // when pieces->front() begins at the start of the input (Metaspace's
  // "first" prepend scheme looks at it).
  virtual void PreTokenize(std::vector<std::string>* pieces,
                           bool starts_text) const = 0;
};

// `json` is tokenizer.json's "pre_tokenizer" object (not null).
[[nodiscard]] absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const nlohmann::json& json);

// GPT-2's byte-to-character table: the UTF-8 text of the character standing
// for each byte, as ByteLevel pre-tokenizers and decoders use it.
const std::string& ByteLevelChar(unsigned char byte);
// The byte a ByteLevel character stands for; -1 for other characters.
int ByteLevelByte(char32_t code_point);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_HF_PRE_TOKENIZER_H_
