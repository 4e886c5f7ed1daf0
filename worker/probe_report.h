// The report `openforce-worker probe` prints: the hardware profile, its tier,
// the libtorch backends and measured GEMM rates, and an advisor table of the
// largest published model class this machine can run for inference and for LoRA
// fine-tuning after keeping the owner's headroom free.
#ifndef OPENFORCE_WORKER_PROBE_REPORT_H_
#define OPENFORCE_WORKER_PROBE_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/byte_size.h"
#include "common/hardware_profile.h"
#include "common/memory_estimate.h"
#include "common/model_catalog.h"
#include "common/tier.h"
#include "lora/compute_device.h"

namespace openforce::worker {

struct AdvisorOptions {
  // RAM kept free for the owner's other programs (a browser and an IDE take
  // several GB).
  uint64_t headroom_bytes = 4 * kGiB;
  // VRAM kept free on a GPU for the desktop and the driver.
  uint64_t gpu_reserve_bytes = 512 * kMiB;
  DType weight_dtype = DType::kBFloat16;
  int64_t inference_batch = 1;
  int64_t inference_sequence = 4096;
  int64_t training_batch = 1;
  int64_t training_sequence = 1024;
  LoraShape lora = {16, {"q_proj", "k_proj", "v_proj", "o_proj"}};
};

struct AdvisorRow {
  const CatalogModel* model = nullptr;
  int64_t parameters = 0;
  uint64_t inference_bytes = 0;
  uint64_t training_bytes = 0;
  // The same step with gradient checkpointing, which workers switch on when
  // only that fits.
  uint64_t training_checkpointed_bytes = 0;
  bool inference_fits = false;
  bool training_fits = false;  // with or without checkpointing
  bool training_needs_checkpointing = false;
  // When the full-precision base does not fit: the least compressed
  // quantized base (q8, q4, nf4 in that order) that does, and its bytes
  // (training: QLoRA with gradient checkpointing); kNone when full precision
  // fits or nothing does.
  WeightFormat quantized_inference_format = WeightFormat::kNone;
  uint64_t quantized_inference_bytes = 0;
  WeightFormat quantized_training_format = WeightFormat::kNone;
  uint64_t quantized_training_bytes = 0;
};

struct Advice {
  std::string device;         // "cpu" or "cuda:0 (NVIDIA ...)"
  uint64_t budget_bytes = 0;  // memory offered to jobs on that device
  std::vector<AdvisorRow> rows;
  std::string largest_inference_class;  // e.g. "3B"; empty when nothing fits
  std::string largest_training_class;
  // The same with a quantized base where that is what fits.
  std::string largest_quantized_inference_class;
  std::string largest_quantized_training_class;
};

struct ProbeReport {
  HardwareProfile profile;
  Tier tier = Tier::kCpu;
  lora::ComputeBackends backends;
  std::vector<lora::GemmMeasurement> gemm;  // empty when not measured
  AdvisorOptions advisor_options;
  Advice advice;
};

// Advice for the most capable device: the best GPU when the machine ranks above
// cpu tier (its VRAM minus the reserve), otherwise RAM minus the headroom.
[[nodiscard]] absl::StatusOr<Advice> AdviseModels(
    const HardwareProfile& profile, const AdvisorOptions& options);

std::string FormatProbeReportText(const ProbeReport& report);
std::string FormatProbeReportJson(const ProbeReport& report);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_PROBE_REPORT_H_
