// Local inference; see inference.h.
#include "lora/inference.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "lora/chat_template.h"
#include "lora/generation.h"
#include "lora/generation_config.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/tokenizer.h"

namespace openforce::lora {
namespace {

absl::StatusOr<at::ScalarType> ChooseDtype(const std::string& requested,
                                           const LlamaConfig& config,
                                           const std::string& device) {
  std::string name = requested;
  if (name == "auto") {
    name = config.torch_dtype;
    // fp16 matmuls are slow on CPUs; bf16 keeps the range and uses oneDNN's
    // fast path.
    if (name == "float16" && device == "cpu") name = "bfloat16";
  }
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  return absl::InvalidArgumentError(absl::StrCat(
      "dtype '", name, "' is not supported (float32, bfloat16, float16)"));
}

// Length of the longest prefix of `text` that ends on a UTF-8 character
// boundary.
size_t CompleteUtf8Prefix(absl::string_view text) {
  size_t end = text.size();
  // Look back at most 3 bytes for the start of a multi-byte sequence.
  for (size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const unsigned char c =
        static_cast<unsigned char>(text[text.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t needed = (c & 0x80) == 0      ? 1
                    : (c & 0xE0) == 0xC0 ? 2
                    : (c & 0xF0) == 0xE0 ? 3
                                         : 4;
    if (needed > back) end = text.size() - back;
    break;
  }
  return end;
}

}  // namespace

struct InferenceSession::State {
  InferenceRequest request;
  LlamaConfig config;
  std::string dtype_name;
  std::string quantized_sha256;  // LlamaWeights.quantized_sha256
  std::string quantized_cache;   // LlamaWeights.quantized_cache
  std::unique_ptr<Tokenizer> tokenizer;
  absl::Status tokenizer_status;  // why there is none (NotFound names files)
  std::optional<LoraAdapter> adapter;
  std::map<std::string, LoraAdapter> named_adapters;
  std::unique_ptr<LlamaModel> model;
  GenerationConfig generation_config;
  std::unique_ptr<ChatTemplate> chat_template;
  double load_seconds = 0;
};

InferenceSession::InferenceSession(std::unique_ptr<State> state)
    : state_(std::move(state)) {}
InferenceSession::~InferenceSession() = default;

absl::StatusOr<std::unique_ptr<InferenceSession>> InferenceSession::Open(
    const InferenceRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  auto state = std::make_unique<State>();
  state->request = request;
  ASSIGN_OR_RETURN(state->config, LoadLlamaConfig(request.model_dir));
  ASSIGN_OR_RETURN(state->generation_config,
                   LoadGenerationConfig(request.model_dir));
  ASSIGN_OR_RETURN(at::ScalarType dtype,
                   ChooseDtype(request.dtype, state->config, request.device));
  state->dtype_name = dtype == at::kFloat      ? "float32"
                      : dtype == at::kBFloat16 ? "bfloat16"
                                               : "float16";
  absl::StatusOr<std::unique_ptr<Tokenizer>> loaded_tokenizer =
      LoadTokenizer(request.model_dir);
  if (loaded_tokenizer.ok()) {
    state->tokenizer = *std::move(loaded_tokenizer);
  } else if (!absl::IsNotFound(loaded_tokenizer.status())) {
    return loaded_tokenizer.status();
  } else {
    state->tokenizer_status = loaded_tokenizer.status();
  }
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Load(request.model_dir);
  if (chat.ok()) {
    state->chat_template = std::make_unique<ChatTemplate>(*std::move(chat));
  } else if (!absl::IsNotFound(chat.status())) {
    return chat.status();
  }
  LoadOptions load;
  load.dtype = dtype;
  load.device = request.device;
  load.quantization = request.quantize;
  load.write_quantized_cache = request.write_quantized_cache;
  load.quantize_embeddings = request.quantize_embeddings;
  if (request.quantize_embeddings && request.quantize == WeightFormat::kNone) {
    return absl::InvalidArgumentError(
        "--quantize-embeddings needs --quantize q8|q4|nf4");
  }
  if (request.merge_adapter && request.quantize != WeightFormat::kNone) {
    return absl::InvalidArgumentError(
        "--merge-adapter needs full-precision base weights; a quantized base "
        "runs the adapter unmerged");
  }
  ASSIGN_OR_RETURN(LlamaWeights weights,
                   LoadLlamaWeights(request.model_dir, state->config, load));
  state->quantized_sha256 = weights.quantized_sha256;
  state->quantized_cache = weights.quantized_cache;
  if (!request.adapter_dir.empty()) {
    ASSIGN_OR_RETURN(
        state->adapter,
        LoraAdapter::Load(request.adapter_dir, state->config, request.device));
    if (request.merge_adapter) RETURN_IF_ERROR(state->adapter->Merge(&weights));
  }
  for (const auto& [name, dir] : request.named_adapters) {
    ASSIGN_OR_RETURN(LoraAdapter adapter,
                     LoraAdapter::Load(dir, state->config, request.device));
    state->named_adapters.emplace(name, std::move(adapter));
  }
  try {
    state->model =
        std::make_unique<LlamaModel>(state->config, std::move(weights));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("set up model: ", e.what()));
  }
  state->load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return std::unique_ptr<InferenceSession>(
      new InferenceSession(std::move(state)));
}

absl::StatusOr<InferenceResult> InferenceSession::Generate(
    const std::optional<std::string>& prompt_text,
    const std::vector<int64_t>& prompt_ids,
    const std::function<void(absl::string_view piece)>& on_text) {
  GenerateCall call;
  call.prompt_text = prompt_text;
  call.prompt_ids = prompt_ids;
  if (on_text) {
    call.on_text = [&on_text](absl::string_view piece) {
      on_text(piece);
      return true;
    };
  }
  return Generate(call);
}

bool InferenceSession::HasAdapter(const std::string& name) const {
  return state_->named_adapters.count(name) > 0;
}

absl::StatusOr<InferenceResult> InferenceSession::Generate(
    const GenerateCall& call) {
  const std::optional<std::string>& prompt_text = call.prompt_text;
  const std::vector<int64_t>& prompt_ids = call.prompt_ids;
  const auto& on_text = call.on_text;
  State& state = *state_;
  const InferenceRequest& request = state.request;
  InferenceResult result;
  result.dtype = state.dtype_name;
  result.weight_format = std::string(WeightFormatName(state.request.quantize));
  result.quantized_embeddings = state.request.quantize_embeddings;
  result.quantized_sha256 = state.quantized_sha256;
  result.quantized_cache = state.quantized_cache;
  result.load_seconds = state.load_seconds;
  if (prompt_text.has_value() == !prompt_ids.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of a text prompt or prompt token ids");
  }
  if (prompt_text.has_value()) {
    if (state.tokenizer == nullptr) return state.tokenizer_status;
    ASSIGN_OR_RETURN(result.prompt_ids,
                     state.tokenizer->Encode(*prompt_text, true));
  } else {
    result.prompt_ids = prompt_ids;
  }
  Tokenizer* tokenizer = state.tokenizer.get();
  GenerationOptions options;
  options.max_new_tokens = call.max_new_tokens.value_or(request.max_new_tokens);
  options.sampling = request.sampling;
  if (request.sampling_from_model && state.generation_config.sampling) {
    options.sampling = *state.generation_config.sampling;
    options.sampling.seed = request.sampling.seed;
  }
  if (call.sampling.has_value()) options.sampling = *call.sampling;
  if (!call.adapter.empty()) {
    auto it = state.named_adapters.find(call.adapter);
    if (it == state.named_adapters.end()) {
      return absl::NotFoundError(
          absl::StrCat("no adapter named '", call.adapter, "'"));
    }
    options.adapter = &it->second;
  } else if (state.adapter.has_value() && !request.merge_adapter &&
             !call.base_only) {
    options.adapter = &*state.adapter;
  }
  if (request.stop_at_eos) {
    options.stop_tokens = state.config.eos_token_ids;
    for (int64_t id : state.generation_config.eos_token_ids) {
      if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(),
                    id) == options.stop_tokens.end()) {
        options.stop_tokens.push_back(id);
      }
    }
    if (tokenizer != nullptr && tokenizer->eos_id() &&
        std::find(options.stop_tokens.begin(), options.stop_tokens.end(),
                  *tokenizer->eos_id()) == options.stop_tokens.end()) {
      options.stop_tokens.push_back(*tokenizer->eos_id());
    }
  }
  std::vector<int64_t> generated;
  size_t emitted = 0;
  if (tokenizer != nullptr && on_text) {
    options.on_token = [&](int64_t token) {
      generated.push_back(token);
      absl::StatusOr<std::string> text = tokenizer->Decode(generated);
      if (!text.ok()) return true;
      const size_t complete = CompleteUtf8Prefix(*text);
      if (complete > emitted) {
        const bool go_on = on_text(
            absl::string_view(*text).substr(emitted, complete - emitted));
        emitted = complete;
        return go_on;
      }
      return true;
    };
  }
  ASSIGN_OR_RETURN(GenerationResult generation,
                   lora::Generate(*state.model, result.prompt_ids, options));
  result.generated_ids = generation.tokens;
  result.stop_reason = generation.stop_reason;
  result.prefill_seconds = generation.prefill_seconds;
  if (generation.decode_seconds > 0) {
    result.decode_tokens_per_second =
        static_cast<double>(generation.tokens.size() - 1) /
        generation.decode_seconds;
  }
  if (tokenizer != nullptr) {
    ASSIGN_OR_RETURN(result.text, tokenizer->Decode(result.generated_ids));
    if (on_text && result.text.size() > emitted &&
        result.stop_reason != "callback") {
      on_text(absl::string_view(result.text).substr(emitted));
    }
  }
  return result;
}

const Tokenizer* InferenceSession::tokenizer() const {
  return state_->tokenizer.get();
}

const ChatTemplate* InferenceSession::chat_template() const {
  return state_->chat_template.get();
}

int64_t InferenceSession::context_length() const {
  return state_->config.max_position_embeddings;
}

absl::StatusOr<InferenceResult> RunInference(
    const InferenceRequest& request,
    const std::function<void(absl::string_view piece)>& on_text) {
  if (request.prompt_text.has_value() == !request.prompt_ids.empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of a text prompt or prompt token ids");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<InferenceSession> session,
                   InferenceSession::Open(request));
  return session->Generate(request.prompt_text, request.prompt_ids, on_text);
}

}  // namespace openforce::lora
