// Trains one work unit with the LoRA engine: loads the base model (kept in
// memory across units of the same model), the parent adapter and the shard,
// runs the unit's optimizer steps with checkpoints (so a stop, crash or
// reboot resumes where it was), and writes the delta (trained minus parent)
// that the worker signs and uploads. libtorch stays out of this header.
#ifndef OPENFORCE_WORKER_UNIT_TRAINER_H_
#define OPENFORCE_WORKER_UNIT_TRAINER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/openforce.pb.h"

namespace openforce::lora {
class ChatTemplate;
class LlamaModel;
class Tokenizer;
}  // namespace openforce::lora

namespace openforce::worker {

struct UnitPaths {
  std::string model_dir;           // the base model's files
  std::string parent_adapter_dir;  // PEFT files of the parent version
  std::string shard_path;          // JSONL (training units)
  std::string work_dir;            // checkpoint and delta live here
  // Validation units: PEFT files of the candidate, and the held-out JSONL.
  std::string candidate_adapter_dir;
  std::string validation_path;
};

// A validation unit's result: mean next-token loss (over label tokens) of
// the parent and the candidate adapter on the unit's slice.
struct ValidationLosses {
  double parent_loss = 0;
  double candidate_loss = 0;
  uint64_t records = 0;  // records scored
};

struct UnitProgress {
  int64_t step = 0;   // steps done
  int64_t total = 0;  // steps of the unit
  double loss = 0;    // of the latest step
  double tokens_per_second = 0;
};

struct TrainedDelta {
  std::string path;  // delta safetensors
  uint64_t sample_count = 0;
  std::map<std::string, double> metrics;  // train_loss, final_loss, tokens
};

class UnitTrainer {
 public:
  explicit UnitTrainer(std::string device = "cpu");
  ~UnitTrainer();

  // Returns Cancelled (after checkpointing) when `should_stop` says so
  // between steps; a later call for the same unit resumes from the
  // checkpoint. Gradient checkpointing is on when the unit asks for it, or
  // when the step would not fit `memory_budget_bytes` without it (0: no
  // budget known).
  [[nodiscard]] absl::StatusOr<TrainedDelta> Train(
      const v1::WorkUnit& unit, const UnitPaths& paths,
      const std::function<bool()>& should_stop,
      const std::function<void(const UnitProgress&)>& progress,
      uint64_t memory_budget_bytes = 0);

  // Runs a validation unit (WORK_VALIDATE): forward only, the parent and the
  // candidate on records [validation_begin, validation_end) of the held-out
  // set, in micro-batches of the job's batch size. Deterministic for a given
  // machine and thread count, so replicas can be compared.
  [[nodiscard]] absl::StatusOr<ValidationLosses> Validate(
      const v1::WorkUnit& unit, const UnitPaths& paths);

 private:
  absl::Status LoadModel(const std::string& model_dir,
                         const v1::TrainingConfig& training);
  // LoadModel, then the job's quantized-base hash checked against it.
  absl::Status LoadBase(const std::string& model_dir,
                        const v1::TrainingConfig& training);

  const std::string device_;
  std::string loaded_key_;
  std::unique_ptr<lora::LlamaModel> model_;
  std::unique_ptr<lora::Tokenizer> tokenizer_;
  // The model's chat template, for conversational shards; null without one.
  std::unique_ptr<lora::ChatTemplate> chat_template_;
};

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_UNIT_TRAINER_H_
