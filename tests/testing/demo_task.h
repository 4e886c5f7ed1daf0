// The synthetic task the demo and the federated integration tests learn: a
// key-to-value lookup behind a noisy prefix ("<0-3 digits><key>=" -> two
// capital letters), on a tiny Llama checkpoint with the byte tokenizer. The
// mapping is fixed by a seed; held-out prompts use prefixes the training set
// never showed, so a low held-out loss means the mapping was learned.
#ifndef OPENFORCE_TESTS_TESTING_DEMO_TASK_H_
#define OPENFORCE_TESTS_TESTING_DEMO_TASK_H_

#include <string>
#include <vector>

#include "lora/dataset.h"
#include "lora/llama_config.h"

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

// Writes the model and both datasets under `dir`.
DemoTaskFiles WriteDemoTask(const std::string& dir, int train_records = 384,
                            int held_out_records = 96);

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_DEMO_TASK_H_
