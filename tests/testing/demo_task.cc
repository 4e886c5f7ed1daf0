// The demo's synthetic task; see demo_task.h.
#include "tests/testing/demo_task.h"

#include <map>
#include <memory>
#include <random>
#include <stdexcept>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "lora/llama_model.h"
#include "lora/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/testing/tiny_llama.h"

namespace openforce::testing {
namespace {

constexpr int kKeys = 12;
constexpr uint64_t kMappingSeed = 5;

std::map<char, std::string> Mapping() {
  std::map<char, std::string> values;
  std::mt19937_64 rng(kMappingSeed);
  for (int k = 0; k < kKeys; ++k) {
    values['a' + k] = {static_cast<char>('A' + rng() % 26),
                       static_cast<char>('A' + rng() % 26)};
  }
  return values;
}

}  // namespace

void WriteJsonl(const std::string& path,
                const std::vector<lora::TrainingRecord>& records) {
  std::string text;
  for (const lora::TrainingRecord& record : records) {
    text += nlohmann::json{{"prompt", record.prompt},
                           {"completion", record.completion}}
                .dump() +
            "\n";
  }
  absl::Status written = WriteFileAtomically(path, text);
  if (!written.ok()) throw std::runtime_error(std::string(written.message()));
}

lora::LlamaConfig DemoModelConfig() {
  lora::LlamaConfig config = TinyLlamaConfig();
  config.hidden_size = 64;
  config.intermediate_size = 128;
  config.head_dim = 16;
  return config;
}

std::vector<lora::TrainingRecord> DemoTaskRecords(int count, uint64_t seed) {
  const std::map<char, std::string> values = Mapping();
  std::mt19937_64 rng(seed);
  std::vector<lora::TrainingRecord> records;
  for (int i = 0; i < count; ++i) {
    std::string prompt;
    for (int n = static_cast<int>(rng() % 4); n > 0; --n)
      prompt += static_cast<char>('0' + rng() % 10);
    const char key = static_cast<char>('a' + rng() % values.size());
    prompt += key;
    prompt += '=';
    records.push_back({prompt, values.at(key)});
  }
  return records;
}

DemoTaskFiles WriteDemoTask(const std::string& dir, int train_records,
                            int held_out_records) {
  DemoTaskFiles files;
  files.model_dir = dir + "/model";
  files.train_path = dir + "/train.jsonl";
  files.held_out_path = dir + "/held_out.jsonl";
  absl::Status made = MakeDirectories(files.model_dir);
  if (!made.ok()) throw std::runtime_error(std::string(made.message()));
  WriteTinyLlama(files.model_dir, DemoModelConfig(), 31, 0.1);
  WriteJsonl(files.train_path, DemoTaskRecords(train_records, 1));
  WriteJsonl(files.held_out_path, DemoTaskRecords(held_out_records, 2));
  return files;
}

absl::StatusOr<DemoTraining> TrainOnDemoTask(
    const DemoTaskFiles& task, const lora::LoraConfig& config,
    uint64_t adapter_seed, const lora::TrainingOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<lora::LlamaModel> model,
                   lora::LlamaModel::Load(task.model_dir, lora::LoadOptions()));
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Tokenizer> tokenizer,
                   lora::LoadTokenizer(task.model_dir));
  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ReadJsonl(task.train_path));
  lora::TokenizeOptions tokenize;
  tokenize.sequence_length = 12;
  ASSIGN_OR_RETURN(std::vector<lora::Example> examples,
                   lora::TokenizeRecords(records, *tokenizer, tokenize));
  ASSIGN_OR_RETURN(
      lora::LoraAdapter parent,
      lora::LoraAdapter::Create(model->config(), config, adapter_seed));
  lora::LoraAdapter trained = parent.Clone();
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Trainer> trainer,
                   lora::Trainer::Create(model.get(), &trained,
                                         std::move(examples), options));
  while (trainer->step() < options.max_steps) {
    RETURN_IF_ERROR(trainer->Step().status());
  }
  return DemoTraining{std::move(parent), std::move(trained)};
}

}  // namespace openforce::testing
