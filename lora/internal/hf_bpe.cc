// BPE; see hf_bpe.h.
#include "lora/internal/hf_bpe.h"

#include <cstdio>
#include <queue>

#include "absl/strings/str_cat.h"
#include "lora/internal/unicode_text.h"

namespace openforce::lora::internal {
namespace {

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  // Lowest rank first, then leftmost, as the tokenizers crate orders them.
  bool operator<(const Candidate& other) const {
    if (rank != other.rank) return rank > other.rank;
    return pos > other.pos;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    std::vector<std::pair<std::string, int32_t>> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges,
    BpeOptions options) {
  std::unique_ptr<BpeModel> model(new BpeModel(std::move(options)));
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocabulary entry '", token, "' has negative id ", id));
    }
    max_id = std::max(max_id, id);
  }
  // The id table is dense: a file that claims a huge id for a small
  // vocabulary would make it huge.
  if (max_id >= (1 << 24) ||
      static_cast<size_t>(max_id) >= 2 * vocab.size() + 1024) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary id ", max_id,
                                                   " is implausibly large for ",
                                                   vocab.size(), " entries"));
  }
  model->tokens_.resize(static_cast<size_t>(max_id + 1));
  model->has_token_.assign(static_cast<size_t>(max_id + 1), false);
  model->vocab_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    if (model->has_token_[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocabulary id ", id, " is used by both '",
                       model->tokens_[id], "' and '", token, "'"));
    }
    model->has_token_[id] = true;
    model->tokens_[id] = token;
    model->vocab_.emplace(std::move(token), id);
  }
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    auto it = model->vocab_.find(absl::string_view(name));
    model->byte_ids_[byte] = it == model->vocab_.end() ? -1 : it->second;
  }
  if (model->options_.unk_token.has_value()) {
    model->unk_id_ = model->TokenToId(*model->options_.unk_token);
  }
  const size_t prefix_length = model->options_.continuing_subword_prefix.size();
  model->merges_.reserve(merges.size());
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto left_it = model->vocab_.find(left);
    auto right_it = model->vocab_.find(right);
    if (left_it == model->vocab_.end() || right_it == model->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " ('", left, "' '", right,
                       "') names a token outside the vocabulary"));
    }
    // With a continuing-subword prefix, the right part drops its prefix.
    merged.assign(left);
    if (prefix_length > 0 &&
        right.compare(0, prefix_length,
                      model->options_.continuing_subword_prefix) == 0) {
      merged.append(right, prefix_length, std::string::npos);
    } else {
      merged.append(right);
    }
    auto merged_it = model->vocab_.find(merged);
    if (merged_it == model->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " ('", left, "' '", right, "') makes '",
                       merged, "', which is not in the vocabulary"));
    }
    // A later listing of the same pair replaces an earlier one, as in the
    // crate's HashMap build.
    model->merges_.insert_or_assign(
        PairKey(left_it->second, right_it->second),
        std::make_pair(static_cast<int32_t>(rank), merged_it->second));
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !has_token_[id]) {
    return nullptr;
  }
  return &tokens_[id];
}

absl::Status BpeModel::Tokenize(absl::string_view word,
                                std::vector<int32_t>* ids) const {
  if (word.empty()) return absl::OkStatus();
  if (options_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    absl::MutexLock lock(&cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return absl::OkStatus();
    }
  }
  const size_t first = ids->size();
  absl::Status status = TokenizeUncached(word, ids);
  if (!status.ok() || !cacheable) return status;
  absl::MutexLock lock(&cache_mutex_);
  if (cache_.size() < kCacheCapacity) {
    cache_.emplace(std::string(word),
                   std::vector<int32_t>(ids->begin() + first, ids->end()));
  }
  return absl::OkStatus();
}

absl::Status BpeModel::TokenizeUncached(absl::string_view word,
                                        std::vector<int32_t>* ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  // A pending unknown token (fused over consecutive unknown characters).
  bool pending_unk = false;
  const std::optional<int32_t>& unk_id = unk_id_;
  std::string piece;
  size_t pos = 0;
  while (pos < word.size()) {
    const size_t begin = pos;
    pos += Utf8SequenceLength(static_cast<unsigned char>(word[pos]));
    if (pos > word.size()) pos = word.size();
    piece.clear();
    if (begin > 0) piece.append(options_.continuing_subword_prefix);
    piece.append(word.data() + begin, pos - begin);
    if (pos == word.size()) piece.append(options_.end_of_word_suffix);
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      if (pending_unk) add(*unk_id);
      pending_unk = false;
      add(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      bool all_bytes = true;
      for (unsigned char byte : piece) all_bytes &= byte_ids_[byte] >= 0;
      if (all_bytes) {
        if (pending_unk) add(*unk_id);
        pending_unk = false;
        for (unsigned char byte : piece) add(byte_ids_[byte]);
        continue;
      }
    }
    if (options_.unk_token.has_value()) {
      if (!unk_id.has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("the unknown token '", *options_.unk_token,
                         "' is not in the vocabulary"));
      }
      if (pending_unk && !options_.fuse_unk) add(*unk_id);
      pending_unk = true;
    }
    // Without an unknown token the character is dropped, as the crate does.
  }
  if (pending_unk) add(*unk_id);
  if (symbols.empty()) return absl::OkStatus();
  symbols.back().next = -1;

  std::priority_queue<Candidate> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) {
      queue.push(
          {it->second.first, static_cast<int32_t>(i), it->second.second});
    }
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (!current.alive || current.next < 0) continue;
    const int32_t next_pos = current.next;
    const Symbol& right = symbols[next_pos];
    auto it = merges_.find(PairKey(current.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    current.id = top.new_id;
    current.next = right.next;
    symbols[next_pos].alive = false;
    if (current.next >= 0) symbols[current.next].prev = top.pos;
    if (current.prev >= 0) {
      auto left = merges_.find(PairKey(symbols[current.prev].id, current.id));
      if (left != merges_.end()) {
        queue.push({left->second.first, current.prev, left->second.second});
      }
    }
    if (current.next >= 0) {
      auto after = merges_.find(PairKey(current.id, symbols[current.next].id));
      if (after != merges_.end()) {
        queue.push({after->second.first, top.pos, after->second.second});
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next)
    ids->push_back(symbols[i].id);
  return absl::OkStatus();
}

}  // namespace openforce::lora::internal
