// The coordinator's admin calls (see coordinator.h): blob uploads, job
// submission and its validation, job and worker reports, cancellation, and
// the blob store's status.
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
#include "coordinator/coordinator.h"
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

// ---------------------------------------------------------------------------
// Admin calls

absl::StatusOr<BlobUpload> Coordinator::BeginBlobUpload(
    const v1::UploadBlobChunk& first) {
  if (!IsSha256Hex(first.sha256())) {
    return absl::InvalidArgumentError(
        "the first chunk must carry the blob's sha256 (64 lowercase hex)");
  }
  if (first.size_bytes() > options_.max_blob_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("blob of ", first.size_bytes(),
                     " bytes is over the limit of ", options_.max_blob_bytes));
  }
  BlobUpload upload;
  upload.sha256 = first.sha256();
  upload.size = first.size_bytes();
  upload.upload_id = "b" + first.sha256();
  if (blobs_->Contains(first.sha256())) {
    upload.complete = true;
    upload.received = upload.size;
    return upload;
  }
  ASSIGN_OR_RETURN(upload.received, blobs_->UploadOffset(upload.upload_id));
  return upload;
}

absl::Status Coordinator::AppendBlobChunk(BlobUpload* upload,
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
  RETURN_IF_ERROR(
      blobs_->AppendUpload(upload->upload_id, chunk.offset(), chunk.data()));
  upload->received += chunk.data().size();
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadBlobResponse> Coordinator::FinishBlobUpload(
    BlobUpload* upload) {
  v1::UploadBlobResponse response;
  response.set_sha256(upload->sha256);
  if (!upload->complete && upload->received == upload->size) {
    RETURN_IF_ERROR(
        blobs_->CommitUpload(upload->upload_id, upload->sha256).status());
    upload->complete = true;
  }
  response.set_received_bytes(upload->received);
  response.set_complete(upload->complete);
  return response;
}

absl::StatusOr<v1::SubmitJobResponse> Coordinator::SubmitJob(
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
    if (!blobs_->Contains(file.sha256())) {
      return absl::FailedPreconditionError(
          absl::StrCat("model file ", file.name(), " (", file.sha256(),
                       ") was not uploaded; UploadBlob it first"));
    }
    ASSIGN_OR_RETURN(uint64_t size, blobs_->Size(file.sha256()));
    if (size != file.size_bytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model file ", file.name(), " is ", size,
                       " bytes, spec says ", file.size_bytes()));
    }
    if (file.name() == "config.json") {
      ASSIGN_OR_RETURN(config_json, blobs_->Get(file.sha256()));
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
                     blobs_->Get(tokenizer_json_sha));
    std::string tokenizer_config;
    if (!tokenizer_config_sha.empty()) {
      ASSIGN_OR_RETURN(tokenizer_config, blobs_->Get(tokenizer_config_sha));
    }
    RETURN_IF_ERROR(lora::HfTokenizer::Parse(tokenizer_json, tokenizer_config,
                                             "tokenizer.json")
                        .status());
  }
  ASSIGN_OR_RETURN(lora::LlamaConfig model,
                   lora::ParseLlamaConfig(config_json, "config.json"));

  // Split the dataset: record i goes to shard i mod shards_per_round.
  if (!blobs_->Contains(spec.dataset().sha256())) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset ", spec.dataset().sha256(), " was not uploaded"));
  }
  ASSIGN_OR_RETURN(std::string dataset, blobs_->Get(spec.dataset().sha256()));
  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ParseJsonl(dataset, "dataset"));
  // Conversations are rendered with the model's chat template on the
  // workers: a model without one cannot train on them.
  for (const lora::TrainingRecord& record : records) {
    if (record.conversation.empty()) continue;
    bool has_template = has_chat_template_file;
    if (!has_template && !tokenizer_config_sha.empty()) {
      ASSIGN_OR_RETURN(std::string config, blobs_->Get(tokenizer_config_sha));
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
    ASSIGN_OR_RETURN(std::string validation_sha, blobs_->Put(validation_text));
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
  job.created_ms = Now();
  std::vector<ShardRecord> shards;
  // One filesystem sync for all shards, not three fsyncs each.
  ASSIGN_OR_RETURN(const std::vector<std::string> shard_shas,
                   blobs_->PutMany(shard_texts));
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
      absl::StrCat(options_.data_dir, "/tmp/", job.job_id);
  RETURN_IF_ERROR(initial.Save(temp_dir));
  absl::StatusOr<std::string> initial_sha =
      blobs_->PutFile(temp_dir + "/adapter_model.safetensors");
  std::error_code ignored;
  std::filesystem::remove_all(temp_dir, ignored);
  RETURN_IF_ERROR(initial_sha.status());
  ASSIGN_OR_RETURN(uint64_t initial_size, blobs_->Size(*initial_sha));
  job.initial_adapter =
      MakeRef(*initial_sha, initial_size, "adapter_model.safetensors");
  const std::string adapter_config = lora::AdapterConfigToJson(lora_config);
  ASSIGN_OR_RETURN(std::string config_sha, blobs_->Put(adapter_config));
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

  RETURN_IF_ERROR(state_->CreateJob(job, shards, MakeRound(job, 1, 0, Now()),
                                    MakeUnits(job, 1)));
  v1::SubmitJobResponse response;
  response.set_job_id(job.job_id);
  return response;
}

absl::StatusOr<v1::JobStatus> Coordinator::DescribeJob(const JobRecord& job) {
  v1::JobStatus status;
  status.set_job_id(job.job_id);
  *status.mutable_spec() = job.spec;
  status.set_state(job.state);
  status.set_current_round(job.current_round);
  status.set_latest_adapter_version(job.latest_version);
  status.set_created_at_ms(job.created_ms);
  status.set_message(job.message);
  ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds,
                   state_->ListRounds(job.job_id));
  ASSIGN_OR_RETURN(std::vector<ShardRecord> shards,
                   state_->ListShards(job.job_id));
  for (const RoundRecord& round : rounds) {
    v1::RoundStatus* out = status.add_rounds();
    out->set_round(round.round);
    out->set_adapter_version(round.adapter_version);
    out->set_opened_at_ms(round.opened_ms);
    out->set_deadline_ms(round.deadline_ms);
    if (round.adapter_version != 0) {
      ASSIGN_OR_RETURN(std::optional<AdapterRecord> adapter,
                       state_->GetAdapter(job.job_id, round.adapter_version));
      if (adapter.has_value()) {
        const auto& metrics = adapter->adapter.metrics();
        auto error = metrics.find("truncation_error");
        if (error != metrics.end()) out->set_truncation_error(error->second);
        auto loss = metrics.find("validation_loss");
        if (loss != metrics.end()) out->set_validation_loss(loss->second);
        auto parent = metrics.find("parent_validation_loss");
        if (parent != metrics.end())
          out->set_parent_validation_loss(parent->second);
        auto retries = metrics.find("validation_retries");
        if (retries != metrics.end()) {
          out->set_validation_retries(static_cast<uint32_t>(retries->second));
        }
      }
    }
    ASSIGN_OR_RETURN(std::vector<UnitRecord> units,
                     state_->ListUnits(job.job_id, round.round));
    for (const UnitRecord& unit : units) {
      if (unit.kind == v1::WORK_VALIDATE) {
        if (unit.attempt != round.candidate_attempt) continue;
        if (unit.state == v1::UNIT_PENDING || unit.state == v1::UNIT_LEASED) {
          out->set_validation_units_open(out->validation_units_open() + 1);
        } else if (unit.state == v1::UNIT_ACCEPTED ||
                   unit.state == v1::UNIT_REJECTED) {
          out->set_validation_units_reported(out->validation_units_reported() +
                                             1);
        }
        continue;
      }
      if (unit.state == v1::UNIT_PENDING)
        out->set_units_pending(out->units_pending() + 1);
      if (unit.state == v1::UNIT_LEASED)
        out->set_units_leased(out->units_leased() + 1);
      if (unit.state == v1::UNIT_ACCEPTED)
        out->set_units_accepted(out->units_accepted() + 1);
      if (unit.state == v1::UNIT_SKIPPED)
        out->set_units_skipped(out->units_skipped() + 1);
    }
    ASSIGN_OR_RETURN(std::vector<ResultRecord> results,
                     state_->ListResults(job.job_id, round.round));
    double loss_sum = 0, weight_sum = 0;
    for (const ResultRecord& result : results) {
      if (!result.accepted) {
        out->set_units_rejected(out->units_rejected() + 1);
        continue;
      }
      auto loss = result.header.metrics().find("train_loss");
      if (loss == result.header.metrics().end()) continue;
      // Weighted as aggregation weighs it: by the shard's records.
      const double weight =
          result.shard_index < shards.size()
              ? static_cast<double>(shards[result.shard_index].records)
              : 1.0;
      loss_sum += loss->second * weight;
      weight_sum += weight;
    }
    out->set_mean_train_loss(weight_sum > 0 ? loss_sum / weight_sum : 0);
  }
  return status;
}

