// Probe report and model advisor; see probe_report.h.
#include "worker/probe_report.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace openforce::worker {
namespace {

const GpuInfo* BestGpu(const HardwareProfile& profile) {
  const GpuInfo* best = nullptr;
  for (const GpuInfo& gpu : profile.gpus) {
    if (best == nullptr || gpu.vram_total_bytes > best->vram_total_bytes)
      best = &gpu;
  }
  return best;
}

std::string Billions(int64_t parameters) {
  return absl::StrFormat("%.2fB", static_cast<double>(parameters) / 1e9);
}

}  // namespace

absl::StatusOr<Advice> AdviseModels(const HardwareProfile& profile,
                                    const AdvisorOptions& options) {
  Advice advice;
  const GpuInfo* gpu = BestGpu(profile);
  uint64_t capacity = 0, reserve = 0;
  if (gpu != nullptr && TierForVram(gpu->vram_total_bytes) != Tier::kCpu) {
    advice.device = absl::StrCat(
        gpu->vendor == GpuVendor::kAmd ? "rocm:" : "cuda:", gpu->index, " (",
        gpu->name, ")");
    capacity = gpu->vram_total_bytes;
    reserve = options.gpu_reserve_bytes;
  } else {
    advice.device = "cpu";
    capacity = profile.memory.total_bytes;
    reserve = options.headroom_bytes;
  }
  advice.budget_bytes = capacity > reserve ? capacity - reserve : 0;

  for (const CatalogModel& model : ModelCatalog()) {
    AdvisorRow row;
    row.model = &model;
    row.parameters = BaseParameterCount(model.shape);
    ASSIGN_OR_RETURN(MemoryEstimate inference,
                     EstimateInferenceMemory(model.shape, options.weight_dtype,
                                             options.inference_batch,
                                             options.inference_sequence));
    ASSIGN_OR_RETURN(MemoryEstimate training,
                     EstimateTrainingMemory(
                         model.shape, options.weight_dtype, options.lora,
                         options.training_batch, options.training_sequence));
    row.inference_bytes = inference.total_bytes();
    ASSIGN_OR_RETURN(MemoryEstimate checkpointed,
                     EstimateTrainingMemory(
                         model.shape, options.weight_dtype, options.lora,
                         options.training_batch, options.training_sequence,
                         /*gradient_checkpointing=*/true));
    row.training_bytes = training.total_bytes();
    row.training_checkpointed_bytes = checkpointed.total_bytes();
    row.inference_fits = row.inference_bytes <= advice.budget_bytes;
    row.training_needs_checkpointing =
        row.training_bytes > advice.budget_bytes &&
        row.training_checkpointed_bytes <= advice.budget_bytes;
    row.training_fits = row.training_bytes <= advice.budget_bytes ||
                        row.training_needs_checkpointing;
    for (WeightFormat format :
         {WeightFormat::kQ8, WeightFormat::kQ4, WeightFormat::kNf4}) {
      if (!row.inference_fits &&
          row.quantized_inference_format == WeightFormat::kNone) {
        ASSIGN_OR_RETURN(
            MemoryEstimate quantized,
            EstimateInferenceMemory(model.shape, options.weight_dtype,
                                    options.inference_batch,
                                    options.inference_sequence, format));
        if (quantized.total_bytes() <= advice.budget_bytes) {
          row.quantized_inference_format = format;
          row.quantized_inference_bytes = quantized.total_bytes();
        }
      }
      if (!row.training_fits &&
          row.quantized_training_format == WeightFormat::kNone) {
        ASSIGN_OR_RETURN(MemoryEstimate quantized,
                         EstimateTrainingMemory(
                             model.shape, options.weight_dtype, options.lora,
                             options.training_batch, options.training_sequence,
                             /*gradient_checkpointing=*/true, format));
        if (quantized.total_bytes() <= advice.budget_bytes) {
          row.quantized_training_format = format;
          row.quantized_training_bytes = quantized.total_bytes();
        }
      }
    }
    if (row.inference_fits) advice.largest_inference_class = model.size_class;
    if (row.training_fits) advice.largest_training_class = model.size_class;
    if (row.inference_fits ||
        row.quantized_inference_format != WeightFormat::kNone)
      advice.largest_quantized_inference_class = model.size_class;
    if (row.training_fits ||
        row.quantized_training_format != WeightFormat::kNone)
      advice.largest_quantized_training_class = model.size_class;
    advice.rows.push_back(row);
  }
  return advice;
}

