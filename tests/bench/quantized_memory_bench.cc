// Peak memory of a 7B-shaped model (Llama-2-7B's shapes, random bf16
// weights) per base format, for inference and for a QLoRA training step,
// next to what the memory estimator (common/memory_estimate.h) predicts: the
// figure the coordinator's memory fit and `probe`'s advice rest on.
//
// The checkpoint (13.5 GB) is written layer by layer into --scratch, so the
// whole model is never in memory at once; each measurement runs in a child
// process (this binary with --child) that reports its own peak resident set
// (VmHWM, which counts the mapped file pages it touched). The first load of a
// format quantizes and writes the quantized cache; the training step's load
// maps it, so the table also shows what the cache saves. Skipped, saying so,
// when the scratch disk lacks the space or a row would not fit in memory.
// Not a test: it prints figures. Usage:
//   quantized_memory_bench [--scratch DIR] [--formats none,q8,q4,nf4]
//                          [--sequence N] [--threads N] [--keep]
#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/memory_estimate.h"
#include "common/status_macros.h"
#include "common/weight_format.h"
#include "lora/blas_core.h"
#include "lora/checkpoint.h"
#include "lora/compute_device.h"
#include "lora/generation.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/quantized_cache.h"
#include "lora/safetensors.h"
#include "lora/trainer.h"
#include "tests/bench/bench_common.h"
#include "tests/testing/subprocess.h"

ABSL_FLAG(std::string, scratch, "/var/tmp/openforce-7b-bench",
          "directory for the 7B-shaped checkpoint (needs ~30 GB free)");
ABSL_FLAG(std::string, formats, "none,q8,q4,nf4", "base formats measured");
ABSL_FLAG(int32_t, sequence, 64, "tokens per training step (batch 1)");
ABSL_FLAG(int32_t, threads, 2, "CPU threads");
ABSL_FLAG(bool, keep, false, "keep the checkpoint and caches afterwards");
ABSL_FLAG(std::string, child, "",
          "internal: MODE:FORMAT (infer or train) measured in this process");

namespace openforce::lora {
namespace {

using bench::Clock;
using bench::Seconds;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Llama-2-7B's shapes.
LlamaConfig Llama7BConfig() {
  LlamaConfig config;
  config.vocab_size = 32000;
  config.hidden_size = 4096;
  config.intermediate_size = 11008;
  config.num_hidden_layers = 32;
  config.num_attention_heads = 32;
  config.num_key_value_heads = 32;
  config.head_dim = 128;
  config.max_position_embeddings = 4096;
  config.tie_word_embeddings = false;
  return config;
}

LoraConfig BenchLora() {
  LoraConfig lora;
  lora.rank = 16;
  lora.alpha = 32;
  lora.targets.assign(std::begin(kAllProjections), std::end(kAllProjections));
  return lora;
}

// config.json, one safetensors file per layer (the embeddings with the
// first, the norm and head with the last) and the index, as transformers
// shards a checkpoint: one layer's tensors in memory at a time.
absl::Status WriteStreamedCheckpoint(const std::string& dir,
                                     const LlamaConfig& config) {
  std::filesystem::create_directories(dir);
  RETURN_IF_ERROR(
      WriteFileAtomically(dir + "/config.json", LlamaConfigToJson(config)));
  const int64_t layers = config.num_hidden_layers;
  std::map<int64_t, std::vector<std::pair<std::string, std::vector<int64_t>>>>
      by_file;
  for (const auto& [name, shape] : ExpectedTensors(config)) {
    int64_t file = layers - 1;
    if (name.rfind("model.layers.", 0) == 0) {
      file = std::stoll(name.substr(13, name.find('.', 13) - 13));
    } else if (name == "model.embed_tokens.weight") {
      file = 0;
    }
    by_file[file].push_back({name, shape});
  }
  nlohmann::json weight_map = nlohmann::json::object();
  at::Generator generator = at::detail::createCPUGenerator(7);
  for (const auto& [file, tensors] : by_file) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", file + 1, layers);
    std::vector<std::pair<std::string, at::Tensor>> values;
    for (const auto& [tensor, shape] : tensors) {
      at::Tensor value =
          shape.size() == 1
              ? at::ones(shape, at::kBFloat16)
              : (at::randn(shape, generator) * 0.02).to(at::kBFloat16);
      values.emplace_back(tensor, std::move(value));
      weight_map[tensor] = name;
    }
    RETURN_IF_ERROR(WriteSafetensors(dir + "/" + name, values));
  }
  const nlohmann::json index = {{"metadata", nlohmann::json::object()},
                                {"weight_map", weight_map}};
  return WriteFileAtomically(dir + "/model.safetensors.index.json",
                             index.dump(1));
}

// VmHWM (peak) or VmRSS (now) of this process.
uint64_t StatusBytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) {
      uint64_t kib = 0;
      (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(
                                 field.size(), line.size() - field.size() - 3)),
                             &kib);
      return kib * 1024;
    }
  }
  return 0;
}

