// BOINC-style credit: what one accepted unit of a job is worth, in
// FLOP-equivalents counted by the coordinator from the job itself (model
// size, LoRA size, tokens), so that no worker can claim more than it did and
// a fast machine earns the same per unit as a slow one.
#ifndef OPENFORCE_COORDINATOR_CREDIT_H_
#define OPENFORCE_COORDINATOR_CREDIT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/memory_estimate.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

// Tokens a unit trains (steps x batch x accumulation x sequence length)
// times the FLOP per token of LoRA training: 4 x base parameters (forward,
// and the backward pass through the frozen weights for activations only) plus
// 6 x LoRA parameters (forward, activation and weight gradients).
[[nodiscard]] absl::StatusOr<double> UnitCreditFlop(
    const ModelShape& model, const v1::LoraConfig& lora,
    const v1::TrainingConfig& training);

// A validation unit: the parent and the candidate adapter each run forward
// over `records` sequences of the job's length, 2 x base parameters per
// token each (the LoRA terms are negligible next to it).
double ValidationCreditFlop(const ModelShape& model, uint64_t records,
                            const v1::TrainingConfig& training);

// "12.3 TFLOP", "950 GFLOP".
std::string FormatFlop(double flop);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_CREDIT_H_
