// SentencePiece wrapper; see sentencepiece_bridge.h. No Abseil header may be
// included here.
#include "lora/internal/sentencepiece_bridge.h"

#include <sentencepiece_processor.h>

namespace openforce::lora::internal {

struct SentencePieceBridge::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

SentencePieceBridge::SentencePieceBridge(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
SentencePieceBridge::~SentencePieceBridge() = default;

std::unique_ptr<SentencePieceBridge> SentencePieceBridge::Load(
    const std::string& path, std::string* error) {
  auto impl = std::make_unique<Impl>();
  const auto status = impl->processor.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SentencePieceBridge>(
      new SentencePieceBridge(std::move(impl)));
}

bool SentencePieceBridge::Encode(const std::string& text, std::vector<int>* ids,
                                 std::string* error) const {
  const auto status = impl_->processor.Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool SentencePieceBridge::Decode(const std::vector<int>& ids, std::string* text,
                                 std::string* error) const {
  const auto status = impl_->processor.Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int SentencePieceBridge::PieceSize() const {
  return impl_->processor.GetPieceSize();
}
int SentencePieceBridge::BosId() const { return impl_->processor.bos_id(); }
int SentencePieceBridge::EosId() const { return impl_->processor.eos_id(); }

}  // namespace openforce::lora::internal
