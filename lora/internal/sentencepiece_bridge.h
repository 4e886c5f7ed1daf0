// A narrow wrapper around sentencepiece::SentencePieceProcessor.
// SentencePiece's header declares its own `absl::string_view`, which collides
// with Abseil's, so it is included only in sentencepiece_bridge.cc, and this
// interface uses standard types alone.
#ifndef OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_BRIDGE_H_
#define OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_BRIDGE_H_

#include <memory>
#include <string>
#include <vector>

namespace openforce::lora::internal {

class SentencePieceBridge {
 public:
  // Null with `error` set when the model cannot be loaded.
  static std::unique_ptr<SentencePieceBridge> Load(const std::string& path,
                                                   std::string* error);
  ~SentencePieceBridge();

  bool Encode(const std::string& text, std::vector<int>* ids,
              std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text,
              std::string* error) const;
  int PieceSize() const;
  int BosId() const;  // -1 when the model has none
  int EosId() const;

 private:
  struct Impl;
  explicit SentencePieceBridge(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_SENTENCEPIECE_BRIDGE_H_
