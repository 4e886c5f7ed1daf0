// The worker's loop; see work_loop.h.
#include "worker/work_loop.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
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
#include "common/terminal_text.h"
#include "common/tier.h"
#include "lora/lora_adapter.h"
#include "proto/lora_convert.h"
#include "proto/signing_convert.h"
#include "proto/status_convert.h"
#include "worker/coordinator_client.h"
#include "worker/internal/loop_state.h"
#include "worker/system_monitor.h"
#include "worker/unit_files.h"
#include "worker/unit_trainer.h"
#include "worker/work_unit_check.h"
#include "worker/worker_status.h"

namespace openforce::worker {
namespace {

class WorkLoop {
 public:
  WorkLoop(const WorkLoopOptions& options, absl::Notification* stop,
           std::ostream& log)
      : options_(options),
        stop_(stop),
        log_(log),
        trainer_(options.device),
        monitor_(options.monitor),
        policy_(options.policy) {}

  absl::Status Run() {
    RETURN_IF_ERROR(MakeDirectories(options_.data_dir, 0700));
    ASSIGN_OR_RETURN(key_, Ed25519PrivateKey::LoadOrCreate(options_.data_dir +
                                                           "/worker.key"));
    ASSIGN_OR_RETURN(blobs_, BlobStore::Open(options_.data_dir + "/blobs"));
    ASSIGN_OR_RETURN(client_, CoordinatorClient::Connect(options_.coordinator,
                                                         options_.transport));
    files_ = std::make_unique<UnitFiles>(
        options_.data_dir, client_.get(), blobs_.get(), stop_,
        [this](const std::string& line) { Log(line); });
    state_.SetIdentity("", TierLabel(), options_.coordinator);
    state_.SetState("registering");
    // The first decision comes before anything else happens, so a machine
    // that is busy at start never begins a step.
    (void)monitor_.Sample(false);
    UpdatePolicy();
    std::thread monitor([this] { MonitorLoop(); });
    std::thread status([this] { StatusLoop(); });
    absl::Status result = RegisterWithRetry();
    if (result.ok() && !stop_->HasBeenNotified()) {
      std::thread heartbeat([this] { HeartbeatLoop(); });
      result = ResumeSavedLease();
      if (result.ok()) result = LeaseLoop();
      heartbeat_done_.Notify();
      heartbeat.join();
    }
    state_.SetState("stopped",
                    result.ok() ? "" : std::string(result.message()));
    background_done_.Notify();
    monitor.join();
    status.join();
    WriteStatus();
    if (terminal_) log_ << "\n" << std::flush;
    return result;
  }

 private:
  void Log(const std::string& line) {
    absl::MutexLock lock(&log_mu_);
    if (terminal_) log_ << "\r\033[K";
    const std::string worker_id = WorkerId();
    // Lines carry text from the coordinator (reasons, ids), which must not
    // reach the terminal raw.
    log_ << "[" << EscapeForTerminal(worker_id.empty() ? "worker" : worker_id)
         << "] " << EscapeForTerminal(line) << "\n";
    if (terminal_) log_ << FormatStatusLine(state_.Snapshot());
    log_ << std::flush;
  }

  // The id the coordinator gave at registration; read by every thread, so
  // it lives in the (thread-safe) client rather than in a plain member.
  std::string WorkerId() const {
    return client_ != nullptr ? client_->worker_id() : std::string();
  }

  std::string TierLabel() const {
    return std::string(
        TierName(static_cast<Tier>(static_cast<int>(options_.profile.tier()))));
  }

  // Samples the machine twice a second and feeds the policy, so a pause
  // takes effect within about a second of the owner coming back.
  void MonitorLoop() {
    while (!background_done_.WaitForNotificationWithTimeout(
        absl::Milliseconds(500))) {
      UpdatePolicy();
    }
  }

  void UpdatePolicy() {
    absl::StatusOr<MachineReadings> readings =
        monitor_.Sample(/*own_gpu_busy=*/training_.load());
    PolicyDecision decision;
    if (readings.ok()) {
      available_memory_ = readings->available_memory_bytes;
      decision = policy_.Update(*readings);
    } else {
      decision.reason = absl::StrCat("cannot read the machine's load: ",
                                     readings.status().message());
    }
    bool changed;
    {
      absl::MutexLock lock(&policy_mu_);
      changed = decision.may_work != decision_.may_work || !decided_;
      decision_ = decision;
      decided_ = true;
    }
    if (changed) {
      Log(decision.may_work
              ? absl::StrCat("donation allowed: ", decision.reason)
              : absl::StrCat("donation paused: ", decision.reason));
    }
  }

