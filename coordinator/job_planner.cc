// Job planning (see job_planner.h): admin blob uploads, a submitted job's
// checks and plan (held-out split, shards, initial adapter, memory estimate,
// round 1), and cancellation.
#include "coordinator/job_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/memory_estimate.h"
#include "common/model_manifest.h"
#include "common/secret_token.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "common/terminal_text.h"
#include "common/tier.h"
#include "common/untrusted_json.h"
#include "coordinator/aggregator.h"
#include "coordinator/credit.h"
#include "coordinator/internal/planning.h"
#include "lora/adapter_delta.h"
#include "lora/aggregation_rule.h"
#include "lora/dataset.h"
#include "lora/hf_tokenizer.h"
#include "lora/llama_config.h"
#include "lora/lora_adapter.h"
#include "proto/call_signing.h"
#include "proto/channel.h"
#include "proto/lora_convert.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {

absl::StatusOr<BlobUpload> JobPlanner::BeginBlobUpload(
    const v1::UploadBlobChunk& first) {
  if (!IsSha256Hex(first.sha256())) {
    return absl::InvalidArgumentError(
        "the first chunk must carry the blob's sha256 (64 lowercase hex)");
  }
  if (first.size_bytes() > core_.options().max_blob_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "blob of ", first.size_bytes(), " bytes is over the limit of ",
        core_.options().max_blob_bytes));
  }
  BlobUpload upload;
  upload.sha256 = first.sha256();
  upload.size = first.size_bytes();
  upload.upload_id = "b" + first.sha256();
  if (core_.blobs().Contains(first.sha256())) {
    upload.complete = true;
    upload.received = upload.size;
    return upload;
  }
  ASSIGN_OR_RETURN(upload.received,
                   core_.blobs().UploadOffset(upload.upload_id));
  return upload;
}

absl::Status JobPlanner::AppendBlobChunk(BlobUpload* upload,
                                         const v1::UploadBlobChunk& chunk) {
  if (upload->complete || chunk.data().empty()) return absl::OkStatus();
  if (chunk.offset() != upload->received) {
    return absl::OutOfRangeError(absl::StrCat(
        "chunk at offset ", chunk.offset(), " does not continue the upload of ",
        upload->sha256, ", which has ", upload->received, " bytes"));
  }
  if (chunk.data().size() > upload->size - upload->received) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "upload goes past its declared size of ", upload->size, " bytes"));
  }
  RETURN_IF_ERROR(core_.blobs().AppendUpload(upload->upload_id, chunk.offset(),
                                             chunk.data()));
  upload->received += chunk.data().size();
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadBlobResponse> JobPlanner::FinishBlobUpload(
    BlobUpload* upload) {
  v1::UploadBlobResponse response;
  response.set_sha256(upload->sha256);
  if (!upload->complete && upload->received == upload->size) {
    RETURN_IF_ERROR(
        core_.blobs().CommitUpload(upload->upload_id, upload->sha256).status());
    upload->complete = true;
  }
  response.set_received_bytes(upload->received);
  response.set_complete(upload->complete);
  return response;
}

