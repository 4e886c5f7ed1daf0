// Training one unit; see unit_trainer.h.
#include "worker/unit_trainer.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/memory_estimate.h"
#include "common/status_macros.h"
#include "lora/adapter_delta.h"
#include "lora/chat_template.h"
#include "lora/dataset.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/tokenizer.h"
#include "lora/trainer.h"
#include "proto/lora_convert.h"
#include "worker/work_unit_check.h"

namespace openforce::worker {
namespace {

// Steps between checkpoints: often enough that a crash loses little, rarely
// enough that writing AdamW state does not dominate a tiny model's steps.
constexpr int64_t kCheckpointEverySteps = 25;

}  // namespace

UnitTrainer::UnitTrainer(std::string device) : device_(std::move(device)) {}
UnitTrainer::~UnitTrainer() = default;

absl::Status UnitTrainer::LoadModel(const std::string& model_dir,
                                    const v1::TrainingConfig& training) {
  const v1::DType dtype = training.compute_dtype();
  const std::string key =
      absl::StrCat(model_dir, "|", dtype, "|", training.base_format());
  if (key == loaded_key_ && model_ != nullptr) return absl::OkStatus();
  model_.reset();
  lora::LoadOptions options;
  options.device = device_;
  options.dtype = dtype == v1::DTYPE_BFLOAT16  ? at::kBFloat16
                  : dtype == v1::DTYPE_FLOAT16 ? at::kHalf
                                               : at::kFloat;
  options.quantization = static_cast<WeightFormat>(training.base_format());
  // The model directory is this worker's own copy: the next load (a restart,
  // the next job on this base) maps the quantized weights.
  options.write_quantized_cache = true;
  ASSIGN_OR_RETURN(model_, lora::LlamaModel::Load(model_dir, options));
  ASSIGN_OR_RETURN(tokenizer_, lora::LoadTokenizer(model_dir));
  chat_template_.reset();
  absl::StatusOr<lora::ChatTemplate> chat = lora::ChatTemplate::Load(model_dir);
  if (chat.ok()) {
    chat_template_ = std::make_unique<lora::ChatTemplate>(*std::move(chat));
  } else if (!absl::IsNotFound(chat.status())) {
    return chat.status();
  }
  loaded_key_ = key;
  return absl::OkStatus();
}

absl::Status UnitTrainer::LoadBase(const std::string& model_dir,
                                   const v1::TrainingConfig& training) {
  RETURN_IF_ERROR(LoadModel(model_dir, training));
  return CheckQuantizedBase(training, model_->weights().quantized_sha256);
}

absl::StatusOr<TrainedDelta> UnitTrainer::Train(
    const v1::WorkUnit& unit, const UnitPaths& paths,
    const std::function<bool()>& should_stop,
    const std::function<void(const UnitProgress&)>& progress,
    uint64_t memory_budget_bytes) {
  RETURN_IF_ERROR(LoadBase(paths.model_dir, unit.training()));
  ASSIGN_OR_RETURN(lora::TrainingOptions options,
                   TrainingOptionsFromProto(unit.training()));
  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ReadJsonl(paths.shard_path));
  ASSIGN_OR_RETURN(lora::LoraAdapter parent,
                   lora::LoraAdapter::Load(paths.parent_adapter_dir,
                                           model_->config(), device_));
  lora::LoraAdapter adapter = parent.Clone();
  if (!options.gradient_checkpointing && memory_budget_bytes > 0) {
    LoraShape lora_shape;
    lora_shape.rank = adapter.config().rank;
    lora_shape.target_modules.clear();
    for (lora::Projection p : adapter.config().targets)
      lora_shape.target_modules.push_back(lora::ProjectionName(p));
    const v1::DType dtype = unit.training().compute_dtype();
    ASSIGN_OR_RETURN(
        MemoryEstimate full,
        EstimateTrainingMemory(
            model_->config().Shape(),
            dtype == v1::DTYPE_BFLOAT16  ? DType::kBFloat16
            : dtype == v1::DTYPE_FLOAT16 ? DType::kFloat16
                                         : DType::kFloat32,
            lora_shape, unit.training().batch_size(),
            unit.training().sequence_length(),
            /*gradient_checkpointing=*/false,
            static_cast<WeightFormat>(unit.training().base_format())));
    options.gradient_checkpointing = full.total_bytes() > memory_budget_bytes;
  }
  // A fresh trainer from the parent adapter; made again (rarely) when a
  // checkpoint turns out not to fit.
  auto new_trainer = [&]() -> absl::StatusOr<std::unique_ptr<lora::Trainer>> {
    lora::TokenizeOptions tokenize;
    tokenize.sequence_length = unit.training().sequence_length();
    tokenize.chat_template = chat_template_.get();
    ASSIGN_OR_RETURN(std::vector<lora::Example> examples,
                     lora::TokenizeRecords(records, *tokenizer_, tokenize));
    return lora::Trainer::Create(model_.get(), &adapter, std::move(examples),
                                 options);
  };
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Trainer> trainer, new_trainer());

  RETURN_IF_ERROR(MakeDirectories(paths.work_dir));
  const std::string checkpoint = paths.work_dir + "/checkpoint";
  // Metrics so far travel with the checkpoint so a resumed unit reports the
  // loss of all its steps.
  const std::string loss_log = paths.work_dir + "/losses.txt";
  std::error_code error;
  std::vector<double> losses;
  std::vector<int64_t> step_tokens;
  if (std::filesystem::exists(checkpoint, error)) {
    absl::Status restored = trainer->RestoreCheckpoint(checkpoint);
    if (restored.ok()) {
      absl::StatusOr<std::string> log = ReadFileToString(loss_log);
      std::istringstream in(log.ok() ? *log : std::string());
      double loss;
      int64_t count;
      while (static_cast<int64_t>(losses.size()) < trainer->step() &&
             in >> loss >> count) {
        losses.push_back(loss);
        step_tokens.push_back(count);
      }
    } else {
      // A checkpoint from another version of the unit's data or options is
      // useless; start over rather than fail the unit.
      std::filesystem::remove_all(checkpoint, error);
      adapter = parent.Clone();
      ASSIGN_OR_RETURN(trainer, new_trainer());
    }
  }
  std::string log_text;
  int64_t tokens = 0;
  for (size_t i = 0; i < losses.size(); ++i) {
    absl::StrAppend(&log_text, losses[i], " ", step_tokens[i], "\n");
    tokens += step_tokens[i];
  }

  auto save = [&]() -> absl::Status {
    RETURN_IF_ERROR(trainer->SaveCheckpoint(checkpoint));
    return WriteFileAtomically(loss_log, log_text);
  };
  const auto started = std::chrono::steady_clock::now();
  int64_t tokens_this_run = 0;
  while (trainer->step() < options.max_steps) {
    if (should_stop()) {
      RETURN_IF_ERROR(save());
      return absl::CancelledError(
          absl::StrCat("stopped at step ", trainer->step(), " of ",
                       options.max_steps, "; checkpoint saved"));
    }
    ASSIGN_OR_RETURN(lora::StepMetrics metrics, trainer->Step());
    losses.push_back(metrics.loss);
    tokens += metrics.tokens;
    tokens_this_run += metrics.tokens;
    absl::StrAppend(&log_text, metrics.loss, " ", metrics.tokens, "\n");
    if (metrics.step % kCheckpointEverySteps == 0 &&
        metrics.step < options.max_steps) {
      RETURN_IF_ERROR(save());
    }
    const double seconds = std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - started)
                               .count();
    UnitProgress step;
    step.step = metrics.step;
    step.total = options.max_steps;
    step.loss = metrics.loss;
    step.tokens_per_second =
        seconds > 0 ? static_cast<double>(tokens_this_run) / seconds : 0;
    progress(step);
  }

  TrainedDelta delta;
  delta.path = paths.work_dir + "/delta.safetensors";
  RETURN_IF_ERROR(lora::WriteAdapterDelta(adapter, parent, delta.path,
                                          options.freeze_lora_a
                                              ? lora::DeltaLayout::kBOnly
                                              : lora::DeltaLayout::kFull));
  double sum = 0;
  for (double loss : losses) sum += loss;
  delta.metrics["train_loss"] =
      losses.empty() ? 0 : sum / static_cast<double>(losses.size());
  delta.metrics["final_loss"] = losses.empty() ? 0 : losses.back();
  delta.metrics["tokens"] = static_cast<double>(tokens);
  delta.sample_count = static_cast<uint64_t>(
      options.max_steps * options.batch_size * options.gradient_accumulation);
  return delta;
}

