// The synthetic task the demo and the federated integration tests learn: a
// key-to-value lookup behind a noisy prefix ("<0-3 digits><key>=" -> two
// capital letters), on a tiny Llama checkpoint with the byte tokenizer. The
// mapping is fixed by a seed; held-out prompts use prefixes the training set
// never showed, so a low held-out loss means the mapping was learned.
#ifndef OPENFORCE_TESTS_TESTING_DEMO_TASK_H_
#define OPENFORCE_TESTS_TESTING_DEMO_TASK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lora/dataset.h"
#include "lora/llama_config.h"
#include "lora/lora_adapter.h"
#include "lora/trainer.h"

namespace openforce::testing {

struct DemoTaskFiles {
  std::string model_dir;      // config.json, model.safetensors, tokenizer
  std::string train_path;     // JSONL {"prompt","completion"}
  std::string held_out_path;  // JSONL, same mapping, unseen prefixes
};

// hidden 64, 2 layers, byte vocabulary.
lora::LlamaConfig DemoModelConfig();

// Records of the lookup task for `seed`.
std::vector<lora::TrainingRecord> DemoTaskRecords(int count, uint64_t seed);

// Writes `records` as JSONL {"prompt","completion"} (throws on failure:
// test setup).
void WriteJsonl(const std::string& path,
                const std::vector<lora::TrainingRecord>& records);

// Writes the model and both datasets under `dir`.
DemoTaskFiles WriteDemoTask(const std::string& dir, int train_records = 384,
                            int held_out_records = 96);

// The adapter made from `adapter_seed` (a job's version 0) and the same
// adapter trained with `options` on the task's training set, with the model
// loaded as fp32 on the CPU.
struct DemoTraining {
  lora::LoraAdapter parent;
  lora::LoraAdapter trained;
};
absl::StatusOr<DemoTraining> TrainOnDemoTask(
    const DemoTaskFiles& task, const lora::LoraConfig& config,
    uint64_t adapter_seed, const lora::TrainingOptions& options);

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_DEMO_TASK_H_
