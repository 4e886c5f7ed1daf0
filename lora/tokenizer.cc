// Tokenizers; see tokenizer.h.
#include "lora/tokenizer.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/hf_tokenizer.h"
#include "lora/internal/sentencepiece_bridge.h"

namespace openforce::lora {
namespace {

constexpr char kMarkerFile[] = "openforce_tokenizer.json";

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(
      std::unique_ptr<internal::SentencePieceBridge> sp)
      : sp_(std::move(sp)) {}

  absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                              bool add_bos) const override {
    ASSIGN_OR_RETURN(std::vector<int> pieces, sp_->Encode(std::string(text)));
    std::vector<int64_t> ids;
    if (add_bos && sp_->BosId() >= 0) ids.push_back(sp_->BosId());
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    return ids;
  }

  absl::StatusOr<std::string> DecodeTokens(
      const std::vector<int64_t>& ids,
      bool /*skip_special_tokens*/) const override {
    std::vector<int> pieces;
    for (int64_t id : ids) {
      if (id < 0 || id >= sp_->PieceSize()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "token ", id, " is outside the SentencePiece vocabulary of ",
            sp_->PieceSize()));
      }
      pieces.push_back(static_cast<int>(id));
    }
    return sp_->Decode(pieces);
  }

  // The plugin's C interface exposes decoding, not pieces: a token's text.
  std::optional<std::string> IdToToken(int64_t id) const override {
    if (id < 0 || id >= sp_->PieceSize()) return std::nullopt;
    absl::StatusOr<std::string> text = sp_->Decode({static_cast<int>(id)});
    if (!text.ok()) return std::nullopt;
    return *text;
  }
  bool IsSpecial(int64_t id) const override {
    return id == sp_->BosId() || id == sp_->EosId();
  }
  int64_t vocab_size() const override { return sp_->PieceSize(); }
  std::optional<int64_t> bos_id() const override {
    return sp_->BosId() >= 0 ? std::optional<int64_t>(sp_->BosId())
                             : std::nullopt;
  }
  std::optional<int64_t> eos_id() const override {
    return sp_->EosId() >= 0 ? std::optional<int64_t>(sp_->EosId())
                             : std::nullopt;
  }

 private:
  std::unique_ptr<internal::SentencePieceBridge> sp_;
};

}  // namespace

absl::StatusOr<std::vector<int64_t>> ByteTokenizer::Encode(
    absl::string_view text, bool add_bos) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size() + 1);
  if (add_bos) ids.push_back(kBos);
  for (unsigned char byte : text) ids.push_back(kFirstByte + byte);
  return ids;
}

std::optional<std::string> ByteTokenizer::IdToToken(int64_t id) const {
  static const char* const kSpecial[] = {"<pad>", "<s>", "</s>"};
  if (id < 0 || id >= kVocabSize) return std::nullopt;
  if (id < kFirstByte) return kSpecial[id];
  char name[8];
  std::snprintf(name, sizeof(name), "<0x%02X>",
                static_cast<unsigned>(id - kFirstByte));
  return std::string(name);
}

absl::StatusOr<std::string> ByteTokenizer::DecodeTokens(
    const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string text;
  for (int64_t id : ids) {
    if (id >= kFirstByte && id < kVocabSize) {
      text.push_back(static_cast<char>(id - kFirstByte));
    } else if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", id, " is negative"));
    } else if (id < kFirstByte && !skip_special_tokens) {
      text += *IdToToken(id);
    }
    // Special tokens and ids beyond the byte range (a model's extra vocabulary)
    // have no text.
  }
  return text;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(
    const std::string& model_path) {
  ASSIGN_OR_RETURN(std::unique_ptr<internal::SentencePieceBridge> sp,
                   internal::SentencePieceBridge::Load(model_path));
  return std::unique_ptr<Tokenizer>(new SentencePieceTokenizer(std::move(sp)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir) {
  if (std::filesystem::exists(model_dir + "/tokenizer.json")) {
    ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tokenizer,
                     HfTokenizer::Load(model_dir));
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }
  const std::string sentencepiece_path = model_dir + "/tokenizer.model";
  if (ReadFileToString(sentencepiece_path).ok()) {
    return LoadSentencePieceTokenizer(sentencepiece_path);
  }
  const std::string marker_path = absl::StrCat(model_dir, "/", kMarkerFile);
  absl::StatusOr<std::string> marker = ReadFileToString(marker_path);
  if (!marker.ok()) {
    return absl::NotFoundError(absl::StrCat(
        model_dir,
        " has no tokenizer.json, tokenizer.model (SentencePiece) or ",
        kMarkerFile, "; pass token ids instead of text"));
  }
  absl::StatusOr<nlohmann::json> json =
      ParseUntrustedJson(*marker, marker_path);
  if (!json.ok() || !json->is_object() || !json->contains("type") ||
      (*json)["type"] != "byte") {
    return absl::InvalidArgumentError(
        absl::StrCat(marker_path, ": expected {\"type\": \"byte\"}"));
  }
  return std::unique_ptr<Tokenizer>(new ByteTokenizer());
}

absl::Status WriteByteTokenizerMarker(const std::string& model_dir) {
  return WriteFileAtomically(absl::StrCat(model_dir, "/", kMarkerFile),
                             "{\"type\": \"byte\"}\n");
}

}  // namespace openforce::lora
