// Real-size figures: a checkpoint with Llama-3.2-1B's exact config (random
// BF16 weights, 2 shards, written once into --dir), then, each phase in a
// fresh process so its peak RSS is its own:
//   load      time to map and check the shards, RSS after;
//   train     LoRA (r 16 on q,k,v,o) steps at batch 1 x sequence 512 in bf16:
//             seconds per step, tokens/s, peak RSS next to the memory
//             estimator's prediction; once without and once with gradient
//             checkpointing;
//   generate  prefill and decode tokens/s with the KV cache, peak RSS next to
//             the inference estimate.
// Not a test: it prints figures. Usage:
//   llama1b_bench --dir DIR [--threads N] [--steps N]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/memory_estimate.h"
#include "lora/compute_device.h"
#include "lora/generation.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/trainer.h"
#include "tests/testing/tiny_llama.h"

namespace openforce::lora {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double PeakRssGiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024 / (1ull << 30);
}

double GiB(uint64_t bytes) { return static_cast<double>(bytes) / (1ull << 30); }

constexpr int64_t kSequence = 512;

LoraConfig BenchLora() {
  LoraConfig lora;
  lora.rank = 16;
  lora.alpha = 32;
  lora.targets = {Projection::kQ, Projection::kK, Projection::kV,
                  Projection::kO};
  return lora;
}

LoraShape BenchLoraShape() {
  LoraShape shape;
  shape.rank = 16;
  shape.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  return shape;
}

std::unique_ptr<LlamaModel> Load(const std::string& dir) {
  LoadOptions load;
  load.dtype = at::kBFloat16;
  absl::StatusOr<std::unique_ptr<LlamaModel>> model =
      LlamaModel::Load(dir, load);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(model);
}

int Write(const std::string& dir) {
  if (std::filesystem::exists(dir + "/model.safetensors.index.json")) return 0;
  const Clock::time_point start = Clock::now();
  const LlamaConfig config = testing::Llama32OneBConfig();
  LlamaWeights weights = RandomLlamaWeights(config, 32, at::kBFloat16);
  absl::Status saved = SaveLlamaCheckpoint(dir, config, weights, 2);
  if (!saved.ok()) {
    std::fprintf(stderr, "%s\n", saved.ToString().c_str());
    return 1;
  }
  std::printf("write     %.1f s (random weights, 2 shards)\n", Seconds(start));
  std::fflush(stdout);
  return 0;
}

int LoadPhase(const std::string& dir) {
  const Clock::time_point start = Clock::now();
  std::unique_ptr<LlamaModel> model = Load(dir);
  std::printf("load      %.2f s, peak RSS %.2f GiB (weights %.2f GiB mapped)\n",
              Seconds(start), PeakRssGiB(),
              GiB(BaseParameterCount(model->config().Shape()) * 2));
  return 0;
}

int Train(const std::string& dir, int steps, bool checkpointing) {
  std::unique_ptr<LlamaModel> model = Load(dir);
  absl::StatusOr<LoraAdapter> adapter =
      LoraAdapter::Create(model->config(), BenchLora(), 5);
  std::vector<Example> data;
  for (int i = 0; i < steps; ++i) {
    Example example;
    for (int t = 0; t < kSequence; ++t)
      example.input_ids.push_back((i * 7919 + t * 104729) % 128000);
    example.labels = example.input_ids;
    data.push_back(example);
  }
  TrainingOptions options;
  options.max_steps = steps;
  options.batch_size = 1;
  options.gradient_checkpointing = checkpointing;
  absl::StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(model.get(), &*adapter, data, options);
  if (!trainer.ok()) return 1;
  double first = 0, rest = 0;
  for (int step = 0; step < steps; ++step) {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<StepMetrics> metrics = (*trainer)->Step();
    if (!metrics.ok()) {
      std::fprintf(stderr, "%s\n", metrics.status().ToString().c_str());
      return 1;
    }
    (step == 0 ? first : rest) += Seconds(start);
  }
  const double per_step = steps > 1 ? rest / (steps - 1) : first;
  absl::StatusOr<MemoryEstimate> estimate =
      EstimateTrainingMemory(model->config().Shape(), DType::kBFloat16,
                             BenchLoraShape(), 1, kSequence, checkpointing);
  const double peak = PeakRssGiB();
  std::printf(
      "train     %-26s %.1f s/step (first %.1f), %.0f tokens/s, peak RSS "
      "%.2f GiB, estimate %.2f GiB (%+.0f%%)\n",
      checkpointing ? "gradient checkpointing" : "no checkpointing", per_step,
      first, kSequence / per_step, peak, GiB(estimate->total_bytes()),
      100.0 * (peak / GiB(estimate->total_bytes()) - 1));
  return 0;
}

int GeneratePhase(const std::string& dir) {
  std::unique_ptr<LlamaModel> model = Load(dir);
  std::vector<int64_t> prompt;
  for (int t = 0; t < 64; ++t) prompt.push_back(1000 + t * 37);
  GenerationOptions options;
  options.max_new_tokens = 32;
  absl::StatusOr<GenerationResult> result = Generate(*model, prompt, options);
  if (!result.ok()) return 1;
  absl::StatusOr<MemoryEstimate> estimate =
      EstimateInferenceMemory(model->config().Shape(), DType::kBFloat16, 1, 96);
  std::printf(
      "generate  prefill %zu tokens %.0f tokens/s, decode %.2f tokens/s, peak "
      "RSS %.2f GiB, estimate %.2f GiB\n",
      prompt.size(), prompt.size() / result->prefill_seconds,
      (result->tokens.size() - 1) / result->decode_seconds, PeakRssGiB(),
      GiB(estimate->total_bytes()));
  return 0;
}

int RunPhase(const std::vector<std::string>& args) {
  const std::vector<const char*> argv = [&] {
    std::vector<const char*> out;
    for (const std::string& arg : args) out.push_back(arg.c_str());
    out.push_back(nullptr);
    return out;
  }();
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    execv("/proc/self/exe", const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int Run(int argc, char** argv) {
  std::string dir, phase;
  int threads = 0, steps = 4;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
      dir = argv[++i];
    } else if (std::strcmp(argv[i], "--phase") == 0 && i + 1 < argc) {
      phase = argv[++i];
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    }
  }
  if (dir.empty() || steps < 1) {
    std::fprintf(stderr,
                 "usage: llama1b_bench --dir DIR [--threads N] [--steps N]\n");
    return 2;
  }
  if (!SetCpuThreads(threads).ok()) return 1;
  if (phase.empty()) {
    if (Write(dir) != 0) return 1;
    std::printf("Llama-3.2-1B shape, bf16, %d threads\n",
                at::get_num_threads());
    const std::string t = std::to_string(threads), s = std::to_string(steps);
    for (const char* p : {"load", "train", "train-checkpointed", "generate"}) {
      if (RunPhase({argv[0], "--dir", dir, "--phase", p, "--threads", t,
                    "--steps", s}) != 0) {
        return 1;
      }
    }
    return 0;
  }
  if (phase == "load") return LoadPhase(dir);
  if (phase == "train") return Train(dir, steps, false);
  if (phase == "train-checkpointed") return Train(dir, steps, true);
  if (phase == "generate") return GeneratePhase(dir);
  std::fprintf(stderr, "unknown phase %s\n", phase.c_str());
  return 2;
}

}  // namespace
}  // namespace openforce::lora

int main(int argc, char** argv) { return openforce::lora::Run(argc, argv); }
