// LoRA engine benchmark on a ~100M-parameter Llama config (hidden 768, 12
// layers, 12 heads, seq 256, batch 4) on CPU, in fp32 and bf16. Prints, for
// each dtype:
//   training: tokens/s, achieved GFLOP/s from counted model FLOPs, the
//   same-dtype GEMM
//             peak (torch::mm 2048) measured in this run, and their ratio
//             (target >= 0.6);
//   generation at batch 1 with a KV cache: tokens/s, weight bytes read per
//   token, the
//             memory bandwidth of a large copy measured in this run, and the
//             ratio of achieved to that bound (target >= 0.7).
// Not a test: it prints figures. Usage: lora_bench [--steps N] [--tokens N]
// [--threads N]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lora/blas_core.h"
#include "lora/checkpoint.h"
#include "lora/compute_device.h"
#include "lora/generation.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/trainer.h"
#include "tests/bench/bench_common.h"

namespace openforce::lora {
namespace {

using bench::BenchConfig110M;
using bench::Clock;
using bench::MeasureCopyBandwidth;
using bench::Seconds;

struct Args {
  int steps = 3;
  int tokens = 48;
  int threads = 0;
};

void RunDtype(const char* name, at::ScalarType dtype, DType gemm_dtype,
              const Args& args, double bandwidth) {
  const LlamaConfig config = BenchConfig110M();
  LlamaModel model(config, RandomLlamaWeights(config, 1, dtype));
  const int64_t parameters = BaseParameterCount(config.Shape());
  // FLOPs per token count every weight a token multiplies: all but the
  // embedding lookup.
  const int64_t matmul_parameters =
      parameters - config.vocab_size * config.hidden_size;
  const int64_t batch = 4, sequence = 256, tokens_per_step = batch * sequence;

  GemmOptions gemm;
  gemm.dtype = gemm_dtype;
  gemm.min_seconds = 1.0;
  const GemmMeasurement peak = *MeasureGemmPeak(gemm);

  LoraConfig lora;
  lora.rank = 16;
  lora.alpha = 32;
  LoraAdapter adapter = *LoraAdapter::Create(config, lora, 2);
  const std::vector<Example> data = bench::RandomExamples(config, 64, sequence);
  TrainingOptions options;
  options.batch_size = batch;
  options.max_steps = args.steps + 1;
  auto trainer = *Trainer::Create(&model, &adapter, data, options);
  (void)*trainer->Step();  // warm-up: allocator, oneDNN primitive cache
  if (const char* trace = std::getenv("OPENFORCE_BENCH_TRACE")) {
    torch::autograd::profiler::RecordProfile profile(
        std::string(trace) + ".train." + name + ".json");
    (void)*trainer->Step();
  }
  const auto start = Clock::now();
  for (int i = 0; i < args.steps; ++i) (void)*trainer->Step();
  const double step_seconds = Seconds(start) / args.steps;
  const double tokens_per_second = tokens_per_step / step_seconds;
  // LoRA: forward (2 P) plus backward to activations (2 P); no weight
  // gradients.
  const double linear_flops = 4.0 * static_cast<double>(matmul_parameters);
  // Attention scores and weighted values, forward and backward, per token.
  const double attention_flops = 3.0 * 4.0 * sequence * config.hidden_size *
                                 static_cast<double>(config.num_hidden_layers) /
                                 2.0;
  const double achieved =
      tokens_per_second * (linear_flops + attention_flops) / 1e9;

  std::printf(
      "%s training: %.0f tokens/s (%.2f s/step), %.1f GFLOP/s counted "
      "(%.2f GFLOP/token), GEMM peak %.1f GFLOP/s, ratio %.2f\n",
      name, tokens_per_second, step_seconds, achieved,
      (linear_flops + attention_flops) / 1e9, peak.gflops,
      achieved / peak.gflops);

  // Generation, batch 1.
  GenerationOptions generation;
  generation.max_new_tokens = args.tokens;
  std::vector<int64_t> prompt(16);
  for (size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = 100 + static_cast<int64_t>(i);
  (void)*Generate(model, prompt, generation);  // warm-up
  GenerationResult result;
  if (const char* trace = std::getenv("OPENFORCE_BENCH_TRACE")) {
    // Chrome trace of every operator, for finding where decode time goes.
    torch::autograd::profiler::RecordProfile profile(std::string(trace) + "." +
                                                     name + ".json");
    result = *Generate(model, prompt, generation);
  } else {
    result = *Generate(model, prompt, generation);
  }
  const double decode_tokens_per_second =
      static_cast<double>(result.tokens.size() - 1) / result.decode_seconds;
  const double bytes_per_token =
      static_cast<double>(matmul_parameters) * at::elementSize(dtype);
  const double achieved_bandwidth = decode_tokens_per_second * bytes_per_token;
  std::printf(
      "%s generation: %.1f tokens/s, %.1f MB weights/token, %.1f GB/s "
      "achieved, "
      "copy bandwidth %.1f GB/s, ratio %.2f\n",
      name, decode_tokens_per_second, bytes_per_token / 1e6,
      achieved_bandwidth / 1e9, bandwidth / 1e9,
      achieved_bandwidth / bandwidth);
}

}  // namespace
}  // namespace openforce::lora

int main(int argc, char** argv) {
  using namespace openforce::lora;
  RelaunchWithTunedOpenBlas(argv);
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0)
      args.steps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--tokens") == 0)
      args.tokens = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--threads") == 0)
      args.threads = std::atoi(argv[i + 1]);
  }
  if (!SetCpuThreads(args.threads).ok()) return 1;
  const ComputeBackends backends = ProbeComputeBackends();
  std::printf("libtorch %s, %d threads, OpenBLAS core %s, oneDNN %s\n",
              backends.torch_version.c_str(), backends.cpu_threads,
              backends.blas_core.c_str(), backends.onednn ? "yes" : "no");
  const LlamaConfig config = BenchConfig110M();
  std::printf(
      "model: %.1fM parameters (hidden 768, 12 layers, 12 heads, vocab 16000), "
      "LoRA r=16 on q_proj,v_proj, batch 4 x 256 tokens\n",
      static_cast<double>(openforce::BaseParameterCount(config.Shape())) / 1e6);
  const double bandwidth = MeasureCopyBandwidth();
  RunDtype("fp32", at::kFloat, openforce::DType::kFloat32, args, bandwidth);
  RunDtype("bf16", at::kBFloat16, openforce::DType::kBFloat16, args, bandwidth);
  return 0;
}
