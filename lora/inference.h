// Local generation from a model directory and an optional PEFT adapter
// directory, for `openforce-worker infer` and for people running pulled
// adapters offline. Torch-free, so the worker binary's command-line code does
// not compile libtorch headers.
#ifndef OPENFORCE_LORA_INFERENCE_H_
#define OPENFORCE_LORA_INFERENCE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/weight_format.h"
#include "lora/sampling.h"

namespace openforce::lora {

class ChatTemplate;
class Tokenizer;

struct InferenceRequest {
  std::string model_dir;
  std::string adapter_dir;  // empty: base model only
  // More adapters, by name, that a GenerateCall may pick (the base weights
  // are shared).
  std::map<std::string, std::string> named_adapters;
  // Exactly one of these: text (needs the model's tokenizer) or token ids.
  std::optional<std::string> prompt_text;
  std::vector<int64_t> prompt_ids;
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  // The user chose no sampling settings: the model's generation_config.json
  // sampling defaults replace `sampling` (its seed is kept).
  bool sampling_from_model = false;
  std::string device = "cpu";
  // "auto" follows config.json's torch_dtype, with bf16 for fp16 models on the
  // CPU; otherwise float32, bfloat16 or float16.
  std::string dtype = "auto";
  // The base projections quantized at load (weight_format.h); adapters then
  // run unmerged.
  WeightFormat quantize = WeightFormat::kNone;
  // With `quantize`: write the quantized weights next to the model so the
  // next load maps them (a matching cache is always read).
  bool write_quantized_cache = false;
  // With `quantize`: the token embeddings and the output head too (one matrix
  // when tied). A 128k-vocabulary head is a fifth of a 1B model's bytes.
  bool quantize_embeddings = false;
  bool merge_adapter =
      false;  // fold the adapter into the weights before generating
  // Stop at config.json's and generation_config.json's eos ids (all of
  // them) and the tokenizer's eos (a chat template's end-of-turn token).
  bool stop_at_eos = true;
};

struct InferenceResult {
  std::vector<int64_t> prompt_ids;
  std::vector<int64_t> generated_ids;
  std::string text;  // generated text; empty when the model has no tokenizer
  std::string stop_reason;
  std::string dtype;
  std::string weight_format;  // "none", "q8", "q4", "nf4"
  bool quantized_embeddings = false;
  // With a quantized base: its SHA-256 and what became of the cache
  // (LlamaWeights.quantized_sha256, quantized_cache).
  std::string quantized_sha256;
  std::string quantized_cache;
  double load_seconds = 0;
  double prefill_seconds = 0;
  double decode_tokens_per_second = 0;
};

// One generation of a session, with per-call settings (a server's request).
struct GenerateCall {
  std::optional<std::string> prompt_text;  // or prompt_ids
  std::vector<int64_t> prompt_ids;
  // A name of InferenceRequest::named_adapters; empty: the request's
  // adapter_dir (or the base model when there is none).
  std::string adapter;
  bool base_only = false;  // ignore the request's adapter_dir
  std::optional<int64_t> max_new_tokens;
  std::optional<SamplingOptions> sampling;
  // Each piece of text as it forms whole UTF-8 characters; returning false
  // stops the generation (stop_reason "callback").
  std::function<bool(absl::string_view piece)> on_text;
};

// A model (and adapter) loaded once for many generations, as an interactive
// chat needs. The request's prompt fields are ignored here.
class InferenceSession {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<InferenceSession>> Open(
      const InferenceRequest& request);
  ~InferenceSession();

  // Generates from a text prompt (needs the tokenizer) or from token ids,
  // calling `on_text` with each piece of text as soon as it forms whole
  // UTF-8 characters.
  [[nodiscard]] absl::StatusOr<InferenceResult> Generate(
      const std::optional<std::string>& prompt_text,
      const std::vector<int64_t>& prompt_ids,
      const std::function<void(absl::string_view piece)>& on_text = nullptr);

  [[nodiscard]] absl::StatusOr<InferenceResult> Generate(
      const GenerateCall& call);
  bool HasAdapter(const std::string& name) const;

  // Null when the model directory has none.
  const Tokenizer* tokenizer() const;
  const ChatTemplate* chat_template() const;
  // config.json's max_position_embeddings.
  int64_t context_length() const;

 private:
  struct State;
  explicit InferenceSession(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Loads, generates, and calls `on_text` with each piece of generated text as
// soon as it forms whole UTF-8 characters (never when there is no tokenizer).
[[nodiscard]] absl::StatusOr<InferenceResult> RunInference(
    const InferenceRequest& request,
    const std::function<void(absl::string_view piece)>& on_text = nullptr);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_INFERENCE_H_
