// C++ access to SentencePiece through the openforce_sentencepiece plugin, which
// is opened with dlmopen in its own link-map namespace (see
// sentencepiece_c_api.h for why).
#ifndef OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_BRIDGE_H_
#define OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_BRIDGE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace openforce::lora::internal {

class SentencePieceBridge {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<SentencePieceBridge>>
  Load(const std::string& model_path);
  ~SentencePieceBridge();

  [[nodiscard]] absl::StatusOr<std::vector<int>> Encode(
      const std::string& text) const;
  [[nodiscard]] absl::StatusOr<std::string> Decode(
      const std::vector<int>& ids) const;
  int PieceSize() const;
  int BosId() const;  // -1 when the model has none
  int EosId() const;

 private:
  explicit SentencePieceBridge(void* processor) : processor_(processor) {}
  void* processor_;
};

// Trains a SentencePiece model (SentencePieceTrainer::Train arguments), for
// tests and for people who build small models.
[[nodiscard]] absl::Status TrainSentencePiece(const std::string& arguments);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_BRIDGE_H_
