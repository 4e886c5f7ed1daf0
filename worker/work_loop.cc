// The worker's loop; see work_loop.h.
#include "worker/work_loop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <optional>
#include <ostream>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/hardware_profile.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "lora/lora_adapter.h"
#include "proto/lora_convert.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"
#include "worker/coordinator_client.h"
#include "worker/unit_trainer.h"

namespace openforce::worker {
namespace {

// Exponential backoff with jitter, 0.5 s doubling to 30 s, for a coordinator
// that is away: many workers must not reconnect in lockstep.
class Backoff {
 public:
  absl::Duration Next() {
    const double jitter =
        std::uniform_real_distribution<double>(0.8, 1.2)(rng_);
    const absl::Duration wait = current_ * jitter;
    current_ = std::min(current_ * 2, absl::Seconds(30));
    return wait;
  }
  void Reset() { current_ = absl::Milliseconds(500); }

 private:
  absl::Duration current_ = absl::Milliseconds(500);
  std::mt19937_64 rng_{std::random_device{}()};
};

// What the heartbeat thread reports and learns, shared with the loop.
class WorkerState {
 public:
  void SetUnit(const std::string& unit_id) {
    absl::MutexLock lock(&mu_);
    unit_id_ = unit_id;
    progress_ = 0;
    revoked_ = false;
  }
  void SetProgress(double progress) {
    absl::MutexLock lock(&mu_);
    progress_ = progress;
  }
  void Revoke(const std::string& unit_id) {
    absl::MutexLock lock(&mu_);
    if (unit_id == unit_id_) revoked_ = true;
  }
  bool revoked() const {
    absl::MutexLock lock(&mu_);
    return revoked_;
  }
  v1::HeartbeatRequest Heartbeat(const std::string& worker_id) const {
    absl::MutexLock lock(&mu_);
    v1::HeartbeatRequest request;
    request.set_worker_id(worker_id);
    request.set_availability(unit_id_.empty() ? v1::AVAILABLE
                                              : v1::BUSY_TRAINING);
    request.set_current_unit_id(unit_id_);
    request.set_unit_progress(progress_);
    return request;
  }

 private:
  mutable absl::Mutex mu_;
  std::string unit_id_ ABSL_GUARDED_BY(mu_);
  double progress_ ABSL_GUARDED_BY(mu_) = 0;
  bool revoked_ ABSL_GUARDED_BY(mu_) = false;
};

// Hard-links `from` to `to` (same file system, no copy of a multi-GB model);
// copies when linking is not possible.
absl::Status LinkOrCopy(const std::string& from, const std::string& to) {
  std::error_code error;
  if (std::filesystem::exists(to, error)) return absl::OkStatus();
  std::filesystem::create_hard_link(from, to, error);
  if (!error) return absl::OkStatus();
  std::filesystem::copy_file(from, to, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot place ", from, " at ", to, ": ", error.message()));
  }
  return absl::OkStatus();
}

class WorkLoop {
 public:
  WorkLoop(const WorkLoopOptions& options, absl::Notification* stop,
           std::ostream& log)
      : options_(options), stop_(stop), log_(log), trainer_(options.device) {}

  absl::Status Run() {
    RETURN_IF_ERROR(MakeDirectories(options_.data_dir, 0700));
    ASSIGN_OR_RETURN(key_, Ed25519PrivateKey::LoadOrCreate(options_.data_dir +
                                                           "/worker.key"));
    ASSIGN_OR_RETURN(blobs_, BlobStore::Open(options_.data_dir + "/blobs"));
    ASSIGN_OR_RETURN(client_, CoordinatorClient::Connect(options_.coordinator,
                                                         options_.transport));
    RETURN_IF_ERROR(RegisterWithRetry());
    if (stop_->HasBeenNotified()) return absl::OkStatus();
    std::thread heartbeat([this] { HeartbeatLoop(); });
    absl::Status status = LeaseLoop();
    heartbeat_done_.Notify();
    heartbeat.join();
    return status;
  }

