// Reporting (see reporter.h): job, worker and store status, published
// adapters, and the levels a metrics scrape reports.
#include "coordinator/reporter.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "coordinator/internal/planning.h"

namespace openforce::coordinator {

namespace {

// "UNIT_PENDING" -> "pending", "GPU_SMALL" -> "gpu_small": label values as
// Prometheus users write them.
std::string LabelValue(absl::string_view enum_name, absl::string_view prefix) {
  absl::ConsumePrefix(&enum_name, prefix);
  return absl::AsciiStrToLower(enum_name);
}

}  // namespace

absl::StatusOr<v1::JobStatus> Reporter::DescribeJob(const JobRecord& job) {
  v1::JobStatus status;
  status.set_job_id(job.job_id);
  *status.mutable_spec() = job.spec;
  status.set_state(job.state);
  status.set_current_round(job.current_round);
  status.set_latest_adapter_version(job.latest_version);
  status.set_created_at_ms(job.created_ms);
  status.set_message(job.message);
  ASSIGN_OR_RETURN(std::vector<RoundRecord> rounds,
                   core_.state().ListRounds(job.job_id));
  ASSIGN_OR_RETURN(std::vector<ShardRecord> shards,
                   core_.state().ListShards(job.job_id));
  for (const RoundRecord& round : rounds) {
    v1::RoundStatus* out = status.add_rounds();
    out->set_round(round.round);
    out->set_adapter_version(round.adapter_version);
    out->set_opened_at_ms(round.opened_ms);
    out->set_deadline_ms(round.deadline_ms);
    if (round.adapter_version != 0) {
      ASSIGN_OR_RETURN(
          std::optional<AdapterRecord> adapter,
          core_.state().GetAdapter(job.job_id, round.adapter_version));
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
                     core_.state().ListUnits(job.job_id, round.round));
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
                     core_.state().ListResults(job.job_id, round.round));
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

absl::StatusOr<v1::JobStatus> Reporter::GetJob(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job, core_.state().GetJob(job_id));
  if (!job.has_value()) return NotFoundJob(job_id);
  return DescribeJob(*job);
}

absl::StatusOr<v1::ListJobsResponse> Reporter::ListJobs(
    const v1::ListJobsRequest& request) {
  size_t start = 0;
  if (!request.page_token().empty() &&
      !absl::SimpleAtoi(request.page_token(), &start)) {
    return absl::InvalidArgumentError("page_token is not one this server gave");
  }
  const size_t page_size = request.page_size() == 0
                               ? kDefaultPageSize
                               : std::min<size_t>(request.page_size(), 1000);
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, core_.state().ListJobs());
  v1::ListJobsResponse response;
  for (size_t i = start; i < jobs.size() && i < start + page_size; ++i) {
    ASSIGN_OR_RETURN(*response.add_jobs(), DescribeJob(jobs[i]));
  }
  if (start + page_size < jobs.size())
    response.set_next_page_token(absl::StrCat(start + page_size));
  return response;
}

absl::StatusOr<v1::ListWorkersResponse> Reporter::ListWorkers(
    const v1::ListWorkersRequest& request) {
  ASSIGN_OR_RETURN(std::vector<WorkerRecord> workers,
                   core_.state().ListWorkers());
  v1::ListWorkersResponse response;
  const int64_t now = core_.Now();
  for (WorkerRecord& worker : workers) {
    core_.liveness().Overlay(&worker);
    if (!request.include_inactive() &&
        now - worker.last_heartbeat_ms > core_.options().worker_timeout_ms) {
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

absl::StatusOr<MetricsSnapshot> Reporter::CollectMetricsSnapshot() {
  MetricsSnapshot snapshot;
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, core_.state().ListJobs());
  for (const JobRecord& job : jobs) {
    ++snapshot.jobs[LabelValue(v1::JobState_Name(job.state), "JOB_")];
    if (job.state != v1::JOB_RUNNING) continue;
    ASSIGN_OR_RETURN(
        RoundProgress progress,
        core_.state().GetRoundProgress(job.job_id, job.current_round));
    for (const auto& [key, count] : progress.counts) {
      const std::string kind =
          key.first == v1::WORK_VALIDATE ? "validation" : "training";
      snapshot
          .units[{kind, LabelValue(v1::UnitState_Name(key.second), "UNIT_")}] +=
          count;
    }
  }
  ASSIGN_OR_RETURN(std::vector<WorkerRecord> workers,
                   core_.state().ListWorkers());
  const int64_t now = core_.Now();
  for (WorkerRecord& worker : workers) {
    core_.liveness().Overlay(&worker);
    const std::string tier =
        LabelValue(v1::Tier_Name(worker.profile.tier()), "TIER_");
    const std::string state =
        now - worker.last_heartbeat_ms > core_.options().worker_timeout_ms
            ? "silent"
            : LabelValue(v1::Availability_Name(worker.availability), "");
    ++snapshot.workers[{tier, state}];
  }
  ASSIGN_OR_RETURN(BlobStoreStats stats, core_.blobs().Stats());
  snapshot.blob_bytes = stats.blob_bytes;
  snapshot.blob_count = stats.blob_count;
  snapshot.partial_upload_bytes = stats.upload_bytes;
  return snapshot;
}

absl::StatusOr<v1::GetStoreStatusResponse> Reporter::GetStoreStatus() {
  ASSIGN_OR_RETURN(BlobStoreStats stats, core_.blobs().Stats());
  v1::GetStoreStatusResponse response;
  response.set_blob_count(stats.blob_count);
  response.set_blob_bytes(stats.blob_bytes);
  response.set_partial_upload_count(stats.upload_count);
  response.set_partial_upload_bytes(stats.upload_bytes);
  return response;
}

absl::StatusOr<v1::GetLatestAdapterResponse> Reporter::GetLatestAdapter(
    const v1::GetLatestAdapterRequest& request) {
  ASSIGN_OR_RETURN(std::optional<JobRecord> job,
                   core_.state().GetJob(request.job_id()));
  if (!job.has_value()) return NotFoundJob(request.job_id());
  ASSIGN_OR_RETURN(
      std::optional<AdapterRecord> adapter,
      core_.state().GetAdapter(request.job_id(), request.version()));
  v1::GetLatestAdapterResponse response;
  if (adapter.has_value()) {
    *response.mutable_adapter() = adapter->adapter;
  } else if (request.version() != 0) {
    return absl::NotFoundError(absl::StrCat("job ", request.job_id(),
                                            " has no adapter version ",
                                            request.version()));
  }
  return response;
}

}  // namespace openforce::coordinator