std::string FormatProbeReportText(const ProbeReport& report) {
  const HardwareProfile& p = report.profile;
  std::string out;
  absl::StrAppend(&out, "openforce hardware probe\n");
  absl::StrAppendFormat(&out, "  CPU        %s\n", p.cpu.model);
  absl::StrAppendFormat(&out, "  cores      %d physical, %d logical\n",
                        p.cpu.physical_cores, p.cpu.logical_cores);
  std::vector<std::string> flags;
  if (p.cpu.fma) flags.push_back("FMA");
  if (p.cpu.avx2) flags.push_back("AVX2");
  if (p.cpu.avx512f) flags.push_back("AVX-512F");
  if (p.cpu.avx512_bf16) flags.push_back("AVX-512-BF16");
  if (p.cpu.amx_tile) flags.push_back("AMX-TILE");
  if (p.cpu.amx_bf16) flags.push_back("AMX-BF16");
  absl::StrAppendFormat(
      &out, "  vector     %s\n",
      flags.empty() ? "none of AVX2/AVX-512/AMX" : absl::StrJoin(flags, " "));
  absl::StrAppendFormat(&out, "  RAM        %s total, %s available\n",
                        FormatBytes(p.memory.total_bytes),
                        FormatBytes(p.memory.available_bytes));
  if (p.gpus.empty()) absl::StrAppend(&out, "  GPUs       none\n");
  for (const GpuInfo& gpu : p.gpus) {
    absl::StrAppendFormat(&out, "  GPU %d      %s %s, %s VRAM (%s free)\n",
                          gpu.index, GpuVendorName(gpu.vendor), gpu.name,
                          FormatBytes(gpu.vram_total_bytes),
                          FormatBytes(gpu.vram_free_bytes));
  }
  absl::StrAppendFormat(
      &out, "  libtorch   %s, %d CPU threads, %d GPU device(s)%s%s%s\n",
      report.backends.torch_version, report.backends.cpu_threads,
      report.backends.gpu_devices,
      report.backends.gpu_is_rocm ? " (ROCm/HIP)" : "",
      report.backends.onednn ? ", oneDNN" : "",
      report.backends.blas_core.empty()
          ? ""
          : absl::StrCat(", OpenBLAS ", report.backends.blas_core));
  for (const lora::GemmMeasurement& gemm : report.gemm) {
    absl::StrAppendFormat(&out, "  GEMM       %s %s %dx%d: %.1f GFLOP/s\n",
                          gemm.device, DTypeName(gemm.dtype), gemm.size,
                          gemm.size, gemm.gflops);
  }
  for (const std::string& note : p.notes)
    absl::StrAppend(&out, "  note       ", note, "\n");
  absl::StrAppendFormat(&out, "  tier       %s\n\n", TierName(report.tier));

  const AdvisorOptions& options = report.advisor_options;
  const Advice& advice = report.advice;
  absl::StrAppendFormat(
      &out,
      "Advisor: %s, %s offered to jobs (%s kept free for other programs)\n"
      "  %s weights; inference at batch %d x %d tokens; LoRA r=%d on %s at "
      "batch %d x %d\n",
      advice.device, FormatBytes(advice.budget_bytes),
      FormatBytes(advice.device == "cpu" ? options.headroom_bytes
                                         : options.gpu_reserve_bytes),
      DTypeName(options.weight_dtype), options.inference_batch,
      options.inference_sequence, options.lora.rank,
      absl::StrJoin(options.lora.target_modules, ","), options.training_batch,
      options.training_sequence);
  absl::StrAppendFormat(&out, "  %-16s %-6s %8s  %-14s %-14s\n", "model",
                        "class", "params", "inference", "LoRA training");
  for (const AdvisorRow& row : advice.rows) {
    absl::StrAppendFormat(
        &out, "  %-16s %-6s %8s  %-14s %-14s\n", row.model->name,
        row.model->size_class, Billions(row.parameters),
        row.quantized_inference_format != WeightFormat::kNone
            ? absl::StrCat(WeightFormatName(row.quantized_inference_format),
                           " ", FormatBytes(row.quantized_inference_bytes))
            : absl::StrCat(row.inference_fits ? "yes " : "no  ",
                           FormatBytes(row.inference_bytes)),
        row.training_needs_checkpointing
            ? absl::StrCat("yes ", FormatBytes(row.training_checkpointed_bytes),
                           " with gradient checkpointing")
        : row.quantized_training_format != WeightFormat::kNone
            ? absl::StrCat(WeightFormatName(row.quantized_training_format), " ",
                           FormatBytes(row.quantized_training_bytes),
                           " (QLoRA, gradient checkpointing)")
            : absl::StrCat(row.training_fits ? "yes " : "no  ",
                           FormatBytes(row.training_bytes)));
  }
  absl::StrAppendFormat(
      &out, "  largest model class: inference %s, LoRA fine-tuning %s\n",
      advice.largest_inference_class.empty() ? "none"
                                             : advice.largest_inference_class,
      advice.largest_training_class.empty() ? "none"
                                            : advice.largest_training_class);
  if (advice.largest_quantized_inference_class !=
          advice.largest_inference_class ||
      advice.largest_quantized_training_class !=
          advice.largest_training_class) {
    absl::StrAppendFormat(
        &out,
        "  with a quantized base (--quantize q8|q4|nf4): inference %s, "
        "LoRA fine-tuning %s\n",
        advice.largest_quantized_inference_class.empty()
            ? "none"
            : advice.largest_quantized_inference_class,
        advice.largest_quantized_training_class.empty()
            ? "none"
            : advice.largest_quantized_training_class);
  }
  return out;
}

