// Hugging Face tokenizer.json, as the `tokenizers` crate defines it: added
// tokens split out first, then normalizer, pre-tokenizer, BPE model and
// post-processor to encode; decoder to decode. The format Llama 3, Qwen 2.5/3,
// Mistral and Gemma 3 ship. WordPiece, Unigram and WordLevel models are
// refused by name.
#ifndef OPENFORCE_LORA_HF_TOKENIZER_H_
#define OPENFORCE_LORA_HF_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lora/tokenizer.h"

namespace openforce::lora {

namespace internal {
class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
class PreTokenizer;
}  // namespace internal

class HfTokenizer : public Tokenizer {
 public:
  // Reads tokenizer.json; `config_json` is tokenizer_config.json's text when
  // the model has one (it names the bos and eos tokens), else empty.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HfTokenizer>> Parse(
      const std::string& tokenizer_json, const std::string& config_json,
      const std::string& source);
  // tokenizer.json (and tokenizer_config.json when present) in `dir`.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(
      const std::string& dir);
  ~HfTokenizer() override;

  // Tokenizer.encode(text, add_special_tokens).
  absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                              bool add_bos) const override;
  // Tokenizer.decode(ids, skip_special_tokens); ids outside the vocabulary
  // are skipped as the crate does.
  absl::StatusOr<std::string> DecodeTokens(
      const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  std::optional<std::string> IdToToken(int64_t id) const override;
  std::optional<int64_t> TokenToId(absl::string_view token) const;

  int64_t vocab_size() const override;
  std::optional<int64_t> bos_id() const override { return bos_id_; }
  std::optional<int64_t> eos_id() const override { return eos_id_; }
  bool IsSpecial(int64_t id) const override;

 private:
  HfTokenizer();
  // Adds the special tokens of a post_processor to prefix_ids_/suffix_ids_.
  [[nodiscard]] absl::Status ParsePostProcessor(const nlohmann::json& json,
                                                const std::string& source);
  [[nodiscard]] absl::Status EncodeSegment(absl::string_view text,
                                           bool starts_text,
                                           std::vector<int32_t>* ids) const;

  std::unique_ptr<internal::AddedVocabulary> added_;
  std::unique_ptr<internal::Normalizer> normalizer_;       // may be null
  std::unique_ptr<internal::PreTokenizer> pre_tokenizer_;  // may be null
  std::unique_ptr<internal::BpeModel> model_;
  std::unique_ptr<internal::Decoder> decoder_;  // may be null
  // The post-processor's single-sequence template: ids before and after.
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  std::optional<int64_t> bos_id_, eos_id_;
  size_t truncation_max_length_ = 0;  // 0: none
  bool truncate_left_ = false;
};

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_HF_TOKENIZER_H_
