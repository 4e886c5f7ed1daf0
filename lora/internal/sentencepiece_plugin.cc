// The openforce_sentencepiece plugin; see sentencepiece_c_api.h for why it
// exists. No Abseil header may be included here: SentencePiece declares its own
// absl::string_view.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lora/internal/sentencepiece_c_api.h"

namespace {

char* CopyString(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

sentencepiece::SentencePieceProcessor* Processor(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

}  // namespace

extern "C" {

void* openforce_spm_load(const char* path, char** error) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const auto status = processor->Load(path);
  if (!status.ok()) {
    *error = CopyString(status.ToString());
    delete processor;
    return nullptr;
  }
  return processor;
}

void openforce_spm_free(void* processor) { delete Processor(processor); }

void openforce_spm_release(void* buffer) { std::free(buffer); }

int openforce_spm_encode(void* processor, const char* text, size_t length,
                         int** ids, size_t* count, char** error) {
  std::vector<int> pieces;
  const auto status =
      Processor(processor)->Encode(std::string(text, length), &pieces);
  if (!status.ok()) {
    *error = CopyString(status.ToString());
    return 0;
  }
  *count = pieces.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (pieces.size() + 1)));
  std::memcpy(*ids, pieces.data(), sizeof(int) * pieces.size());
  return 1;
}

int openforce_spm_decode(void* processor, const int* ids, size_t count,
                         char** text, size_t* length, char** error) {
  std::string decoded;
  const auto status = Processor(processor)->Decode(
      std::vector<int>(ids, ids + count), &decoded);
  if (!status.ok()) {
    *error = CopyString(status.ToString());
    return 0;
  }
  *length = decoded.size();
  *text = CopyString(decoded);
  return 1;
}

int openforce_spm_piece_size(void* processor) {
  return Processor(processor)->GetPieceSize();
}
int openforce_spm_bos_id(void* processor) {
  return Processor(processor)->bos_id();
}
int openforce_spm_eos_id(void* processor) {
  return Processor(processor)->eos_id();
}

int openforce_spm_train(const char* arguments, char** error) {
  const auto status = sentencepiece::SentencePieceTrainer::Train(arguments);
  if (!status.ok()) {
    *error = CopyString(status.ToString());
    return 0;
  }
  return 1;
}

}  // extern "C"
