// Loads the openforce_sentencepiece plugin into its own namespace; see
// sentencepiece_bridge.h.
#include "lora/internal/sentencepiece_bridge.h"

#include <dlfcn.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lora/internal/sentencepiece_c_api.h"

namespace openforce::lora::internal {
namespace {

struct PluginApi {
  decltype(&openforce_spm_load) load = nullptr;
  decltype(&openforce_spm_free) free_processor = nullptr;
  decltype(&openforce_spm_encode) encode = nullptr;
  decltype(&openforce_spm_decode) decode = nullptr;
  decltype(&openforce_spm_piece_size) piece_size = nullptr;
  decltype(&openforce_spm_bos_id) bos_id = nullptr;
  decltype(&openforce_spm_eos_id) eos_id = nullptr;
  decltype(&openforce_spm_train) train = nullptr;
  decltype(&openforce_spm_release) release = nullptr;
  std::string error;  // why the plugin is unusable; empty when it loaded
};

template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* out) {
  *out = reinterpret_cast<Fn>(dlsym(handle, name));
  return *out != nullptr;
}

PluginApi OpenPlugin() {
  PluginApi api;
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("OPENFORCE_SENTENCEPIECE_PLUGIN")) {
    candidates.push_back(path);
  }
  candidates.push_back(OPENFORCE_SENTENCEPIECE_PLUGIN_PATH);
  candidates.push_back("libopenforce_sentencepiece.so");
  void* handle = nullptr;
  std::string failures;
  for (const std::string& candidate : candidates) {
    // A new link-map namespace gives the plugin its own copies of every library
    // it needs, so libsentencepiece's protobuf never meets libprotobuf. The
    // plugin stays loaded for the life of the process: its code backs every
    // tokenizer handed out.
    handle = dlmopen(LM_ID_NEWLM, candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) break;
    const char* message = dlerror();
    absl::StrAppend(&failures, failures.empty() ? "" : "; ",
                    message ? message : candidate);
  }
  if (handle == nullptr) {
    api.error =
        absl::StrCat("cannot load the SentencePiece plugin: ", failures);
    return api;
  }
  if (!Resolve(handle, "openforce_spm_load", &api.load) ||
      !Resolve(handle, "openforce_spm_free", &api.free_processor) ||
      !Resolve(handle, "openforce_spm_encode", &api.encode) ||
      !Resolve(handle, "openforce_spm_decode", &api.decode) ||
      !Resolve(handle, "openforce_spm_piece_size", &api.piece_size) ||
      !Resolve(handle, "openforce_spm_bos_id", &api.bos_id) ||
      !Resolve(handle, "openforce_spm_eos_id", &api.eos_id) ||
      !Resolve(handle, "openforce_spm_train", &api.train) ||
      !Resolve(handle, "openforce_spm_release", &api.release)) {
    api.error = "the SentencePiece plugin lacks an expected function";
  }
  return api;
}

// Loaded once and never changed afterwards.
const PluginApi& Api() {
  static const PluginApi* const api = new PluginApi(OpenPlugin());
  return *api;
}

std::string TakeError(char* error) {
  std::string text = error != nullptr ? error : "unknown error";
  Api().release(error);
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SentencePieceBridge>> SentencePieceBridge::Load(
    const std::string& model_path) {
  const PluginApi& api = Api();
  if (!api.error.empty()) return absl::FailedPreconditionError(api.error);
  char* error = nullptr;
  void* processor = api.load(model_path.c_str(), &error);
  if (processor == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load SentencePiece model ", model_path, ": ",
                     TakeError(error)));
  }
  return std::unique_ptr<SentencePieceBridge>(
      new SentencePieceBridge(processor));
}

SentencePieceBridge::~SentencePieceBridge() {
  Api().free_processor(processor_);
}

absl::StatusOr<std::vector<int>> SentencePieceBridge::Encode(
    const std::string& text) const {
  int* ids = nullptr;
  size_t count = 0;
  char* error = nullptr;
  if (!Api().encode(processor_, text.data(), text.size(), &ids, &count,
                    &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece encode: ", TakeError(error)));
  }
  std::vector<int> out(ids, ids + count);
  Api().release(ids);
  return out;
}

absl::StatusOr<std::string> SentencePieceBridge::Decode(
    const std::vector<int>& ids) const {
  char* text = nullptr;
  size_t length = 0;
  char* error = nullptr;
  if (!Api().decode(processor_, ids.data(), ids.size(), &text, &length,
                    &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece decode: ", TakeError(error)));
  }
  std::string out(text, length);
  Api().release(text);
  return out;
}

int SentencePieceBridge::PieceSize() const {
  return Api().piece_size(processor_);
}
int SentencePieceBridge::BosId() const { return Api().bos_id(processor_); }
int SentencePieceBridge::EosId() const { return Api().eos_id(processor_); }

absl::Status TrainSentencePiece(const std::string& arguments) {
  const PluginApi& api = Api();
  if (!api.error.empty()) return absl::FailedPreconditionError(api.error);
  char* error = nullptr;
  if (!api.train(arguments.c_str(), &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("SentencePiece training: ", TakeError(error)));
  }
  return absl::OkStatus();
}

}  // namespace openforce::lora::internal
