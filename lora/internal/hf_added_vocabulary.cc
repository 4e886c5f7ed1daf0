// Added tokens; see hf_added_vocabulary.h.
#include "lora/internal/hf_added_vocabulary.h"

#include "lora/internal/unicode_text.h"

namespace openforce::lora::internal {
namespace {

// The crate's word characters for single_word: alphanumerics and '_'.
bool IsWordChar(char32_t c) { return c == '_' || IsAlphanumeric(c); }

char32_t LastCodePoint(absl::string_view text) {
  size_t start = text.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
    --start;
  return NextCodePoint(text, &start);
}

}  // namespace

void AddedVocabulary::Trie::Insert(const std::string& content, int32_t index) {
  if (terminal.empty()) terminal.push_back(-1);  // the root
  int32_t node = 0;
  for (unsigned char byte : content) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | byte;
    auto it = edges.find(key);
    if (it == edges.end()) {
      const int32_t child = static_cast<int32_t>(terminal.size());
      terminal.push_back(-1);
      it = edges.emplace(key, child).first;
    }
    node = it->second;
  }
  terminal[node] = index;
  first_byte[static_cast<unsigned char>(content[0])] = true;
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& token = tokens_[i];
    by_id_[token.id] = i;
    by_content_[token.content] = i;
    if (token.content.empty()) continue;
    tries_[token.normalized ? 1 : 0].Insert(token.content,
                                            static_cast<int32_t>(i));
  }
}

const AddedToken* AddedVocabulary::FindById(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindByContent(
    absl::string_view content) const {
  auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::Split(absl::string_view text, bool normalized,
                            std::vector<TextSegment>* out) const {
  const Trie& trie = tries_[normalized ? 1 : 0];
  size_t emitted = 0;  // end of the last segment appended
  size_t pos = 0;
  while (pos < text.size() && !trie.terminal.empty()) {
    if (!trie.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    // The longest added token starting here.
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = trie.edges.find((static_cast<uint64_t>(node) << 8) |
                                static_cast<unsigned char>(text[i]));
      if (it == trie.edges.end()) break;
      node = it->second;
      if (trie.terminal[node] >= 0) {
        best = trie.terminal[node];
        best_end = i + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[best];
    size_t start = pos, stop = best_end;
    if (token.single_word) {
      const bool space_before =
          start == 0 || !IsWordChar(LastCodePoint(text.substr(0, start)));
      size_t after = stop;
      const bool space_after =
          stop == text.size() || !IsWordChar(NextCodePoint(text, &after));
      if (!space_before || !space_after) {
        // The crate's matcher moves past a rejected match.
        pos = best_end;
        continue;
      }
    }
    if (token.lstrip) {
      while (start > emitted) {
        size_t back = start - 1;
        while (back > emitted &&
               (static_cast<unsigned char>(text[back]) & 0xC0) == 0x80) {
          --back;
        }
        size_t probe = back;
        if (!IsWhitespace(NextCodePoint(text, &probe))) break;
        start = back;
      }
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t probe = stop;
        if (!IsWhitespace(NextCodePoint(text, &probe))) break;
        stop = probe;
      }
    }
    if (start > emitted) out->push_back({-1, emitted, start});
    out->push_back({token.id, start, stop});
    emitted = stop;
    pos = stop;
  }
  if (emitted < text.size() || text.empty()) {
    out->push_back({-1, emitted, text.size()});
  }
}

}  // namespace openforce::lora::internal
