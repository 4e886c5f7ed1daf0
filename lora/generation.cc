// Generation; see generation.h.
#include "lora/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>

#include "absl/strings/str_cat.h"

namespace openforce::lora {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Picks the next token from fp32 logits [vocab].
int64_t ChooseToken(at::Tensor logits, const std::vector<int64_t>& history,
                    const SamplingOptions& sampling, at::Generator& generator) {
  if (sampling.repetition_penalty != 1.0 && !history.empty()) {
    // transformers' rule: shrink positive logits, grow negative ones.
    at::Tensor ids = at::tensor(history, at::TensorOptions().dtype(at::kLong))
                         .to(logits.device());
    at::Tensor seen = logits.index_select(0, ids);
    seen = at::where(seen > 0, seen / sampling.repetition_penalty,
                     seen * sampling.repetition_penalty);
    logits = logits.index_put({ids}, seen);
  }
  if (sampling.greedy) return logits.argmax().item<int64_t>();
  logits = logits / sampling.temperature;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  if (sampling.top_k > 0 && sampling.top_k < logits.size(0)) {
    at::Tensor kth = std::get<0>(logits.topk(sampling.top_k)).min();
    logits = logits.masked_fill(logits < kth, minus_inf);
  }
  if (sampling.top_p < 1.0) {
    auto [sorted, order] = logits.sort(/*dim=*/0, /*descending=*/true);
    at::Tensor probs = at::softmax(sorted, 0);
    // Drop a token when the tokens ranked above it already reach top_p.
    at::Tensor before = probs.cumsum(0) - probs;
    at::Tensor drop_sorted = before > sampling.top_p;
    at::Tensor drop =
        at::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    logits = logits.masked_fill(drop, minus_inf);
  }
  at::Tensor probs = at::softmax(logits, 0);
  return at::multinomial(probs.to(at::kCPU), 1, /*replacement=*/false,
                         generator)
      .item<int64_t>();
}

}  // namespace

absl::Status ValidateSamplingOptions(const SamplingOptions& options) {
  if (!(options.repetition_penalty > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be positive, got ",
                     options.repetition_penalty));
  }
  if (options.greedy) return absl::OkStatus();
  if (!(options.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be positive, got ", options.temperature,
                     " (use greedy for 0)"));
  }
  if (options.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be >= 0, got ", options.top_k));
  }
  if (!(options.top_p > 0 && options.top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p must be in (0, 1], got ", options.top_p));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerationResult> Generate(const LlamaModel& model,
                                          const std::vector<int64_t>& prompt,
                                          const GenerationOptions& options) {
  if (prompt.empty())
    return absl::InvalidArgumentError("the prompt has no tokens");
  for (int64_t id : prompt) {
    if (id < 0 || id >= model.config().vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", id, " is outside the vocabulary [0, ",
                       model.config().vocab_size, ")"));
    }
  }
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError("max_new_tokens must not be negative");
  }
  const SamplingOptions& sampling = options.sampling;
  if (absl::Status valid = ValidateSamplingOptions(sampling); !valid.ok())
    return valid;

  GenerationResult result;
  result.stop_reason = "max_new_tokens";
  try {
    at::NoGradGuard no_grad;
    at::Generator generator =
        at::detail::createCPUGenerator(options.sampling.seed);
    std::vector<int64_t> sequence = prompt;
    const int64_t capacity =
        static_cast<int64_t>(prompt.size()) + options.max_new_tokens;
    KvCache cache;
    if (options.use_kv_cache) {
      cache = KvCache::Create(model.config(), 1, capacity, model.dtype(),
                              model.device());
    }
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    at::Tensor next_input = at::tensor(prompt, long_options).unsqueeze(0);
    auto start = Clock::now();
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      ForwardOptions forward;
      forward.adapter = options.adapter;
      forward.last_position_only = true;
      if (options.use_kv_cache) {
        forward.cache = &cache;
      } else {
        next_input = at::tensor(sequence, long_options).unsqueeze(0);
      }
      at::Tensor logits = model.Forward(next_input, forward)[0][0];
      const int64_t token = ChooseToken(logits, sequence, sampling, generator);
      if (step == 0) {
        result.prefill_seconds = SecondsSince(start);
        start = Clock::now();
      }
      sequence.push_back(token);
      result.tokens.push_back(token);
      next_input =
          at::tensor(std::vector<int64_t>{token}, long_options).unsqueeze(0);
      if (options.on_token && !options.on_token(token)) {
        result.stop_reason = "callback";
        break;
      }
      if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(),
                    token) != options.stop_tokens.end()) {
        result.stop_reason = "stop_token";
        break;
      }
    }
    if (result.tokens.size() > 1) result.decode_seconds = SecondsSince(start);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("generate: ", e.what()));
  }
  return result;
}

}  // namespace openforce::lora
