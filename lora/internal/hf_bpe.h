// The BPE model of a Hugging Face tokenizer.json, as the tokenizers crate's
// models::bpe defines it: characters (with continuing-subword prefix and
// end-of-word suffix) looked up in the vocabulary, byte fallback to <0xXX>
// tokens, unknown-token fusing, then merges applied lowest rank first until
// none applies. Words already in the vocabulary skip the merges when
// ignore_merges is set. A bounded cache remembers recent words.
#ifndef OPENFORCE_LORA_INTERNAL_HF_BPE_H_
#define OPENFORCE_LORA_INTERNAL_HF_BPE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace openforce::lora::internal {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  // Checks that every merge's parts and result are in the vocabulary and that
  // ids are unique; errors name the offending entry.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      std::vector<std::pair<std::string, int32_t>> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges,
      BpeOptions options);

  // Appends the ids of one pre-tokenized word. FailedPrecondition when a
  // character needs the unknown token and the vocabulary lacks it.
  [[nodiscard]] absl::Status Tokenize(absl::string_view word,
                                      std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // Null for an id outside the vocabulary.
  const std::string* IdToToken(int32_t id) const;
  // One more than the highest id.
  int32_t VocabSize() const { return static_cast<int32_t>(tokens_.size()); }

 private:
  explicit BpeModel(BpeOptions options) : options_(std::move(options)) {}
  [[nodiscard]] absl::Status TokenizeUncached(absl::string_view word,
                                              std::vector<int32_t>* ids) const;

  BpeOptions options_;
  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;  // by id; empty where no token has it
  std::vector<bool> has_token_;
  // (left id, right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  int32_t byte_ids_[256];          // <0xXX> tokens, -1 where missing
  std::optional<int32_t> unk_id_;  // unset without unk_token or when missing

  static constexpr size_t kCacheCapacity = 20000;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable absl::Mutex cache_mutex_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_HF_BPE_H_
