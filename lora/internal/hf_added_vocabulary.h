// The added tokens of a Hugging Face tokenizer.json (special tokens such as
// <|eot_id|> and extra words): found in the text before the model sees it,
// leftmost-longest as the crate's aho-corasick matcher finds them, with each
// token's single_word, lstrip and rstrip rules. Tokens with normalized=false
// are matched in the raw text, the others in normalized text.
#ifndef OPENFORCE_LORA_INTERNAL_HF_ADDED_VOCABULARY_H_
#define OPENFORCE_LORA_INTERNAL_HF_ADDED_VOCABULARY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace openforce::lora::internal {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// A run of text: an added token (token_id >= 0) or text for the model.
struct TextSegment {
  int32_t token_id = -1;
  size_t begin = 0;
  size_t end = 0;
};

class AddedVocabulary {
 public:
  explicit AddedVocabulary(std::vector<AddedToken> tokens);

  // Cuts `text` at the added tokens whose `normalized` flag equals
  // `normalized`, appending the segments in order.
  void Split(absl::string_view text, bool normalized,
             std::vector<TextSegment>* out) const;

  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(absl::string_view content) const;
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie per flag: edges keyed by (node << 8 | byte).
  struct Trie {
    absl::flat_hash_map<uint64_t, int32_t> edges;
    std::vector<int32_t> terminal;  // node -> token index, -1 if none
    bool first_byte[256] = {};
    void Insert(const std::string& content, int32_t index);
  };

  std::vector<AddedToken> tokens_;
  Trie tries_[2];  // [normalized]
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
};

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_HF_ADDED_VOCABULARY_H_
