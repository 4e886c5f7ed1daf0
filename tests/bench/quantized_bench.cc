// Quantized base weights (q8, q4, nf4) against bf16 on this CPU. Prints:
//   1. the copy bandwidth of a buffer far larger than the caches (bytes read
//      plus written per second, as lora_bench counts it);
//   2. each matrix-vector kernel on an [8192, 4096] weight: GB/s of the
//      quantized bytes it streams and the ratio to that bandwidth (goal
//      >= 0.8), next to the bf16 kernel;
//   3. per model (the 110M bench config and Llama-3.2-1B's shape, random
//      weights): decode tokens/s at batch 1 with the KV cache, the bytes a
//      token reads, the ratio of achieved to copy bandwidth (goal >= 0.8),
//      the speed-up over bf16 (goals on the 1B model: q8 >= 1.8x, q4 >= 3x),
//      and prefill tokens/s over a 128-token prompt;
//   4. a QLoRA training step (rank 16, 2 x 128 tokens) on the 110M model per
//      base format: tokens/s and the ratio to the bf16 base (goal >= 0.8x);
//   5. quality against full precision: mean KL divergence of the next-token
//      distributions and top-1 agreement, on the hf-llama-tiny fixture
//      (--fixture) and the 110M model.
// Not a test: it prints figures. Usage:
//   quantized_bench [--threads N] [--tokens N] [--models 110m,1b]
//                   [--train_steps N] [--fixture DIR]
//                   [--formats bf16,q8,q4,nf4] [--kernels_only | --decode_only]
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "lora/blas_core.h"
#include "lora/checkpoint.h"
#include "lora/compute_device.h"
#include "lora/generation.h"
#include "lora/internal/bf16_gemv.h"
#include "lora/internal/quantized_gemv.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/quantized_matrix.h"
#include "lora/trainer.h"
#include "tests/bench/bench_common.h"
#include "tests/testing/tiny_llama.h"

ABSL_FLAG(int32_t, threads, 2, "CPU threads");
ABSL_FLAG(int32_t, tokens, 32, "decoded tokens per measurement");
ABSL_FLAG(std::string, models, "110m,1b", "models measured: 110m, 1b");
ABSL_FLAG(int32_t, train_steps, 3, "timed QLoRA steps per format");
ABSL_FLAG(bool, kernels_only, false, "only sections 1 and 2");
ABSL_FLAG(std::string, formats, "bf16,q8,q4,nf4",
          "base formats in section 3 (bf16 is the reference for the ratios)");
ABSL_FLAG(bool, decode_only, false, "only sections 1 to 3");
#ifndef OPENFORCE_FIXTURE_DIR
#define OPENFORCE_FIXTURE_DIR "../shared/fixtures"
#endif
ABSL_FLAG(std::string, fixture, OPENFORCE_FIXTURE_DIR "/hf-llama-tiny",
          "Hugging Face checkpoint for the quality table (skipped if absent)");