  PolicyDecision Decision() const {
    absl::MutexLock lock(&policy_mu_);
    return decision_;
  }

  // Writes the status file about once a second and redraws the terminal
  // line.
  void StatusLoop() {
    // State changes reach the file within a quarter second; progress alone
    // once a second, so a laptop's disk is not kept busy.
    std::string last_state;
    absl::Time last_write = absl::InfinitePast();
    while (!background_done_.WaitForNotificationWithTimeout(
        absl::Milliseconds(250))) {
      const WorkerStatusSnapshot snapshot = state_.Snapshot();
      const std::string state = absl::StrCat(
          snapshot.state, "|", snapshot.reason, "|", snapshot.unit_id);
      if (state == last_state && absl::Now() - last_write < absl::Seconds(1))
        continue;
      last_state = state;
      last_write = absl::Now();
      WriteStatus();
      if (terminal_) {
        absl::MutexLock lock(&log_mu_);
        log_ << "\r\033[K" << FormatStatusLine(snapshot) << std::flush;
      }
    }
  }

  void WriteStatus() {
    WorkerStatusSnapshot snapshot = state_.Snapshot();
    snapshot.pid = getpid();
    snapshot.updated_at_ms = absl::ToUnixMillis(absl::Now());
    (void)WriteFileAtomically(options_.status_file.empty()
                                  ? StatusFilePath(options_.data_dir)
                                  : options_.status_file,
                              StatusToJson(snapshot));
  }

  std::string LeaseFile() const { return options_.data_dir + "/lease.pb"; }

  // After a crash or reboot: the unit leased before, if its lease still
  // stands, continues from its checkpoint.
  absl::Status ResumeSavedLease() {
    absl::StatusOr<std::string> saved = ReadFileToString(LeaseFile());
    if (!saved.ok()) return absl::OkStatus();
    v1::WorkUnit unit;
    std::error_code error;
    if (!unit.ParseFromString(*saved) ||
        unit.lease_deadline_ms() <= absl::ToUnixMillis(absl::Now())) {
      std::filesystem::remove(LeaseFile(), error);
      return absl::OkStatus();
    }
    v1::HeartbeatRequest check = state_.Heartbeat(WorkerId());
    check.set_current_unit_id(unit.unit_id());
    absl::StatusOr<v1::HeartbeatResponse> response = client_->Heartbeat(check);
    if (!response.ok() || response->revoked_unit_ids_size() > 0) {
      Log(absl::StrCat("the lease on ", unit.unit_id(),
                       " did not survive the restart; dropping it"));
      std::filesystem::remove(LeaseFile(), error);
      return absl::OkStatus();
    }
    Log(absl::StrCat("continuing ", unit.unit_id(), " after a restart"));
    return RunUnit(unit);
  }

  // Works on a leased unit and always clears it afterwards.
  absl::Status RunUnit(const v1::WorkUnit& unit) {
    (void)WriteFileAtomically(LeaseFile(), unit.SerializeAsString(), 0600);
    absl::Status worked = WorkOn(unit);
    state_.SetUnit(nullptr);
    std::error_code error;
    std::filesystem::remove(LeaseFile(), error);
    if (!worked.ok()) {
      // One bad unit (a download that failed its hash, a model this machine
      // cannot load) must not end the donation: give it back and wait
      // before asking again, so a broken job is not retried hot.
      Log(absl::StrCat("unit ", unit.unit_id(), " failed: ", worked.ToString(),
                       "; giving it back"));
      (void)client_->Release(WorkerId(), unit.unit_id(),
                             std::string(worked.message()));
      Sleep(failure_backoff_.Next());
    } else {
      failure_backoff_.Reset();
    }
    return absl::OkStatus();
  }