absl::StatusOr<ValidationLosses> UnitTrainer::Validate(const v1::WorkUnit& unit,
                                                       const UnitPaths& paths) {
  RETURN_IF_ERROR(LoadBase(paths.model_dir, unit.training()));
  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ReadJsonl(paths.validation_path));
  const uint64_t begin = unit.validation_begin();
  const uint64_t end = unit.validation_end();
  if (begin >= end || end > records.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "validation slice [", begin, ", ", end,
        ") is not within the held-out set's ", records.size(), " records"));
  }
  std::vector<lora::TrainingRecord> slice(
      records.begin() + static_cast<std::ptrdiff_t>(begin),
      records.begin() + static_cast<std::ptrdiff_t>(end));
  lora::TokenizeOptions tokenize;
  tokenize.sequence_length = unit.training().sequence_length();
  tokenize.chat_template = chat_template_.get();
  ASSIGN_OR_RETURN(std::vector<lora::Example> examples,
                   lora::TokenizeRecords(slice, *tokenizer_, tokenize));
  const int64_t batch = std::max(1, unit.training().batch_size());
  ValidationLosses losses;
  losses.records = end - begin;
  {
    ASSIGN_OR_RETURN(lora::LoraAdapter parent,
                     lora::LoraAdapter::Load(paths.parent_adapter_dir,
                                             model_->config(), device_));
    ASSIGN_OR_RETURN(losses.parent_loss,
                     lora::EvaluateLoss(*model_, &parent, examples, batch));
  }
  ASSIGN_OR_RETURN(lora::LoraAdapter candidate,
                   lora::LoraAdapter::Load(paths.candidate_adapter_dir,
                                           model_->config(), device_));
  ASSIGN_OR_RETURN(losses.candidate_loss,
                   lora::EvaluateLoss(*model_, &candidate, examples, batch));
  return losses;
}

}  // namespace openforce::worker