namespace openforce::lora {
namespace {

using bench::BenchConfig110M;
using bench::Clock;
using bench::MeasureCopyBandwidth;
using bench::Seconds;

constexpr WeightFormat kFormats[] = {WeightFormat::kNone, WeightFormat::kQ8,
                                     WeightFormat::kQ4, WeightFormat::kNf4};

// Runs `step` for at least half a second; seconds per call.
template <typename F>
double TimePerCall(F step) {
  step();
  const auto start = Clock::now();
  int calls = 0;
  while (Seconds(start) < 0.5 || calls < 3) {
    step();
    ++calls;
  }
  return Seconds(start) / calls;
}

// A matrix of random codes and scales (their values do not change the
// kernels' speed) of about `bytes`, so that it streams from memory rather
// than from the last-level cache.
QuantizedMatrix RandomQuantized(WeightFormat format, int64_t cols,
                                int64_t bytes) {
  QuantizedMatrix m;
  m.format = format;
  m.cols = cols;
  const int64_t blocks = m.blocks_per_row();
  m.rows = std::max<int64_t>(
      1,
      bytes / std::max<int64_t>(1, QuantizedMatrixBytes(format, 1, cols, 2)));
  m.codes = at::randint(
      0, 256, {m.rows, format == WeightFormat::kQ4 ? blocks * 16 : blocks * 32},
      at::kByte);
  if (format == WeightFormat::kQ8) m.codes = m.codes.to(at::kChar);
  if (format == WeightFormat::kNf4) {
    m.scales = at::randint(-127, 128, {m.rows, blocks}, at::kChar);
    m.group_scales =
        at::rand({(m.rows * blocks + 255) / 256}, at::kFloat) * 1e-3;
    m.absmax_mean = 0.05f;
  } else {
    m.scales = (at::rand({m.rows, blocks}) * 1e-3).to(at::kHalf);
  }
  return m;
}

void BenchKernels(double bandwidth) {
  // Four times the largest last-level caches of current server CPUs' slices
  // (this machine reports 260 MiB): every call streams from memory.
  const int64_t bytes = int64_t{1} << 30, cols = 4096;
  const at::Tensor x = at::randn({cols});
  std::printf(
      "\n2. Matrix-vector kernels (%s), x [%lld], about 1 GiB of weights "
      "per format (from memory, not cache)\n"
      "| format | MB streamed | GB/s | vs copy bandwidth "
      "|\n|---|---|---|---|\n",
      internal::GemvIsaName(internal::BestGemvIsa()),
      static_cast<long long>(cols));
  if (internal::Bf16GemvAvailable()) {
    const at::Tensor w16 =
        at::randn({bytes / (2 * cols), cols}).to(at::kBFloat16);
    const at::Tensor x16 = x.to(at::kBFloat16);
    const double seconds =
        TimePerCall([&] { (void)internal::Bf16Gemv(w16, x16); });
    const double streamed = static_cast<double>(w16.numel() * 2);
    std::printf("| bf16 | %.1f | %.1f | %.2f |\n", streamed / 1e6,
                streamed / seconds / 1e9, streamed / seconds / bandwidth);
  }
  for (WeightFormat format : kFormats) {
    if (format == WeightFormat::kNone) continue;
    const QuantizedMatrix m = RandomQuantized(format, cols, bytes);
    std::vector<float> y(m.rows);
    for (internal::GemvIsa isa : internal::AvailableGemvIsas()) {
      if (isa == internal::GemvIsa::kPortable) continue;
      const double seconds = TimePerCall([&] {
        internal::QuantizedGemvWith(isa, m, x.data_ptr<float>(), y.data());
      });
      const double streamed = static_cast<double>(m.bytes());
      std::printf("| %s (%s) | %.1f | %.1f | %.2f |\n",
                  std::string(WeightFormatName(format)).c_str(),
                  internal::GemvIsaName(isa), streamed / 1e6,
                  streamed / seconds / 1e9, streamed / seconds / bandwidth);
    }
  }
}

// Bytes one decoded token reads: every projection (quantized or dense) and
// the output head.
double BytesPerToken(const LlamaWeights& weights) {
  double bytes = weights.lm_head_quantized.defined()
                     ? static_cast<double>(weights.lm_head_quantized.bytes())
                     : static_cast<double>(weights.lm_head.numel() *
                                           weights.lm_head.element_size());
  for (const LayerWeights& layer : weights.layers) {
    for (Projection p : kAllProjections) {
      bytes +=
          layer.Quantized(p).defined()
              ? static_cast<double>(layer.Quantized(p).bytes())
              : static_cast<double>(layer[p].numel() * layer[p].element_size());
    }
  }
  return bytes;
}

// Seconds for the matrix-vector products one decoded token runs (every
// projection of every layer and the head, in the model's order, through the
// kernels the model uses), without anything else a layer does: the gap to the
// decode time is the per-token work outside the weights (norms, rotary,
// attention over the cache, activation conversions, operator dispatch).
double ProjectionSeconds(const LlamaConfig& config,
                         const LlamaWeights& weights) {
  auto run = [](const QuantizedMatrix& quantized, const at::Tensor& dense,
                const at::Tensor& x) {
    if (quantized.defined()) {
      (void)QuantizedLinear(x, quantized, at::Tensor());
    } else if (internal::Bf16GemvAvailable() &&
               dense.scalar_type() == at::kBFloat16) {
      (void)internal::Bf16Gemv(dense, x);
    } else {
      (void)at::mv(dense, x.to(dense.scalar_type()));
    }
  };
  const at::Tensor hidden = at::randn({config.hidden_size}).to(at::kBFloat16);
  const at::Tensor heads =
      at::randn({config.num_attention_heads * config.head_dim})
          .to(at::kBFloat16);
  const at::Tensor intermediate =
      at::randn({config.intermediate_size}).to(at::kBFloat16);
  auto token = [&] {
    for (const LayerWeights& layer : weights.layers) {
      for (Projection p : kAllProjections) {
        const at::Tensor& x = p == Projection::kO      ? heads
                              : p == Projection::kDown ? intermediate
                                                       : hidden;
        run(layer.Quantized(p), layer[p], x);
      }
    }
    run(weights.lm_head_quantized, weights.lm_head, hidden);
  };
  token();
  double best = 1e30;
  for (int run = 0; run < 5; ++run) {
    const auto start = Clock::now();
    token();
    best = std::min(best, Seconds(start));
  }
  return best;
}

void BenchModel(const char* name, const LlamaConfig& config, double bandwidth) {
  std::printf(
      "\n3. %s: hidden %lld, %lld layers, vocab %lld (random bf16 "
      "weights; the head stays bf16 unless quantized with the embeddings)\n",
      name, static_cast<long long>(config.hidden_size),
      static_cast<long long>(config.num_hidden_layers),
      static_cast<long long>(config.vocab_size));
  std::printf(
      "| format | decode tokens/s | MB/token | GB/s | vs copy bandwidth | vs "
      "bf16 decode | projections only, tokens/s | share outside projections "
      "| prefill tokens/s | vs bf16 prefill |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  const LlamaWeights dense = RandomLlamaWeights(config, 1, at::kBFloat16);
  std::vector<int64_t> prompt(128);
  for (size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = 100 + static_cast<int64_t>(i);
  double bf16_decode = 0, bf16_prefill = 0;
  const std::vector<std::string> wanted =
      absl::StrSplit(absl::GetFlag(FLAGS_formats), ',', absl::SkipEmpty());
  for (WeightFormat format : kFormats) {
    const std::string format_name = format == WeightFormat::kNone
                                        ? "bf16"
                                        : std::string(WeightFormatName(format));
    if (std::find(wanted.begin(), wanted.end(), format_name) == wanted.end())
      continue;
    for (bool head : {false, true}) {
      if (format == WeightFormat::kNone && head) continue;
      LlamaWeights weights = dense;  // shares the dense tensors
      if (!QuantizeBaseProjections(&weights, format, head).ok()) std::exit(1);
      const double bytes = BytesPerToken(weights);
      const double projection_seconds = ProjectionSeconds(config, weights);
      LlamaModel model(config, std::move(weights));
      GenerationOptions generation;
      generation.max_new_tokens = absl::GetFlag(FLAGS_tokens);
      generation.stop_tokens.clear();
      (void)*Generate(model,
                      std::vector<int64_t>(prompt.begin(), prompt.begin() + 8),
                      generation);  // warm-up
      double best_decode = 0, best_prefill = 0;
      for (int run = 0; run < 2; ++run) {
        const GenerationResult result = *Generate(model, prompt, generation);
        best_decode = std::max(best_decode,
                               static_cast<double>(result.tokens.size() - 1) /
                                   result.decode_seconds);
        best_prefill =
            std::max(best_prefill, static_cast<double>(prompt.size()) /
                                       result.prefill_seconds);
      }
      if (format == WeightFormat::kNone) {
        bf16_decode = best_decode;
        bf16_prefill = best_prefill;
      }
      const double achieved = best_decode * bytes;
      const std::string label = format == WeightFormat::kNone
                                    ? "bf16"
                                    : std::string(WeightFormatName(format)) +
                                          (head ? " + embeddings/head" : "");
      std::printf(
          "| %s | %.1f | %.1f | %.1f | %.2f | %.2fx | %.1f | %.0f%% | %.0f | "
          "%.2fx |\n",
          label.c_str(), best_decode, bytes / 1e6, achieved / 1e9,
          achieved / bandwidth, best_decode / bf16_decode,
          1.0 / projection_seconds,
          100.0 * (1.0 - projection_seconds * best_decode), best_prefill,
          best_prefill / bf16_prefill);
      std::fflush(stdout);
    }
  }
}

void BenchTraining(const LlamaConfig& config) {
  const int64_t batch = 2, sequence = 128;
  const int steps = absl::GetFlag(FLAGS_train_steps);
  std::printf(
      "\n4. QLoRA training step, 110M model, LoRA r16 on every projection, "
      "%lld x %lld tokens, bf16 compute, mean of %d steps\n"
      "| base | step s | tokens/s | vs bf16 base |\n|---|---|---|---|\n",
      static_cast<long long>(batch), static_cast<long long>(sequence), steps);
  const LlamaWeights dense = RandomLlamaWeights(config, 1, at::kBFloat16);
  const std::vector<Example> data = bench::RandomExamples(config, 16, sequence);
  double bf16_seconds = 0;
  for (WeightFormat format : kFormats) {
    LlamaWeights weights = dense;
    if (!QuantizeBaseProjections(&weights, format).ok()) std::exit(1);
    const LlamaModel model(config, std::move(weights));
    LoraConfig lora;
    lora.rank = 16;
    lora.alpha = 32;
    LoraAdapter adapter = *LoraAdapter::Create(config, lora, 2);
    TrainingOptions options;
    options.batch_size = batch;
    options.max_steps = steps + 1;
    auto trainer = *Trainer::Create(&model, &adapter, data, options);
    (void)*trainer->Step();  // warm-up
    const auto start = Clock::now();
    for (int i = 0; i < steps; ++i) (void)*trainer->Step();
    const double seconds = Seconds(start) / steps;
    if (format == WeightFormat::kNone) bf16_seconds = seconds;
    std::printf("| %s | %.2f | %.0f | %.2fx |\n",
                format == WeightFormat::kNone
                    ? "bf16"
                    : std::string(WeightFormatName(format)).c_str(),
                seconds, static_cast<double>(batch * sequence) / seconds,
                bf16_seconds / seconds);
    std::fflush(stdout);
  }
}

// Mean KL(full || quantized) of the next-token distributions and the share
// of positions whose most likely token agrees.
void PrintQuality(const char* name, const LlamaModel& full,
                  const LlamaModel& quantized, const at::Tensor& ids,
                  const char* format) {
  ForwardOptions options;
  const at::Tensor p = full.Forward(ids, options).to(at::kFloat);
  const at::Tensor q = quantized.Forward(ids, options).to(at::kFloat);
  const at::Tensor log_p = at::log_softmax(p, -1);
  const at::Tensor log_q = at::log_softmax(q, -1);
  const double kl =
      (log_p.exp() * (log_p - log_q)).sum(-1).mean().item<double>();
  const double top1 =
      at::eq(p.argmax(-1), q.argmax(-1)).to(at::kFloat).mean().item<double>();
  std::printf("| %s | %s | %lld | %.2e | %.3f |\n", name, format,
              static_cast<long long>(ids.numel()), kl, top1);
  std::fflush(stdout);
}

void BenchQuality(const LlamaConfig& bench_config) {
  std::printf(
      "\n5. Quality against full precision (fp32 compute), next-token "
      "distributions\n| model | base | positions | mean KL | top-1 "
      "agreement |\n|---|---|---|---|---|\n");
  const std::string fixture = absl::GetFlag(FLAGS_fixture);
  if (std::filesystem::exists(fixture + "/config.json")) {
    absl::StatusOr<std::unique_ptr<LlamaModel>> full =
        LlamaModel::Load(fixture, LoadOptions());
    if (!full.ok()) {
      std::fprintf(stderr, "%s\n", full.status().ToString().c_str());
      std::exit(1);
    }
    at::Generator generator = at::detail::createCPUGenerator(5);
    const at::Tensor ids = at::randint(3, (*full)->config().vocab_size, {4, 64},
                                       generator, at::kLong);
    for (WeightFormat format : kFormats) {
      if (format == WeightFormat::kNone) continue;
      LoadOptions options;
      options.quantization = format;
      const std::unique_ptr<LlamaModel> quantized =
          *LlamaModel::Load(fixture, options);
      PrintQuality("hf-llama-tiny", **full, *quantized, ids,
                   std::string(WeightFormatName(format)).c_str());
    }
  } else {
    std::printf("| hf-llama-tiny | (no fixture at %s) | | | |\n",
                fixture.c_str());
  }
  const LlamaWeights dense = RandomLlamaWeights(bench_config, 1, at::kFloat);
  const LlamaModel full(bench_config, dense);
  at::Generator generator = at::detail::createCPUGenerator(6);
  const at::Tensor ids =
      at::randint(3, bench_config.vocab_size, {2, 128}, generator, at::kLong);
  for (WeightFormat format : kFormats) {
    if (format == WeightFormat::kNone) continue;
    LlamaWeights weights = dense;
    if (!QuantizeBaseProjections(&weights, format).ok()) std::exit(1);
    const LlamaModel quantized(bench_config, std::move(weights));
    PrintQuality("110M (random)", full, quantized, ids,
                 std::string(WeightFormatName(format)).c_str());
  }
}

int Main() {
  if (!SetCpuThreads(absl::GetFlag(FLAGS_threads)).ok()) return 1;
  const double bandwidth = MeasureCopyBandwidth();
  std::printf("quantized_bench: %d threads\n\n1. Copy bandwidth %.1f GB/s\n",
              absl::GetFlag(FLAGS_threads), bandwidth / 1e9);
  BenchKernels(bandwidth);
  if (absl::GetFlag(FLAGS_kernels_only)) return 0;
  for (absl::string_view model :
       absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipEmpty())) {
    if (model == "110m") {
      BenchModel("110M bench model", BenchConfig110M(), bandwidth);
    } else if (model == "1b") {
      BenchModel("Llama-3.2-1B shape", testing::Llama32OneBConfig(), bandwidth);
    } else {
      std::fprintf(stderr, "--models: unknown model '%s'\n",
                   std::string(model).c_str());
      return 1;
    }
  }
  if (absl::GetFlag(FLAGS_decode_only)) return 0;
  BenchTraining(BenchConfig110M());
  BenchQuality(BenchConfig110M());
  return 0;
}

}  // namespace
}  // namespace openforce::lora

int main(int argc, char** argv) {
  openforce::lora::RelaunchWithTunedOpenBlas(argv);
  absl::ParseCommandLine(argc, argv);
  return openforce::lora::Main();
}