 private:
  void Log(const std::string& line) {
    log_ << "[" << (worker_id_.empty() ? "worker" : worker_id_) << "] " << line
         << std::endl;
  }

  // Waits `duration` or until stopped; true when stopped.
  bool Sleep(absl::Duration duration) {
    return stop_->WaitForNotificationWithTimeout(duration);
  }

  absl::Status RegisterWithRetry() {
    Backoff backoff;
    while (!stop_->HasBeenNotified()) {
      absl::StatusOr<v1::RegisterResponse> registered =
          client_->Register(*key_, options_.profile, options_.enrollment_token,
                            options_.display_name);
      if (registered.ok()) {
        worker_id_ = registered->worker_id();
        heartbeat_interval_ = absl::Milliseconds(
            std::max(200u, registered->heartbeat_interval_ms()));
        Log(absl::StrCat(
            "registered with ", options_.coordinator, " as ", worker_id_,
            " (tier ", v1::Tier_Name(options_.profile.tier()),
            ", key fingerprint ", key_->PublicKey().Fingerprint(), ")"));
        return absl::OkStatus();
      }
      if (!IsTransient(registered.status())) return registered.status();
      const absl::Duration wait = backoff.Next();
      Log(absl::StrCat("coordinator unavailable (",
                       registered.status().message(), "); retrying in ",
                       absl::FormatDuration(wait)));
      Sleep(wait);
    }
    return absl::OkStatus();
  }

  void HeartbeatLoop() {
    while (
        !heartbeat_done_.WaitForNotificationWithTimeout(heartbeat_interval_)) {
      absl::StatusOr<v1::HeartbeatResponse> response =
          client_->Heartbeat(state_.Heartbeat(worker_id_));
      if (!response.ok()) continue;  // the lease loop reports outages
      for (const std::string& unit : response->revoked_unit_ids()) {
        Log(absl::StrCat("coordinator revoked the lease on ", unit));
        state_.Revoke(unit);
      }
    }
  }

