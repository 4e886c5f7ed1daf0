// Tokenizers; see tokenizer.h.
#include "lora/tokenizer.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
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

  absl::StatusOr<std::string> Decode(
      const std::vector<int64_t>& ids) const override {
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

absl::StatusOr<std::string> ByteTokenizer::Decode(
    const std::vector<int64_t>& ids) const {
  std::string text;
  for (int64_t id : ids) {
    if (id >= kFirstByte && id < kVocabSize) {
      text.push_back(static_cast<char>(id - kFirstByte));
    } else if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", id, " is negative"));
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
  const std::string sentencepiece_path = model_dir + "/tokenizer.model";
  if (ReadFileToString(sentencepiece_path).ok()) {
    return LoadSentencePieceTokenizer(sentencepiece_path);
  }
  const std::string marker_path = absl::StrCat(model_dir, "/", kMarkerFile);
  absl::StatusOr<std::string> marker = ReadFileToString(marker_path);
  if (!marker.ok()) {
    return absl::NotFoundError(
        absl::StrCat(model_dir, " has no tokenizer.model (SentencePiece) or ",
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