absl::StatusOr<v1::JobStatus> Coordinator::GetJob(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job, state_->GetJob(job_id));
  if (!job.has_value()) return NotFoundJob(job_id);
  return DescribeJob(*job);
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(
    const v1::ListJobsRequest& request) {
  size_t start = 0;
  if (!request.page_token().empty() &&
      !absl::SimpleAtoi(request.page_token(), &start)) {
    return absl::InvalidArgumentError("page_token is not one this server gave");
  }
  const size_t page_size = request.page_size() == 0
                               ? kDefaultPageSize
                               : std::min<size_t>(request.page_size(), 1000);
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, state_->ListJobs());
  v1::ListJobsResponse response;
  for (size_t i = start; i < jobs.size() && i < start + page_size; ++i) {
    ASSIGN_OR_RETURN(*response.add_jobs(), DescribeJob(jobs[i]));
  }
  if (start + page_size < jobs.size())
    response.set_next_page_token(absl::StrCat(start + page_size));
  return response;
}

absl::StatusOr<v1::CancelJobResponse> Coordinator::CancelJob(
    const v1::CancelJobRequest& request) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   state_->GetJob(request.job_id()));
  if (!job.has_value()) return NotFoundJob(request.job_id());
  if (IsTerminal(job->state)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job->job_id, " is already ", v1::JobState_Name(job->state)));
  }
  RETURN_IF_ERROR(state_->SetJobState(
      job->job_id, v1::JOB_CANCELLED,
      absl::StrCat("cancelled by an operator",
                   request.reason().empty() ? "" : ": ", request.reason())));
  v1::CancelJobResponse response;
  response.set_state(v1::JOB_CANCELLED);
  return response;
}

