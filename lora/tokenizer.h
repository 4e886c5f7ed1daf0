// Text <-> token ids. One interface for Hugging Face tokenizer.json (Llama 3,
// Qwen, Mistral, Gemma 3; lora/hf_tokenizer.h), SentencePiece models
// (tokenizer.model, as Llama 2 and TinyLlama ship it) and the byte-level
// tokenizer tiny test models use. Torch-free.
#ifndef OPENFORCE_LORA_TOKENIZER_H_
#define OPENFORCE_LORA_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce::lora {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`; `add_bos` adds the model's special tokens (the
  // beginning-of-sequence id, or whatever tokenizer.json's post-processor
  // adds).
  [[nodiscard]] virtual absl::StatusOr<std::vector<int64_t>> Encode(
      absl::string_view text, bool add_bos) const = 0;
  // Text of `ids`; special tokens produce text only when
  // !skip_special_tokens (SentencePiece never gives them text).
  [[nodiscard]] virtual absl::StatusOr<std::string> DecodeTokens(
      const std::vector<int64_t>& ids, bool skip_special_tokens) const = 0;
  // Text of `ids` without special tokens: what a reader of generated text
  // wants.
  [[nodiscard]] absl::StatusOr<std::string> Decode(
      const std::vector<int64_t>& ids) const {
    return DecodeTokens(ids, /*skip_special_tokens=*/true);
  }
  // The vocabulary entry of `id` (nullopt outside the vocabulary).
  virtual std::optional<std::string> IdToToken(int64_t id) const = 0;
  virtual bool IsSpecial(int64_t id) const = 0;

  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int64_t> bos_id() const = 0;
  virtual std::optional<int64_t> eos_id() const = 0;
};

// Byte-level: id 0 padding/unknown, 1 bos, 2 eos, and byte b as id 3 + b, the
// same ids Llama's SentencePiece vocabulary gives its byte-fallback pieces
// <0x00>..<0xFF>.
class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kPad = 0;
  static constexpr int64_t kBos = 1;
  static constexpr int64_t kEos = 2;
  static constexpr int64_t kFirstByte = 3;
  static constexpr int64_t kVocabSize = 259;

  absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                              bool add_bos) const override;
  absl::StatusOr<std::string> DecodeTokens(
      const std::vector<int64_t>& ids, bool skip_special_tokens) const override;
  std::optional<std::string> IdToToken(int64_t id) const override;
  bool IsSpecial(int64_t id) const override {
    return id >= 0 && id < kFirstByte;
  }
  int64_t vocab_size() const override { return kVocabSize; }
  std::optional<int64_t> bos_id() const override { return kBos; }
  std::optional<int64_t> eos_id() const override { return kEos; }
};

// SentencePiece from a serialized model file (tokenizer.model).
[[nodiscard]] absl::StatusOr<std::unique_ptr<Tokenizer>>
LoadSentencePieceTokenizer(const std::string& model_path);

// The tokenizer of a model directory: tokenizer.json (Hugging Face) when
// present, else tokenizer.model (SentencePiece), else openforce_tokenizer.json
// {"type": "byte"} for byte-level test models. NotFound when it has none.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir);

// Marks `model_dir` as using the byte-level tokenizer.
[[nodiscard]] absl::Status WriteByteTokenizerMarker(
    const std::string& model_dir);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_TOKENIZER_H_
