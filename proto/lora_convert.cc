// Wire <-> LoRA engine conversions; see lora_convert.h.
#include "proto/lora_convert.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace openforce {

absl::StatusOr<lora::LoraConfig> LoraConfigFromProto(
    const v1::LoraConfig& config) {
  lora::LoraConfig out;
  if (config.rank() <= 0 || config.rank() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.rank must be in 1..1024, got ", config.rank()));
  }
  if (!(config.alpha() > 0) || !std::isfinite(config.alpha())) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.alpha must be > 0, got ", config.alpha()));
  }
  if (!(config.dropout() >= 0 && config.dropout() < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.dropout must be in [0, 1), got ", config.dropout()));
  }
  if (config.target_modules().empty())
    return absl::InvalidArgumentError("lora.target_modules is empty");
  out.rank = config.rank();
  out.alpha = config.alpha();
  out.dropout = config.dropout();
  out.use_rslora = config.use_rslora();
  out.targets.clear();
  for (const std::string& name : config.target_modules()) {
    absl::StatusOr<lora::Projection> projection = lora::ParseProjection(name);
    if (!projection.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora.target_modules: ", projection.status().message()));
    }
    for (lora::Projection seen : out.targets) {
      if (seen == *projection) {
        return absl::InvalidArgumentError(
            absl::StrCat("lora.target_modules names '", name, "' twice"));
      }
    }
    out.targets.push_back(*projection);
  }
  return out;
}

v1::LoraConfig LoraConfigToProto(const lora::LoraConfig& config) {
  v1::LoraConfig out;
  out.set_rank(static_cast<int32_t>(config.rank));
  out.set_alpha(config.alpha);
  out.set_dropout(config.dropout);
  out.set_use_rslora(config.use_rslora);
  for (lora::Projection p : config.targets)
    out.add_target_modules(lora::ProjectionName(p));
  return out;
}

absl::StatusOr<lora::TrainingOptions> TrainingOptionsFromProto(
    const v1::TrainingConfig& config) {
  if (!(config.learning_rate() > 0) || !std::isfinite(config.learning_rate())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training.learning_rate must be > 0, got ", config.learning_rate()));
  }
  if (config.steps_per_shard() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("training.steps_per_shard must be > 0, got ",
                     config.steps_per_shard()));
  }
  if (config.batch_size() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training.batch_size must be > 0, got ", config.batch_size()));
  }
  if (config.sequence_length() <= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("training.sequence_length must be > 1, got ",
                     config.sequence_length()));
  }
  if (config.gradient_accumulation() < 0 || config.warmup_steps() < 0 ||
      config.max_grad_norm() < 0 || config.weight_decay() < 0) {
    return absl::InvalidArgumentError(
        "training.gradient_accumulation, warmup_steps, max_grad_norm and "
        "weight_decay must not be negative");
  }
  if (!v1::BaseFormat_IsValid(config.base_format())) {
    return absl::InvalidArgumentError(
        absl::StrCat("training.base_format ", config.base_format(),
                     " is not a known base format (none, q8, q4, nf4)"));
  }
  if (!config.quantized_base_sha256().empty()) {
    if (config.base_format() == v1::BASE_FORMAT_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          "training.quantized_base_sha256 is set but the base is not "
          "quantized (no base_format)");
    }
    if (!IsSha256Hex(config.quantized_base_sha256())) {
      return absl::InvalidArgumentError(
          "training.quantized_base_sha256 is not a hex SHA-256");
    }
  }
  lora::TrainingOptions options;
  options.learning_rate = config.learning_rate();
  options.max_steps = config.steps_per_shard();
  options.batch_size = config.batch_size();
  options.gradient_accumulation = std::max(1, config.gradient_accumulation());
  options.max_grad_norm = config.max_grad_norm();
  options.warmup_steps = config.warmup_steps();
  options.weight_decay = config.weight_decay();
  options.seed = config.seed();
  options.gradient_checkpointing = config.gradient_checkpointing();
  options.freeze_lora_a = config.freeze_lora_a();
  return options;
}

}  // namespace openforce