// The measured process: loads the model and runs a few decode steps or one
// training step, then prints its peak resident set, the peak and the
// resident set when loaded, the load and step seconds and the cache's fate.
int RunChild(const std::string& what) {
  const std::vector<std::string> parts = absl::StrSplit(what, ':');
  absl::StatusOr<WeightFormat> format =
      parts.size() == 2 ? ParseWeightFormat(parts[1])
                        : absl::InvalidArgumentError("--child MODE:FORMAT");
  if (!format.ok()) {
    std::fprintf(stderr, "%s\n", format.status().ToString().c_str());
    return 1;
  }
  const bool train = parts[0] == "train";
  const std::string dir = absl::GetFlag(FLAGS_scratch) + "/model";
  LoadOptions options;
  options.dtype = at::kBFloat16;
  options.quantization = *format;
  options.write_quantized_cache = true;
  const auto start = Clock::now();
  absl::StatusOr<LlamaWeights> weights =
      LoadLlamaWeights(dir, Llama7BConfig(), options);
  if (!weights.ok()) {
    std::fprintf(stderr, "%s\n", weights.status().ToString().c_str());
    return 1;
  }
  const double load_seconds = Seconds(start);
  const uint64_t loaded_peak = StatusBytes("VmHWM:");
  const uint64_t loaded_rss = StatusBytes("VmRSS:");
  const std::string cache =
      *format == WeightFormat::kNone ? "-" : weights->quantized_cache;
  const LlamaModel model(Llama7BConfig(), *std::move(weights));
  double work_seconds = 0;
  if (train) {
    LoraAdapter adapter = *LoraAdapter::Create(model.config(), BenchLora(), 1);
    const int64_t sequence = absl::GetFlag(FLAGS_sequence);
    Example example;
    for (int64_t i = 0; i < sequence; ++i)
      example.input_ids.push_back(100 + (i * 37) % 30000);
    example.labels = example.input_ids;
    TrainingOptions training;
    training.batch_size = 1;
    training.max_steps = 1;
    training.gradient_checkpointing = true;
    auto trainer = *Trainer::Create(&model, &adapter, {example}, training);
    const auto step_start = Clock::now();
    (void)*trainer->Step();
    work_seconds = Seconds(step_start);
  } else {
    GenerationOptions generation;
    generation.max_new_tokens = 4;
    generation.stop_tokens.clear();
    const auto decode_start = Clock::now();
    (void)*Generate(model, {1, 450, 4996, 17354, 1701, 29916, 432, 17204},
                    generation);
    work_seconds = Seconds(decode_start);
  }
  std::printf("%llu %llu %llu %.1f %.1f %s\n",
              static_cast<unsigned long long>(StatusBytes("VmHWM:")),
              static_cast<unsigned long long>(loaded_peak),
              static_cast<unsigned long long>(loaded_rss), load_seconds,
              work_seconds, cache.c_str());
  return 0;
}

uint64_t AvailableMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      uint64_t kib = 0;
      (void)absl::SimpleAtoi(
          absl::StripAsciiWhitespace(line.substr(13, line.size() - 16)), &kib);
      return kib * 1024;
    }
  }
  return 0;
}

DType EstimateDType() { return DType::kBFloat16; }

