// Scoring a round's candidate aggregate on the job's validation split (see
// coordinator.h): the base model's files are linked from the blob store into
// a scratch directory, the parent and the candidate adapter are evaluated
// forward-only on the held-out records, and the scratch goes away. Runs
// outside mu_, like aggregation.
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "lora/chat_template.h"
#include "lora/dataset.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/tokenizer.h"
#include "lora/trainer.h"

namespace openforce::coordinator {
namespace {

// Removes a scratch directory however the scoring ends.
struct ScratchDirectory {
  std::string path;
  ~ScratchDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

absl::Status Link(const std::string& target, const std::string& link) {
  std::error_code error;
  std::filesystem::create_symlink(target, link, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("linking ", link, " to ", target, ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Coordinator::ValidationScore> Coordinator::ScoreOnValidationSet(
    const JobRecord& job, uint64_t round, const std::string& parent_path,
    const std::string& candidate_path) {
  ScratchDirectory scratch{absl::StrCat(options_.data_dir, "/tmp/validate-",
                                        job.job_id, "-r", round)};
  std::error_code ignored;
  std::filesystem::remove_all(scratch.path, ignored);
  const std::string model_dir = scratch.path + "/model";
  RETURN_IF_ERROR(MakeDirectories(model_dir));
  for (const v1::BlobRef& file : job.spec.base_model_files()) {
    ASSIGN_OR_RETURN(std::string object, blobs_->ObjectPath(file.sha256()));
    // Names were checked as portable file names at submit.
    RETURN_IF_ERROR(Link(object, model_dir + "/" + file.name()));
  }
  ASSIGN_OR_RETURN(std::string config_path,
                   blobs_->ObjectPath(job.adapter_config.sha256()));
  std::unique_ptr<lora::LlamaModel> model;
  {
    lora::LoadOptions load;
    if (job.spec.training().compute_dtype() == v1::DTYPE_BFLOAT16)
      load.dtype = at::kBFloat16;
    ASSIGN_OR_RETURN(model, lora::LlamaModel::Load(model_dir, load));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Tokenizer> tokenizer,
                   lora::LoadTokenizer(model_dir));
  std::unique_ptr<lora::ChatTemplate> chat;
  absl::StatusOr<lora::ChatTemplate> loaded =
      lora::ChatTemplate::Load(model_dir);
  if (loaded.ok()) {
    chat = std::make_unique<lora::ChatTemplate>(*std::move(loaded));
  } else if (!absl::IsNotFound(loaded.status())) {
    return loaded.status();
  }
  ASSIGN_OR_RETURN(std::string records_text,
                   blobs_->Get(job.spec.validation_set().sha256()));
  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ParseJsonl(records_text, "validation split"));
  lora::TokenizeOptions tokenize;
  tokenize.sequence_length = job.spec.training().sequence_length();
  tokenize.chat_template = chat.get();
  ASSIGN_OR_RETURN(std::vector<lora::Example> examples,
                   lora::TokenizeRecords(records, *tokenizer, tokenize));

  auto score = [&](const std::string& adapter_path,
                   const std::string& name) -> absl::StatusOr<double> {
    const std::string dir = scratch.path + "/" + name;
    RETURN_IF_ERROR(MakeDirectories(dir));
    RETURN_IF_ERROR(Link(adapter_path, dir + "/adapter_model.safetensors"));
    RETURN_IF_ERROR(Link(config_path, dir + "/adapter_config.json"));
    ASSIGN_OR_RETURN(lora::LoraAdapter adapter,
                     lora::LoraAdapter::Load(dir, model->config()));
    return lora::EvaluateLoss(
        *model, &adapter, examples,
        std::max<int64_t>(1, job.spec.training().batch_size()));
  };
  ValidationScore result;
  ASSIGN_OR_RETURN(result.parent_loss, score(parent_path, "parent"));
  ASSIGN_OR_RETURN(result.candidate_loss, score(candidate_path, "candidate"));
  return result;
}

}  // namespace openforce::coordinator