std::string FormatProbeReportJson(const ProbeReport& report) {
  const HardwareProfile& p = report.profile;
  nlohmann::json gpus = nlohmann::json::array();
  for (const GpuInfo& gpu : p.gpus) {
    gpus.push_back({{"vendor", std::string(GpuVendorName(gpu.vendor))},
                    {"index", gpu.index},
                    {"name", gpu.name},
                    {"vram_total_bytes", gpu.vram_total_bytes},
                    {"vram_free_bytes", gpu.vram_free_bytes}});
  }
  nlohmann::json gemm = nlohmann::json::array();
  for (const lora::GemmMeasurement& g : report.gemm) {
    gemm.push_back({{"device", g.device},
                    {"dtype", std::string(DTypeName(g.dtype))},
                    {"size", g.size},
                    {"gflops", g.gflops}});
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const AdvisorRow& row : report.advice.rows) {
    rows.push_back(
        {{"model", row.model->name},
         {"class", row.model->size_class},
         {"parameters", row.parameters},
         {"inference_bytes", row.inference_bytes},
         {"inference_fits", row.inference_fits},
         {"training_bytes", row.training_bytes},
         {"training_checkpointed_bytes", row.training_checkpointed_bytes},
         {"training_fits", row.training_fits},
         {"training_needs_checkpointing", row.training_needs_checkpointing},
         {"quantized_inference_format",
          std::string(WeightFormatName(row.quantized_inference_format))},
         {"quantized_inference_bytes", row.quantized_inference_bytes},
         {"quantized_training_format",
          std::string(WeightFormatName(row.quantized_training_format))},
         {"quantized_training_bytes", row.quantized_training_bytes}});
  }
  const AdvisorOptions& options = report.advisor_options;
  nlohmann::json out = {
      {"cpu",
       {{"model", p.cpu.model},
        {"physical_cores", p.cpu.physical_cores},
        {"logical_cores", p.cpu.logical_cores},
        {"fma", p.cpu.fma},
        {"avx2", p.cpu.avx2},
        {"avx512f", p.cpu.avx512f},
        {"avx512_bf16", p.cpu.avx512_bf16},
        {"amx_tile", p.cpu.amx_tile},
        {"amx_bf16", p.cpu.amx_bf16}}},
      {"memory",
       {{"total_bytes", p.memory.total_bytes},
        {"available_bytes", p.memory.available_bytes}}},
      {"gpus", gpus},
      {"notes", p.notes},
      {"tier", std::string(TierName(report.tier))},
      {"libtorch",
       {{"version", report.backends.torch_version},
        {"cpu_threads", report.backends.cpu_threads},
        {"gpu_devices", report.backends.gpu_devices},
        {"gpu_is_rocm", report.backends.gpu_is_rocm},
        {"onednn", report.backends.onednn},
        {"openblas_core", report.backends.blas_core}}},
      {"gemm", gemm},
      {"advisor",
       {{"device", report.advice.device},
        {"headroom_bytes", options.headroom_bytes},
        {"gpu_reserve_bytes", options.gpu_reserve_bytes},
        {"budget_bytes", report.advice.budget_bytes},
        {"weight_dtype", std::string(DTypeName(options.weight_dtype))},
        {"largest_inference_class", report.advice.largest_inference_class},
        {"largest_training_class", report.advice.largest_training_class},
        {"largest_quantized_inference_class",
         report.advice.largest_quantized_inference_class},
        {"largest_quantized_training_class",
         report.advice.largest_quantized_training_class},
        {"models", rows}}},
  };
  return out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace openforce::worker