int RunParent(char* self) {
  const LlamaConfig config = Llama7BConfig();
  const std::string scratch = absl::GetFlag(FLAGS_scratch);
  std::filesystem::create_directories(scratch);
  const double needed_gb = 32;
  std::error_code error;
  const std::filesystem::space_info space =
      std::filesystem::space(scratch, error);
  std::printf(
      "quantized_memory_bench: Llama-2-7B shapes (hidden 4096, 32 layers, "
      "vocab 32000), bf16 compute, %d threads\n",
      absl::GetFlag(FLAGS_threads));
  const bool have_model =
      std::filesystem::exists(scratch + "/model/model.safetensors.index.json");
  if (!have_model &&
      (error || static_cast<double>(space.available) / 1e9 < needed_gb)) {
    std::printf(
        "skipped: %s has %.1f GB free; the 7B-shaped checkpoint (13.5 GB) "
        "and its quantized caches need about %.0f GB (choose --scratch)\n",
        scratch.c_str(), error ? 0.0 : space.available / 1e9, needed_gb);
    return 0;
  }
  if (!have_model) {
    const auto start = Clock::now();
    const absl::Status written =
        WriteStreamedCheckpoint(scratch + "/model", config);
    if (!written.ok()) {
      std::fprintf(stderr, "%s\n", written.ToString().c_str());
      return 1;
    }
    std::printf("wrote the checkpoint layer by layer in %.0f s\n",
                Seconds(start));
  }
  std::printf(
      "\n| base | run | load s | quantized cache | loaded: peak / RSS GiB | "
      "step s | peak RSS GiB | estimate GiB | measured / estimate "
      "|\n|---|---|---|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  LoraShape lora_shape;
  lora_shape.rank = BenchLora().rank;
  lora_shape.target_modules.clear();
  for (Projection p : BenchLora().targets)
    lora_shape.target_modules.push_back(ProjectionName(p));
  const int64_t sequence = absl::GetFlag(FLAGS_sequence);
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_formats), ',', absl::SkipEmpty())) {
    absl::StatusOr<WeightFormat> format = ParseWeightFormat(name);
    if (!format.ok()) {
      std::fprintf(stderr, "--formats: %s\n",
                   format.status().ToString().c_str());
      return 1;
    }
    for (const char* mode : {"infer", "train"}) {
      const bool train = std::string(mode) == "train";
      absl::StatusOr<MemoryEstimate> estimate =
          train ? EstimateTrainingMemory(
                      config.Shape(), EstimateDType(), lora_shape, 1, sequence,
                      /*gradient_checkpointing=*/true, *format)
                : EstimateInferenceMemory(config.Shape(), EstimateDType(), 1,
                                          12, *format);
      const double estimate_gib =
          estimate.ok() ? estimate->total_bytes() / kGiB : 0;
      const std::string label = *format == WeightFormat::kNone
                                    ? "bf16"
                                    : std::string(WeightFormatName(*format));
      if (estimate_gib * kGiB > 0.9 * AvailableMemoryBytes()) {
        std::printf(
            "| %s | %s | | skipped: the estimate exceeds 90%% of the "
            "%.1f GiB available | | | %.1f | |\n",
            label.c_str(), mode, AvailableMemoryBytes() / kGiB, estimate_gib);
        continue;
      }
      if (!train && *format != WeightFormat::kNone) {
        // The first load of each format quantizes (and writes the cache the
        // training row then maps).
        std::filesystem::remove(
            QuantizedCachePath(scratch + "/model", *format, false), error);
      }
      const testing::ProcessResult child = testing::RunProcess(
          {self, absl::StrCat("--child=", mode, ":", name),
           absl::StrCat("--scratch=", scratch),
           absl::StrCat("--sequence=", sequence),
           absl::StrCat("--threads=", absl::GetFlag(FLAGS_threads))});
      unsigned long long peak = 0, loaded_peak = 0, loaded_rss = 0;
      double load_seconds = 0, step_seconds = 0;
      char cache[256] = {0};
      if (child.exit_code != 0 ||
          std::sscanf(child.stdout_text.c_str(),
                      "%llu %llu %llu %lf %lf %255[^\n]", &peak, &loaded_peak,
                      &loaded_rss, &load_seconds, &step_seconds, cache) < 5) {
        std::printf("| %s | %s | failed (exit %d): %s | | | | | | |\n",
                    label.c_str(), mode, child.exit_code,
                    child.stderr_text.substr(0, 200).c_str());
        continue;
      }
      std::printf(
          "| %s | %s | %.1f | %s | %.2f / %.2f | %.1f | %.2f | %.2f | %.2f "
          "|\n",
          label.c_str(), mode, load_seconds, cache, loaded_peak / kGiB,
          loaded_rss / kGiB, step_seconds, peak / kGiB, estimate_gib,
          peak / kGiB / estimate_gib);
      std::fflush(stdout);
    }
  }
  if (!absl::GetFlag(FLAGS_keep)) std::filesystem::remove_all(scratch, error);
  return 0;
}

}  // namespace
}  // namespace openforce::lora

int main(int argc, char** argv) {
  openforce::lora::RelaunchWithTunedOpenBlas(argv);
  absl::ParseCommandLine(argc, argv);
  if (!openforce::lora::SetCpuThreads(absl::GetFlag(FLAGS_threads)).ok())
    return 1;
  const std::string child = absl::GetFlag(FLAGS_child);
  if (!child.empty()) return openforce::lora::RunChild(child);
  // The children are this binary: /proc/self/exe works from any directory.
  return openforce::lora::RunParent(const_cast<char*>("/proc/self/exe"));
}
