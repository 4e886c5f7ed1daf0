// Reads tokenizer.json in one streaming pass (nlohmann's SAX interface): the
// BPE vocabulary and merges, which are most of a large file (Gemma 3: 262k
// entries and 515k merges in 33 MB), go straight into flat vectors; the rest
// becomes a small JSON tree. Twice as fast as building the whole tree and
// walking it, with the nesting depth bounded as the file is read.
#ifndef OPENFORCE_LORA_INTERNAL_TOKENIZER_JSON_READER_H_
#define OPENFORCE_LORA_INTERNAL_TOKENIZER_JSON_READER_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace openforce::lora::internal {

struct TokenizerJson {
  // The document with model.vocab and model.merges left empty.
  nlohmann::json rest;
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool has_vocab = false;
};

// InvalidArgument naming `source` and the position for malformed JSON, a
// nesting deeper than 64, or vocab / merges entries of the wrong shape.
[[nodiscard]] absl::StatusOr<TokenizerJson> ReadTokenizerJson(
    const std::string& text, const std::string& source);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_TOKENIZER_JSON_READER_H_
