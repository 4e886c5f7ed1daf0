// Fetching and laying out a unit's files; see unit_files.h.
#include "worker/unit_files.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "lora/lora_adapter.h"
#include "proto/lora_convert.h"
#include "proto/status_convert.h"
#include "worker/internal/loop_state.h"

namespace openforce::worker {
namespace {

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

}  // namespace

UnitFiles::UnitFiles(std::string data_dir, CoordinatorClient* client,
                     BlobStore* blobs, absl::Notification* stop,
                     std::function<void(const std::string&)> log)
    : data_dir_(std::move(data_dir)),
      client_(client),
      blobs_(blobs),
      stop_(stop),
      log_(std::move(log)) {}

absl::Status UnitFiles::Fetch(const v1::BlobRef& blob, int64_t deadline_ms) {
  Backoff backoff;
  while (true) {
    absl::Status fetched =
        client_->FetchBlob(client_->worker_id(), blob, blobs_);
    if (fetched.ok() || !IsTransient(fetched)) return fetched;
    if (absl::ToUnixMillis(absl::Now()) > deadline_ms) return fetched;
    if (stop_->WaitForNotificationWithTimeout(backoff.Next()))
      return absl::CancelledError("stopped while downloading");
  }
}

absl::StatusOr<UnitPaths> UnitFiles::Prepare(const v1::WorkUnit& unit) {
  UnitPaths paths;
  paths.model_dir = absl::StrCat(data_dir_, "/models/", unit.base_model_hash());
  const std::string complete = paths.model_dir + "/.complete";
  if (!std::filesystem::exists(complete)) {
    RETURN_IF_ERROR(MakeDirectories(paths.model_dir));
    for (const v1::BlobRef& file : unit.base_model_files()) {
      RETURN_IF_ERROR(Fetch(file, unit.lease_deadline_ms()));
      ASSIGN_OR_RETURN(std::string object, blobs_->ObjectPath(file.sha256()));
      RETURN_IF_ERROR(LinkOrCopy(object, paths.model_dir + "/" + file.name()));
    }
    RETURN_IF_ERROR(WriteFileAtomically(complete, unit.base_model_hash()));
    log_(absl::StrCat("cached base model ",
                      unit.base_model_hash().substr(0, 12), " (",
                      unit.base_model_files_size(), " files)"));
  }
  ASSIGN_OR_RETURN(paths.parent_adapter_dir,
                   PlaceAdapter(unit, unit.parent_adapter()));
  if (unit.kind() == v1::WORK_VALIDATE) {
    ASSIGN_OR_RETURN(paths.candidate_adapter_dir,
                     PlaceAdapter(unit, unit.candidate_adapter()));
    RETURN_IF_ERROR(Fetch(unit.validation_set(), unit.lease_deadline_ms()));
    ASSIGN_OR_RETURN(paths.validation_path,
                     blobs_->ObjectPath(unit.validation_set().sha256()));
  } else {
    RETURN_IF_ERROR(Fetch(unit.shard(), unit.lease_deadline_ms()));
    ASSIGN_OR_RETURN(paths.shard_path,
                     blobs_->ObjectPath(unit.shard().sha256()));
  }
  paths.work_dir = absl::StrCat(data_dir_, "/units/", unit.unit_id());
  return paths;
}

absl::StatusOr<std::string> UnitFiles::PlaceAdapter(
    const v1::WorkUnit& unit, const v1::BlobRef& adapter) {
  RETURN_IF_ERROR(Fetch(adapter, unit.lease_deadline_ms()));
  const std::string dir =
      absl::StrCat(data_dir_, "/adapters/", adapter.sha256());
  RETURN_IF_ERROR(MakeDirectories(dir));
  ASSIGN_OR_RETURN(std::string object, blobs_->ObjectPath(adapter.sha256()));
  RETURN_IF_ERROR(LinkOrCopy(object, dir + "/adapter_model.safetensors"));
  ASSIGN_OR_RETURN(lora::LoraConfig lora_config,
                   LoraConfigFromProto(unit.lora()));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/adapter_config.json",
                                      lora::AdapterConfigToJson(lora_config)));
  return dir;
}

}  // namespace openforce::worker
