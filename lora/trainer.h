// LoRA fine-tuning: causal-LM loss on tokenised examples (labels masked where
// they are kIgnoreLabel), AdamW on the adapter's parameters only, gradient
// accumulation, gradient clipping, linear warmup then cosine decay,
// deterministic on CPU for a seed. Checkpoints hold the adapter, AdamW's
// moments, the step, the data position and the dropout RNG, so N steps straight
// equal k steps, a restart from the checkpoint, and N - k more, bit for bit on
// CPU.
#ifndef OPENFORCE_LORA_TRAINER_H_
#define OPENFORCE_LORA_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lora/dataset.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"

namespace openforce::lora {

struct TrainingOptions {
  double learning_rate = 2e-4;
  int64_t max_steps = 100;  // optimizer steps; the schedule spans them
  int64_t batch_size = 4;   // sequences per micro-batch
  int64_t gradient_accumulation = 1;
  double max_grad_norm = 1.0;  // 0 disables clipping
  int64_t warmup_steps = 0;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  uint64_t seed = 0;  // data order and dropout
  // Recompute each decoder layer in the backward pass (less memory, one more
  // forward of compute); the result is the same.
  bool gradient_checkpointing = false;
  // FFA-LoRA: train B only; A keeps the values it had (the job's version 0).
  bool freeze_lora_a = false;
};

struct StepMetrics {
  int64_t step = 0;  // steps completed, this one included
  double loss = 0;   // mean over the label tokens of the step's micro-batches
  double learning_rate = 0;
  double grad_norm = 0;  // before clipping
  int64_t tokens = 0;    // label tokens that contributed
  int64_t sequences = 0;
};

// The learning rate after `step` completed steps: linear warmup to the peak
// over warmup_steps, then cosine decay to zero at max_steps.
double ScheduledLearningRate(const TrainingOptions& options, int64_t step);

class Trainer {
 public:
  // `model` and `adapter` must outlive the trainer; the adapter's tensors are
  // trained in place. The model's weights are never changed.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const LlamaModel* model, LoraAdapter* adapter, std::vector<Example> data,
      const TrainingOptions& options);
  ~Trainer();

  // One optimizer step (gradient_accumulation micro-batches).
  [[nodiscard]] absl::StatusOr<StepMetrics> Step();

  // Writes the adapter (PEFT files under dir/adapter), optimizer state and
  // trainer state into `dir` atomically: a crash leaves the previous checkpoint
  // or the new one.
  [[nodiscard]] absl::Status SaveCheckpoint(const std::string& dir) const;
  // Restores what SaveCheckpoint wrote; the trainer must have been created with
  // the same options and data.
  [[nodiscard]] absl::Status RestoreCheckpoint(const std::string& dir);

  int64_t step() const { return step_; }

 private:
  struct State;
  Trainer(const LlamaModel* model, LoraAdapter* adapter,
          std::vector<Example> data, const TrainingOptions& options);
  // The next `batch_size` example indices in the seeded data order.
  std::vector<size_t> NextBatch();
  void ShuffleEpoch();

  const LlamaModel* model_;
  LoraAdapter* adapter_;
  std::vector<Example> data_;
  TrainingOptions options_;
  int64_t step_ = 0;
  int64_t epoch_ = 0;
  size_t cursor_ = 0;  // position in order_
  std::vector<size_t> order_;
  std::unique_ptr<State> state_;  // optimizer and RNG (libtorch types)
};

// Mean causal-LM loss of `adapter` (may be null) on `data`, over label tokens
// only.
[[nodiscard]] absl::StatusOr<double> EvaluateLoss(
    const LlamaModel& model, const LoraAdapter* adapter,
    const std::vector<Example>& data, int64_t batch_size);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_TRAINER_H_