  // Logs why the coordinator could not be reached and waits the next
  // backoff step; true when stopped meanwhile.
  bool WaitOutOutage(Backoff& backoff, const absl::Status& status,
                     absl::string_view what) {
    const absl::Duration wait = backoff.Next();
    Log(absl::StrCat(
        what, " (", status.message(), "); retrying in ",
        absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(10)))));
    return Sleep(wait);
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
        state_.SetIdentity(registered->worker_id(), TierLabel(),
                           options_.coordinator);
        heartbeat_interval_ms_ =
            std::max<int64_t>(200, registered->heartbeat_interval_ms());
        Log(absl::StrCat("registered with ", options_.coordinator, " as ",
                         registered->worker_id(), " (tier ", TierLabel(),
                         ", key fingerprint ", key_->PublicKey().Fingerprint(),
                         ")"));
        return absl::OkStatus();
      }
      if (!IsTransient(registered.status())) return registered.status();
      WaitOutOutage(backoff, registered.status(), "coordinator unavailable");
    }
    return absl::OkStatus();
  }

  void HeartbeatLoop() {
    while (!heartbeat_done_.WaitForNotificationWithTimeout(
        absl::Milliseconds(heartbeat_interval_ms_.load()))) {
      absl::StatusOr<v1::HeartbeatResponse> response =
          client_->Heartbeat(state_.Heartbeat(WorkerId()));
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
      if (const int64_t delivered = state_.delivered();
          options_.max_units > 0 && delivered >= options_.max_units) {
        Log(absl::StrCat("delivered ", delivered, " units; exiting"));
        return absl::OkStatus();
      }
      if (const PolicyDecision decision = Decision(); !decision.may_work) {
        state_.SetState("paused", decision.reason);
        Sleep(absl::Milliseconds(500));
        continue;
      }
      state_.SetState("waiting", "asking for work");
      v1::LeaseWorkUnitRequest request;
      request.set_worker_id(WorkerId());
      request.set_free_memory_bytes(FreeMemory());
      request.set_backend(options_.device == "cpu" ? v1::BACKEND_CPU
                                                   : v1::BACKEND_CUDA);
      absl::StatusOr<v1::LeaseWorkUnitResponse> lease = client_->Lease(request);
      if (!lease.ok()) {
        if (RejectReasonOf(lease.status()) == v1::REJECT_TOO_MANY_LEASES) {
          // The coordinator still counts a lease this worker lost track of
          // (a crash before the lease file was written); it expires.
          state_.SetState("waiting", "the coordinator counts a lease of ours");
          Log(absl::StrCat("lease refused: ", lease.status().message()));
          Sleep(absl::Seconds(30));
          continue;
        }
        if (absl::IsUnauthenticated(lease.status()) ||
            absl::IsFailedPrecondition(lease.status())) {
          // The coordinator forgot us (new database) or saw no heartbeat:
          // register again.
          RETURN_IF_ERROR(RegisterWithRetry());
          continue;
        }
        if (!IsTransient(lease.status())) return lease.status();
        WaitOutOutage(backoff, lease.status(), "coordinator unavailable");
        continue;
      }
      backoff.Reset();
      if (!lease->has_unit()) {
        state_.SetState("waiting", "no work that fits this machine now");
        Sleep(absl::Milliseconds(std::max(100u, lease->retry_after_ms())));
        continue;
      }
      RETURN_IF_ERROR(RunUnit(lease->unit()));
    }
    return absl::OkStatus();
  }

  uint64_t FreeMemory() const {
    // The monitor read MemAvailable within the last half second.
    const uint64_t available = available_memory_.load();
    const uint64_t headroom = options_.profile.headroom_bytes();
    uint64_t free = available > headroom ? available - headroom : 0;
    if (options_.max_memory_bytes > 0)
      free = std::min(free, options_.max_memory_bytes);
    if (options_.device == "cpu") return free;
    absl::StatusOr<HardwareProfile> now = ProbeHardware();
    // On a GPU the unit lives in VRAM: offer what the device has free, less
    // the desktop's reserve, capped by the owner.
    int index = 0;
    if (const size_t colon = options_.device.find(':');
        colon != std::string::npos) {
      index = std::atoi(options_.device.c_str() + colon + 1);
    }
    uint64_t vram = 0;
    if (now.ok()) {
      for (const GpuInfo& gpu : now->gpus) {
        if (gpu.index == index) vram = gpu.vram_free_bytes;
      }
    }
    vram = vram > options_.gpu_reserve_bytes ? vram - options_.gpu_reserve_bytes
                                             : 0;
    if (options_.max_vram_bytes > 0)
      vram = std::min(vram, options_.max_vram_bytes);
    return vram;
  }

  // A validation unit: forward passes only, short next to training, so it
  // is not checkpointed; a stop before it ends gives the lease back.
  absl::Status ValidateUnit(const v1::WorkUnit& unit, const UnitPaths& paths) {
    state_.SetState("validating", "scoring the round's candidate");
    absl::StatusOr<ValidationLosses> losses = trainer_.Validate(unit, paths);
    RETURN_IF_ERROR(losses.status());
    if (stop_->HasBeenNotified()) return Release(unit, "worker shutting down");
    if (state_.revoked()) {
      Log(absl::StrCat("dropped ", unit.unit_id(), ": lease revoked"));
      return absl::OkStatus();
    }
    v1::ValidationReport report = ValidationReportForUnit(unit, WorkerId());
    report.set_records(losses->records);
    report.set_candidate_loss(losses->candidate_loss);
    report.set_parent_loss(losses->parent_loss);
    ASSIGN_OR_RETURN(std::string signature,
                     SignPayload(*key_, ValidationSigningPayload(report)));
    report.set_signature(signature);
    state_.SetState("uploading", "signed validation report");
    Backoff backoff;
    while (true) {
      absl::StatusOr<v1::SubmitValidationResponse> response =
          client_->SubmitValidation(report);
      if (response.ok()) {
        state_.Delivered();
        Log(absl::StrFormat(
            "validation of %s reported: candidate loss %.4f, parent %.4f on "
            "%d records",
            unit.unit_id(), losses->candidate_loss, losses->parent_loss,
            losses->records));
        return absl::OkStatus();
      }
      if (!IsTransient(response.status())) {
        Log(absl::StrCat(
            "validation report for ", unit.unit_id(), " refused: ",
            v1::RejectReason_Name(RejectReasonOf(response.status())), " ",
            response.status().message()));
        return absl::OkStatus();  // the coordinator has decided; move on
      }
      if (absl::ToUnixMillis(absl::Now()) > unit.lease_deadline_ms())
        return response.status();
      if (WaitOutOutage(backoff, response.status(), "report interrupted"))
        return absl::CancelledError("stopped while reporting");
    }
  }

  absl::Status WorkOn(const v1::WorkUnit& unit) {
    // Every name in the unit comes from the coordinator, which a volunteer
    // does not have to trust: hashes must be hashes and names plain file
    // names before any of them becomes a path under the data directory.
    RETURN_IF_ERROR(CheckWorkUnitNames(unit));
    state_.SetUnit(&unit);
    const int64_t leased_at = absl::ToUnixMillis(absl::Now());
    if (unit.kind() == v1::WORK_VALIDATE) {
      Log(absl::StrFormat(
          "leased %s: validate job %s round %d, held-out records [%d, %d), "
          "lease %ds",
          unit.unit_id(), unit.job_id(), unit.round(), unit.validation_begin(),
          unit.validation_end(),
          (unit.lease_deadline_ms() - leased_at) / 1000));
      state_.SetState("downloading", "base model, adapters and held-out set");
      ASSIGN_OR_RETURN(UnitPaths paths, files_->Prepare(unit));
      return ValidateUnit(unit, paths);
    }
    Log(absl::StrFormat(
        "leased %s: job %s round %d shard %d replica %d, %d steps, lease %ds",
        unit.unit_id(), unit.job_id(), unit.round(), unit.shard_index(),
        unit.replica(), unit.training().steps_per_shard(),
        (unit.lease_deadline_ms() - leased_at) / 1000));
    state_.SetState("downloading", "base model, adapter and shard");
    ASSIGN_OR_RETURN(UnitPaths paths, files_->Prepare(unit));
    const int64_t report_every =
        std::max(1, unit.training().steps_per_shard() / 5);
    // A pause that would leave too little of the lease to finish gives the
    // unit back instead: a tenth of the lease, at least 30 s.
    const int64_t release_margin_ms =
        std::max<int64_t>(30'000, (unit.lease_deadline_ms() - leased_at) / 10);
    std::error_code error;
    while (true) {
      state_.SetState("training");
      training_ = options_.device != "cpu";
      const auto started = std::chrono::steady_clock::now();
      int64_t first_step = -1;
      const uint64_t budget = FreeMemory();
      absl::StatusOr<TrainedDelta> delta = trainer_.Train(
          unit, paths,
          [&] {
            return stop_->HasBeenNotified() || state_.revoked() ||
                   !Decision().may_work;
          },
          [&](const UnitProgress& progress) {
            if (first_step < 0) first_step = progress.step - 1;
            const double seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                              started)
                    .count();
            const double per_step =
                seconds / static_cast<double>(progress.step - first_step);
            state_.SetProgress(
                progress,
                per_step * static_cast<double>(progress.total - progress.step));
            if (progress.step % report_every == 0 ||
                progress.step == progress.total) {
              Log(absl::StrFormat("%s step %d/%d loss %.4f (%.0f tokens/s)",
                                  unit.unit_id(), progress.step, progress.total,
                                  progress.loss, progress.tokens_per_second));
            }
          },
          budget);
      training_ = false;
      if (!absl::IsCancelled(delta.status())) {
        RETURN_IF_ERROR(delta.status());
        state_.SetState("uploading", "signed delta");
        absl::Status uploaded = Upload(unit, *delta);
        std::filesystem::remove_all(paths.work_dir, error);
        return uploaded;
      }
      if (state_.revoked()) {
        std::filesystem::remove_all(paths.work_dir, error);
        Log(absl::StrCat("dropped ", unit.unit_id(), ": lease revoked"));
        return absl::OkStatus();
      }
      if (!stop_->HasBeenNotified()) {
        // Paused by the owner's policy: wait, keeping the checkpoint, for as
        // long as the lease allows.
        Log(absl::StrCat(unit.unit_id(), ": ", delta.status().message(),
                         "; paused: ", Decision().reason));
        while (!stop_->HasBeenNotified() && !state_.revoked() &&
               !Decision().may_work) {
          state_.SetState("paused", Decision().reason);
          if (absl::ToUnixMillis(absl::Now()) >=
              unit.lease_deadline_ms() - release_margin_ms) {
            Log(absl::StrCat("paused longer than the lease on ", unit.unit_id(),
                             " allows; giving it back"));
            return Release(unit, "paused by the owner past the lease");
          }
          Sleep(absl::Milliseconds(250));
        }
        if (state_.revoked()) continue;  // handled at the top of the loop
        if (!stop_->HasBeenNotified()) {
          Log(absl::StrCat("resuming ", unit.unit_id(),
                           " from its checkpoint"));
          continue;
        }
      }
      state_.SetState("stopping", "checkpoint saved");
      Log(absl::StrCat(unit.unit_id(), ": ", delta.status().message(),
                       "; giving the lease back"));
      return Release(unit, "worker shutting down");
    }
  }

  absl::Status Release(const v1::WorkUnit& unit, const std::string& reason) {
    absl::Status released =
        client_->Release(WorkerId(), unit.unit_id(), reason);
    if (!released.ok()) Log(absl::StrCat("release: ", released.message()));
    return absl::OkStatus();
  }

  absl::Status Upload(const v1::WorkUnit& unit, const TrainedDelta& delta) {
    v1::DeltaHeader header = DeltaHeaderForUnit(unit, WorkerId());
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
    int offset_restarts = 0;
    while (true) {
      absl::StatusOr<v1::UploadDeltaResponse> response =
          client_->UploadDelta(header, delta.path);
      if (response.ok() && response->accepted()) {
        state_.Delivered();
        Log(absl::StrFormat(
            "delta for %s accepted (%d samples, train_loss %.4f, %s)",
            unit.unit_id(), delta.sample_count, delta.metrics.at("train_loss"),
            response->message()));
        return absl::OkStatus();
      }
      absl::Status status = response.ok()
                                ? absl::UnavailableError(response->message())
                                : response.status();
      // The coordinator dropped our partial upload (it sat idle past the
      // expiry, or a connection broke mid-chunk): start it again from the
      // offset it reports, a few times, before giving up.
      const bool restart = RejectReasonOf(status) == v1::REJECT_BAD_OFFSET &&
                           ++offset_restarts <= 3;
      if (!IsTransient(status) && !restart) {
        Log(absl::StrCat("delta for ", unit.unit_id(), " refused: ",
                         v1::RejectReason_Name(RejectReasonOf(status)), " ",
                         status.message()));
        return absl::OkStatus();  // the coordinator has decided; move on
      }
      if (absl::ToUnixMillis(absl::Now()) > unit.lease_deadline_ms())
        return status;
      if (WaitOutOutage(backoff, status, "upload interrupted"))
        return absl::CancelledError("stopped while uploading");
    }
  }

  const WorkLoopOptions& options_;
  absl::Notification* stop_;
  std::ostream& log_;
  UnitTrainer trainer_;
  std::optional<Ed25519PrivateKey> key_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<CoordinatorClient> client_;
  std::unique_ptr<UnitFiles> files_;
  // Set by the lease thread at registration, read by the heartbeat thread.
  std::atomic<int64_t> heartbeat_interval_ms_{10'000};
  absl::Notification heartbeat_done_;
  absl::Notification background_done_;
  WorkerState state_;
  SystemMonitor monitor_;
  DonationPolicy policy_;
  mutable absl::Mutex policy_mu_;
  PolicyDecision decision_ ABSL_GUARDED_BY(policy_mu_);
  bool decided_ ABSL_GUARDED_BY(policy_mu_) = false;
  std::atomic<bool> training_{false};
  std::atomic<uint64_t> available_memory_{0};
  absl::Mutex log_mu_;
  const bool terminal_ = isatty(STDOUT_FILENO) != 0;
  Backoff failure_backoff_;
};

}  // namespace

absl::Status RunWorkLoop(const WorkLoopOptions& options,
                         absl::Notification* stop, std::ostream& log) {
  WorkLoop loop(options, stop, log);
  return loop.Run();
}

}  // namespace openforce::worker