  absl::Status LeaseLoop() {
    Backoff backoff;
    while (!stop_->HasBeenNotified()) {
      v1::LeaseWorkUnitRequest request;
      request.set_worker_id(worker_id_);
      request.set_free_memory_bytes(FreeMemory());
      request.set_backend(options_.device == "cpu" ? v1::BACKEND_CPU
                                                   : v1::BACKEND_CUDA);
      absl::StatusOr<v1::LeaseWorkUnitResponse> lease = client_->Lease(request);
      if (!lease.ok()) {
        if (absl::IsUnauthenticated(lease.status()) ||
            absl::IsFailedPrecondition(lease.status())) {
          // The coordinator forgot us (new database) or saw no heartbeat:
          // register again.
          RETURN_IF_ERROR(RegisterWithRetry());
          continue;
        }
        if (!IsTransient(lease.status())) return lease.status();
        const absl::Duration wait = backoff.Next();
        Log(absl::StrCat("coordinator unavailable (", lease.status().message(),
                         "); retrying in ", absl::FormatDuration(wait)));
        Sleep(wait);
        continue;
      }
      backoff.Reset();
      if (!lease->has_unit()) {
        Sleep(absl::Milliseconds(std::max(100u, lease->retry_after_ms())));
        continue;
      }
      absl::Status worked = WorkOn(lease->unit());
      state_.SetUnit("");
      if (!worked.ok()) {
        // One bad unit (a download that failed its hash, a model this
        // machine cannot load) must not end the donation: give it back and
        // wait before asking again, so a broken job is not retried hot.
        Log(absl::StrCat("unit ", lease->unit().unit_id(),
                         " failed: ", worked.ToString(), "; giving it back"));
        (void)client_->Release(worker_id_, lease->unit().unit_id(),
                               std::string(worked.message()));
        Sleep(backoff.Next());
      }
      if (options_.max_units > 0 && delivered_ >= options_.max_units) {
        Log(absl::StrCat("delivered ", delivered_, " units; exiting"));
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  uint64_t FreeMemory() const {
    uint64_t free = 0;
    absl::StatusOr<HardwareProfile> now = ProbeHardware();
    const uint64_t available = now.ok()
                                   ? now->memory.available_bytes
                                   : options_.profile.ram_available_bytes();
    const uint64_t headroom = options_.profile.headroom_bytes();
    free = available > headroom ? available - headroom : 0;
    if (options_.max_memory_bytes > 0)
      free = std::min(free, options_.max_memory_bytes);
    return free;
  }

  // Fetches `blob`, retrying transient failures until the lease deadline.
  absl::Status Fetch(const v1::BlobRef& blob, int64_t deadline_ms) {
    Backoff backoff;
    while (true) {
      absl::Status fetched = client_->FetchBlob(worker_id_, blob, blobs_.get());
      if (fetched.ok() || !IsTransient(fetched)) return fetched;
      if (absl::ToUnixMillis(absl::Now()) > deadline_ms) return fetched;
      if (Sleep(backoff.Next()))
        return absl::CancelledError("stopped while downloading");
    }
  }

  absl::StatusOr<UnitPaths> Prepare(const v1::WorkUnit& unit) {
    UnitPaths paths;
    paths.model_dir =
        absl::StrCat(options_.data_dir, "/models/", unit.base_model_hash());
    const std::string complete = paths.model_dir + "/.complete";
    if (!std::filesystem::exists(complete)) {
      RETURN_IF_ERROR(MakeDirectories(paths.model_dir));
      for (const v1::BlobRef& file : unit.base_model_files()) {
        RETURN_IF_ERROR(CheckPortableFileName(file.name()));
        RETURN_IF_ERROR(Fetch(file, unit.lease_deadline_ms()));
        ASSIGN_OR_RETURN(std::string object, blobs_->ObjectPath(file.sha256()));
        RETURN_IF_ERROR(
            LinkOrCopy(object, paths.model_dir + "/" + file.name()));
      }
      RETURN_IF_ERROR(WriteFileAtomically(complete, unit.base_model_hash()));
      Log(absl::StrCat("cached base model ",
                       unit.base_model_hash().substr(0, 12), " (",
                       unit.base_model_files_size(), " files)"));
    }
    RETURN_IF_ERROR(Fetch(unit.parent_adapter(), unit.lease_deadline_ms()));
    paths.parent_adapter_dir = absl::StrCat(options_.data_dir, "/adapters/",
                                            unit.parent_adapter().sha256());
    RETURN_IF_ERROR(MakeDirectories(paths.parent_adapter_dir));
    ASSIGN_OR_RETURN(std::string adapter_object,
                     blobs_->ObjectPath(unit.parent_adapter().sha256()));
    RETURN_IF_ERROR(
        LinkOrCopy(adapter_object,
                   paths.parent_adapter_dir + "/adapter_model.safetensors"));
    ASSIGN_OR_RETURN(lora::LoraConfig lora_config,
                     LoraConfigFromProto(unit.lora()));
    RETURN_IF_ERROR(
        WriteFileAtomically(paths.parent_adapter_dir + "/adapter_config.json",
                            lora::AdapterConfigToJson(lora_config)));
    RETURN_IF_ERROR(Fetch(unit.shard(), unit.lease_deadline_ms()));
    ASSIGN_OR_RETURN(paths.shard_path,
                     blobs_->ObjectPath(unit.shard().sha256()));
    paths.work_dir = absl::StrCat(options_.data_dir, "/units/", unit.unit_id());
    return paths;
  }

  absl::Status WorkOn(const v1::WorkUnit& unit) {
    RETURN_IF_ERROR(CheckPortableFileName(unit.unit_id()));
    state_.SetUnit(unit.unit_id());
    Log(absl::StrFormat(
        "leased %s: job %s round %d shard %d replica %d, %d steps, lease %ds",
        unit.unit_id(), unit.job_id(), unit.round(), unit.shard_index(),
        unit.replica(), unit.training().steps_per_shard(),
        (unit.lease_deadline_ms() - absl::ToUnixMillis(absl::Now())) / 1000));
    ASSIGN_OR_RETURN(UnitPaths paths, Prepare(unit));
    const int64_t report_every =
        std::max(1, unit.training().steps_per_shard() / 5);
    absl::StatusOr<TrainedDelta> delta = trainer_.Train(
        unit, paths,
        [&] { return stop_->HasBeenNotified() || state_.revoked(); },
        [&](const UnitProgress& progress) {
          state_.SetProgress(static_cast<double>(progress.step) /
                             static_cast<double>(progress.total));
          if (progress.step % report_every == 0 ||
              progress.step == progress.total) {
            Log(absl::StrFormat("%s step %d/%d loss %.4f (%.0f tokens/s)",
                                unit.unit_id(), progress.step, progress.total,
                                progress.loss, progress.tokens_per_second));
          }
        });
    std::error_code error;
    if (absl::IsCancelled(delta.status())) {
      if (state_.revoked()) {
        std::filesystem::remove_all(paths.work_dir, error);
        Log(absl::StrCat("dropped ", unit.unit_id(), ": lease revoked"));
        return absl::OkStatus();
      }
      Log(absl::StrCat(unit.unit_id(), ": ", delta.status().message(),
                       "; giving the lease back"));
      absl::Status released =
          client_->Release(worker_id_, unit.unit_id(), "worker shutting down");
      if (!released.ok()) Log(absl::StrCat("release: ", released.message()));
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(delta.status());
    absl::Status uploaded = Upload(unit, *delta);
    std::filesystem::remove_all(paths.work_dir, error);
    return uploaded;
  }

  absl::Status Upload(const v1::WorkUnit& unit, const TrainedDelta& delta) {
    v1::DeltaHeader header = DeltaHeaderForUnit(unit, worker_id_);
    ASSIGN_OR_RETURN(std::string content_hash, Sha256FileHex(delta.path));
    header.set_content_hash(content_hash);
    std::error_code error;
    header.set_size_bytes(std::filesystem::file_size(delta.path, error));
    header.set_sample_count(delta.sample_count);
    header.mutable_metrics()->insert(delta.metrics.begin(),
                                     delta.metrics.end());
    ASSIGN_OR_RETURN(std::string signature,
                     SignPayload(*key_, DeltaSigningPayload(header)));
    header.set_signature(signature);

    Backoff backoff;
    while (true) {
      absl::StatusOr<v1::UploadDeltaResponse> response =
          client_->UploadDelta(header, delta.path);
      if (response.ok() && response->accepted()) {
        ++delivered_;
        Log(absl::StrFormat(
            "delta for %s accepted (%d samples, train_loss %.4f, %s)",
            unit.unit_id(), delta.sample_count, delta.metrics.at("train_loss"),
            response->message()));
        return absl::OkStatus();
      }
      absl::Status status = response.ok()
                                ? absl::UnavailableError(response->message())
                                : response.status();
      if (!IsTransient(status)) {
        Log(absl::StrCat("delta for ", unit.unit_id(), " refused: ",
                         v1::RejectReason_Name(RejectReasonOf(status)), " ",
                         status.message()));
        return absl::OkStatus();  // the coordinator has decided; move on
      }
      if (absl::ToUnixMillis(absl::Now()) > unit.lease_deadline_ms())
        return status;
      const absl::Duration wait = backoff.Next();
      Log(absl::StrCat("upload interrupted (", status.message(),
                       "); resuming in ", absl::FormatDuration(wait)));
      if (Sleep(wait)) return absl::CancelledError("stopped while uploading");
    }
  }

  const WorkLoopOptions& options_;
  absl::Notification* stop_;
  std::ostream& log_;
  UnitTrainer trainer_;
  std::optional<Ed25519PrivateKey> key_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<CoordinatorClient> client_;
  std::string worker_id_;
  absl::Duration heartbeat_interval_ = absl::Seconds(10);
  absl::Notification heartbeat_done_;
  WorkerState state_;
  int delivered_ = 0;
};

}  // namespace

absl::Status RunWorkLoop(const WorkLoopOptions& options,
                         absl::Notification* stop, std::ostream& log) {
  WorkLoop loop(options, stop, log);
  return loop.Run();
}

}  // namespace openforce::worker