absl::StatusOr<v1::SubmitJobResponse> JobPlanner::SubmitJob(
    const v1::SubmitJobRequest& request) {
  v1::JobSpec spec = request.spec();
  // Everything a worker would trip over later is refused now, by name.
  if (spec.name().empty() || spec.name().size() > kMaxDisplayName) {
    return absl::InvalidArgumentError("name must be 1-128 bytes");
  }
  if (spec.rounds() == 0 || spec.rounds() > kMaxRounds) {
    return absl::InvalidArgumentError(
        absl::StrCat("rounds must be in 1..", kMaxRounds));
  }
  if (spec.replication() == 0) spec.set_replication(1);
  if (spec.shards_per_round() == 0 ||
      uint64_t{spec.shards_per_round()} * spec.replication() >
          kMaxUnitsPerRound) {
    return absl::InvalidArgumentError(
        "shards_per_round must be >= 1 and shards x replication at most "
        "100000");
  }
  if (spec.unit_deadline_s() == 0)
    return absl::InvalidArgumentError("unit_deadline_s must be > 0");
  if (MinResults(spec) > spec.shards_per_round() * spec.replication()) {
    return absl::InvalidArgumentError(
        "min_results_per_round is larger than the units of a round");
  }
  if (!(spec.max_delta_norm() > 0) || !std::isfinite(spec.max_delta_norm())) {
    return absl::InvalidArgumentError("max_delta_norm must be > 0");
  }
  if (!(spec.min_delta_norm() >= 0) ||
      !(spec.min_delta_norm() < spec.max_delta_norm())) {
    return absl::InvalidArgumentError(
        "min_delta_norm must be >= 0 and below max_delta_norm");
  }
  if (!(spec.replica_tolerance() >= 0) || !(spec.replica_tolerance() < 1)) {
    return absl::InvalidArgumentError("replica_tolerance must be in [0, 1)");
  }
  if (!(spec.min_norm_fraction() >= 0) || !(spec.min_norm_fraction() < 1)) {
    return absl::InvalidArgumentError("min_norm_fraction must be in [0, 1)");
  }
  if (spec.min_tier() != v1::TIER_UNSPECIFIED &&
      !v1::Tier_IsValid(spec.min_tier())) {
    return absl::InvalidArgumentError("min_tier is unknown");
  }
  // The rule is stored in its canonical form, so `job status` says exactly
  // what runs (the default included); FFA's workers must freeze A.
  ASSIGN_OR_RETURN(const lora::AggregationRule rule,
                   lora::ParseAggregationRule(spec.aggregation()));
  spec.set_aggregation(lora::FormatAggregationRule(rule));
  spec.mutable_training()->set_freeze_lora_a(rule.b_only());
  ASSIGN_OR_RETURN(lora::LoraConfig lora_config,
                   LoraConfigFromProto(spec.lora()));
  ASSIGN_OR_RETURN(lora::TrainingOptions training,
                   TrainingOptionsFromProto(spec.training()));
  (void)training;
  if (spec.training().base_format() != v1::BASE_FORMAT_UNSPECIFIED &&
      spec.training().quantized_base_sha256().empty()) {
    // Without it a worker that quantizes differently would train on another
    // base unnoticed.
    return absl::InvalidArgumentError(
        "a job with a quantized base records the quantized base's SHA-256 "
        "(training.quantized_base_sha256; job submit computes it)");
  }

  std::vector<ManifestFile> manifest;
  std::string config_json;
  std::string tokenizer_json_sha, tokenizer_config_sha;
  bool has_chat_template_file = false;
  bool has_tokenizer = false;
  for (const v1::BlobRef& file : spec.base_model_files()) {
    RETURN_IF_ERROR(CheckPortableFileName(file.name()));
    if (!core_.blobs().Contains(file.sha256())) {
      return absl::FailedPreconditionError(
          absl::StrCat("model file ", file.name(), " (", file.sha256(),
                       ") was not uploaded; UploadBlob it first"));
    }
    ASSIGN_OR_RETURN(uint64_t size, core_.blobs().Size(file.sha256()));
    if (size != file.size_bytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model file ", file.name(), " is ", size,
                       " bytes, spec says ", file.size_bytes()));
    }
    if (file.name() == "config.json") {
      ASSIGN_OR_RETURN(config_json, core_.blobs().Get(file.sha256()));
    }
    if (file.name() == "tokenizer.json") tokenizer_json_sha = file.sha256();
    has_chat_template_file |= file.name() == "chat_template.jinja";
    if (file.name() == "tokenizer_config.json") {
      tokenizer_config_sha = file.sha256();
    }
    has_tokenizer |= file.name() == "tokenizer.json" ||
                     file.name() == "tokenizer.model" ||
                     file.name() == "openforce_tokenizer.json";
    manifest.push_back({file.name(), file.sha256()});
  }
  ASSIGN_OR_RETURN(std::string model_hash, ModelContentHash(manifest));
  if (model_hash != spec.base_model_hash()) {
    return absl::InvalidArgumentError(
        absl::StrCat("base_model_hash ", spec.base_model_hash(),
                     " does not match the files, which hash to ", model_hash));
  }
  if (config_json.empty())
    return absl::InvalidArgumentError("the model files have no config.json");
  if (!has_tokenizer) {
    return absl::InvalidArgumentError(
        "the model files have no tokenizer a worker can read "
        "(tokenizer.json, tokenizer.model or openforce_tokenizer.json)");
  }
  if (!tokenizer_json_sha.empty()) {
    // Workers tokenize with it: a tokenizer they cannot read fails here, once,
    // instead of in every unit.
    ASSIGN_OR_RETURN(std::string tokenizer_json,
                     core_.blobs().Get(tokenizer_json_sha));
    std::string tokenizer_config;
    if (!tokenizer_config_sha.empty()) {
      ASSIGN_OR_RETURN(tokenizer_config,
                       core_.blobs().Get(tokenizer_config_sha));
    }
    RETURN_IF_ERROR(lora::HfTokenizer::Parse(tokenizer_json, tokenizer_config,
                                             "tokenizer.json")
                        .status());
  }
  ASSIGN_OR_RETURN(lora::LlamaConfig model,
                   lora::ParseLlamaConfig(config_json, "config.json"));

  // Split the dataset: record i goes to shard i mod shards_per_round.
  if (!core_.blobs().Contains(spec.dataset().sha256())) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset ", spec.dataset().sha256(), " was not uploaded"));
  }
  ASSIGN_OR_RETURN(std::string dataset,
                   core_.blobs().Get(spec.dataset().sha256()));
  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ParseJsonl(dataset, "dataset"));
  // Conversations are rendered with the model's chat template on the
  // workers: a model without one cannot train on them.
  for (const lora::TrainingRecord& record : records) {
    if (record.conversation.empty()) continue;
    bool has_template = has_chat_template_file;
    if (!has_template && !tokenizer_config_sha.empty()) {
      ASSIGN_OR_RETURN(std::string config,
                       core_.blobs().Get(tokenizer_config_sha));
      absl::StatusOr<nlohmann::json> parsed =
          ParseUntrustedJson(config, "tokenizer_config.json");
      has_template = parsed.ok() && parsed->is_object() &&
                     parsed->contains("chat_template");
    }
    if (!has_template) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the dataset's record at line ", record.line,
          " is a conversation, and the model (", spec.base_model_hash(),
          ") has no chat template: its tokenizer_config.json has no "
          "chat_template and there is no chat_template.jinja"));
    }
    break;
  }
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(dataset, '\n')) {
    if (!absl::StripAsciiWhitespace(line).empty()) lines.emplace_back(line);
  }
  if (!(spec.validation_fraction() >= 0 && spec.validation_fraction() <= 0.5)) {
    return absl::InvalidArgumentError(
        "validation_fraction must be in [0, 0.5]");
  }
  if (!(spec.validation_tolerance() >= 0) ||
      !std::isfinite(spec.validation_tolerance())) {
    return absl::InvalidArgumentError("validation_tolerance must be >= 0");
  }
  spec.clear_validation_set();
  spec.clear_validation_records();
  if (spec.validation_fraction() > 0) {
    // A seeded draw of records held out: never in a shard, so never leased
    // for training.
    std::vector<size_t> order(lines.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(spec.training().seed() ^ 0x7a11da7e5eedull);
    std::shuffle(order.begin(), order.end(), rng);
    const size_t held = std::max<size_t>(
        1, static_cast<size_t>(spec.validation_fraction() *
                               static_cast<double>(lines.size())));
    std::vector<bool> is_held(lines.size(), false);
    for (size_t i = 0; i < held && i < order.size(); ++i)
      is_held[order[i]] = true;
    std::string validation_text;
    std::vector<std::string> training_lines;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (is_held[i]) {
        absl::StrAppend(&validation_text, lines[i], "\n");
      } else {
        training_lines.push_back(std::move(lines[i]));
      }
    }
    lines = std::move(training_lines);
    ASSIGN_OR_RETURN(std::string validation_sha,
                     core_.blobs().Put(validation_text));
    *spec.mutable_validation_set() =
        MakeRef(validation_sha, validation_text.size(), "validation.jsonl");
    spec.set_validation_records(
        static_cast<uint32_t>(std::min(held, order.size())));
  }
  if (lines.size() < spec.shards_per_round()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the dataset has ", lines.size(), " records",
                     spec.validation_fraction() > 0
                         ? " for training after the validation split"
                         : "",
                     ", fewer than ", spec.shards_per_round(), " shards"));
  }
  std::vector<std::string> shard_texts(spec.shards_per_round());
  for (size_t i = 0; i < lines.size(); ++i)
    absl::StrAppend(&shard_texts[i % shard_texts.size()], lines[i], "\n");

  JobRecord job;
  job.job_id = absl::StrCat("job-", RandomHex(6));
  job.spec = spec;
  job.state = v1::JOB_RUNNING;
  job.current_round = 1;
  job.created_ms = core_.Now();
  std::vector<ShardRecord> shards;
  // One filesystem sync for all shards, not three fsyncs each.
  ASSIGN_OR_RETURN(const std::vector<std::string> shard_shas,
                   core_.blobs().PutMany(shard_texts));
  for (size_t i = 0; i < shard_texts.size(); ++i) {
    const std::string& sha = shard_shas[i];
    ShardRecord shard;
    shard.shard_index = static_cast<uint32_t>(i);
    shard.blob = MakeRef(sha, shard_texts[i].size(),
                         absl::StrCat("shard-", i, ".jsonl"));
    shard.records =
        (lines.size() - i + shard_texts.size() - 1) / shard_texts.size();
    shards.push_back(shard);
  }

  // Version 0, the common starting point of round 1.
  lora_config.base_model_name_or_path = spec.name();
  ASSIGN_OR_RETURN(
      lora::LoraAdapter initial,
      lora::LoraAdapter::Create(model, lora_config, spec.training().seed()));
  const std::string temp_dir =
      absl::StrCat(core_.options().data_dir, "/tmp/", job.job_id);
  RETURN_IF_ERROR(initial.Save(temp_dir));
  absl::StatusOr<std::string> initial_sha =
      core_.blobs().PutFile(temp_dir + "/adapter_model.safetensors");
  std::error_code ignored;
  std::filesystem::remove_all(temp_dir, ignored);
  RETURN_IF_ERROR(initial_sha.status());
  ASSIGN_OR_RETURN(uint64_t initial_size, core_.blobs().Size(*initial_sha));
  job.initial_adapter =
      MakeRef(*initial_sha, initial_size, "adapter_model.safetensors");
  const std::string adapter_config = lora::AdapterConfigToJson(lora_config);
  ASSIGN_OR_RETURN(std::string config_sha, core_.blobs().Put(adapter_config));
  job.adapter_config =
      MakeRef(config_sha, adapter_config.size(), "adapter_config.json");

  ModelShape shape = model.Shape();
  LoraShape lora_shape;
  lora_shape.rank = lora_config.rank;
  lora_shape.target_modules.clear();
  for (lora::Projection p : lora_config.targets)
    lora_shape.target_modules.push_back(lora::ProjectionName(p));
  const DType dtype =
      spec.training().compute_dtype() == v1::DTYPE_BFLOAT16  ? DType::kBFloat16
      : spec.training().compute_dtype() == v1::DTYPE_FLOAT16 ? DType::kFloat16
                                                             : DType::kFloat32;
  // Workers turn gradient checkpointing on when they would not fit without
  // it, so the least memory a worker needs is the checkpointed estimate.
  ASSIGN_OR_RETURN(
      MemoryEstimate estimate,
      EstimateTrainingMemory(
          shape, dtype, lora_shape, spec.training().batch_size(),
          spec.training().sequence_length(),
          /*gradient_checkpointing=*/true,
          static_cast<WeightFormat>(spec.training().base_format())));
  job.estimated_memory_bytes = estimate.total_bytes();

  RETURN_IF_ERROR(core_.state().CreateJob(
      job, shards, MakeRound(job, 1, 0, core_.Now()), MakeUnits(job, 1)));
  v1::SubmitJobResponse response;
  response.set_job_id(job.job_id);
  return response;
}

absl::StatusOr<v1::CancelJobResponse> JobPlanner::CancelJob(
    const v1::CancelJobRequest& request) {
  absl::MutexLock lock(&core_.decision_mu());
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   core_.state().GetJob(request.job_id()));
  if (!job.has_value()) return NotFoundJob(request.job_id());
  if (IsTerminal(job->state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job->job_id, " is already ", v1::JobState_Name(job->state)));
  }
  RETURN_IF_ERROR(core_.state().SetJobState(
      job->job_id, v1::JOB_CANCELLED,
      absl::StrCat("cancelled by an operator",
                   request.reason().empty() ? "" : ": ", request.reason())));
  v1::CancelJobResponse response;
  response.set_state(v1::JOB_CANCELLED);
  return response;
}

}  // namespace openforce::coordinator
