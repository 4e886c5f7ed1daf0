// Conversions between the wire's LoRA and training messages and the LoRA
// engine's options, in one place so that the coordinator (which checks deltas
// against a job's LoRA shape) and the worker (which trains it) read the wire
// the same way.
#ifndef OPENFORCE_PROTO_LORA_CONVERT_H_
#define OPENFORCE_PROTO_LORA_CONVERT_H_

#include "absl/status/statusor.h"
#include "lora/lora_adapter.h"
#include "lora/trainer.h"
#include "proto/openforce.pb.h"

namespace openforce {

// InvalidArgument naming the field for a rank <= 0, an alpha <= 0, a dropout
// outside [0, 1), no or unknown target modules.
[[nodiscard]] absl::StatusOr<lora::LoraConfig> LoraConfigFromProto(
    const v1::LoraConfig& config);
v1::LoraConfig LoraConfigToProto(const lora::LoraConfig& config);

// Training options for one unit. InvalidArgument for a learning rate, step
// count, batch size or sequence length that is not positive.
[[nodiscard]] absl::StatusOr<lora::TrainingOptions> TrainingOptionsFromProto(
    const v1::TrainingConfig& config);

}  // namespace openforce

#endif  // OPENFORCE_PROTO_LORA_CONVERT_H_