absl::StatusOr<v1::ListWorkersResponse> Coordinator::ListWorkers(
    const v1::ListWorkersRequest& request) {
  ASSIGN_OR_RETURN(std::vector<WorkerRecord> workers, state_->ListWorkers());
  v1::ListWorkersResponse response;
  const int64_t now = Now();
  for (WorkerRecord& worker : workers) {
    liveness_.Overlay(&worker);
    if (!request.include_inactive() &&
        now - worker.last_heartbeat_ms > options_.worker_timeout_ms) {
      continue;
    }
    v1::WorkerStatus* out = response.add_workers();
    out->set_worker_id(worker.worker_id);
    out->set_display_name(worker.display_name);
    out->set_public_key_fingerprint(Sha256Hex(worker.public_key));
    *out->mutable_profile() = worker.profile;
    out->set_availability(worker.availability);
    out->set_last_heartbeat_ms(worker.last_heartbeat_ms);
    out->set_current_unit_id(worker.current_unit_id);
    out->set_units_accepted(worker.units_accepted);
    out->set_units_rejected(worker.units_rejected);
    out->set_credit_flop(worker.credit_flop);
    out->set_validated_streak(worker.validated_streak);
    out->set_units_invalid(worker.units_invalid);
  }
  return response;
}

namespace {

// "UNIT_PENDING" -> "pending", "GPU_SMALL" -> "gpu_small": label values as
// Prometheus users write them.
std::string LabelValue(absl::string_view enum_name, absl::string_view prefix) {
  absl::ConsumePrefix(&enum_name, prefix);
  return absl::AsciiStrToLower(enum_name);
}

}  // namespace

absl::StatusOr<MetricsSnapshot> Coordinator::CollectMetricsSnapshot() {
  MetricsSnapshot snapshot;
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, state_->ListJobs());
  for (const JobRecord& job : jobs) {
    ++snapshot.jobs[LabelValue(v1::JobState_Name(job.state), "JOB_")];
    if (job.state != v1::JOB_RUNNING) continue;
    ASSIGN_OR_RETURN(RoundProgress progress,
                     state_->GetRoundProgress(job.job_id, job.current_round));
    for (const auto& [key, count] : progress.counts) {
      const std::string kind =
          key.first == v1::WORK_VALIDATE ? "validation" : "training";
      snapshot
          .units[{kind, LabelValue(v1::UnitState_Name(key.second), "UNIT_")}] +=
          count;
    }
  }
  ASSIGN_OR_RETURN(std::vector<WorkerRecord> workers, state_->ListWorkers());
  const int64_t now = Now();
  for (WorkerRecord& worker : workers) {
    liveness_.Overlay(&worker);
    const std::string tier =
        LabelValue(v1::Tier_Name(worker.profile.tier()), "TIER_");
    const std::string state =
        now - worker.last_heartbeat_ms > options_.worker_timeout_ms
            ? "silent"
            : LabelValue(v1::Availability_Name(worker.availability), "");
    ++snapshot.workers[{tier, state}];
  }
  ASSIGN_OR_RETURN(BlobStoreStats stats, blobs_->Stats());
  snapshot.blob_bytes = stats.blob_bytes;
  snapshot.blob_count = stats.blob_count;
  snapshot.partial_upload_bytes = stats.upload_bytes;
  return snapshot;
}

absl::StatusOr<v1::GetStoreStatusResponse> Coordinator::GetStoreStatus() {
  ASSIGN_OR_RETURN(BlobStoreStats stats, blobs_->Stats());
  v1::GetStoreStatusResponse response;
  response.set_blob_count(stats.blob_count);
  response.set_blob_bytes(stats.blob_bytes);
  response.set_partial_upload_count(stats.upload_count);
  response.set_partial_upload_bytes(stats.upload_bytes);
  return response;
}

}  // namespace openforce::coordinator
