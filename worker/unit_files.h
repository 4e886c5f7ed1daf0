// What a leased unit needs on disk, fetched from the coordinator into the
// worker's blob cache (resumable, hash-checked, retried until the lease
// deadline) and laid out for the LoRA engine: the base model once per model
// hash, adapters as PEFT directories, and the shard or held-out set.
#ifndef OPENFORCE_WORKER_UNIT_FILES_H_
#define OPENFORCE_WORKER_UNIT_FILES_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/blob_store.h"
#include "proto/openforce.pb.h"
#include "worker/coordinator_client.h"
#include "worker/unit_trainer.h"

namespace openforce::worker {

class UnitFiles {
 public:
  // Files live under `data_dir` (models/, adapters/, units/). `client`,
  // `blobs` and `stop` must outlive this; `log` gets one line per event.
  UnitFiles(std::string data_dir, CoordinatorClient* client, BlobStore* blobs,
            absl::Notification* stop,
            std::function<void(const std::string&)> log);

  // Everything `unit` needs (its names already checked with
  // CheckWorkUnitNames). Cancelled when stopped while downloading.
  [[nodiscard]] absl::StatusOr<UnitPaths> Prepare(const v1::WorkUnit& unit);

 private:
  absl::Status Fetch(const v1::BlobRef& blob, int64_t deadline_ms);
  // `adapter` (adapter_model.safetensors of `unit`'s LoRA shape) as a PEFT
  // directory; returns the directory.
  absl::StatusOr<std::string> PlaceAdapter(const v1::WorkUnit& unit,
                                           const v1::BlobRef& adapter);

  const std::string data_dir_;
  CoordinatorClient* const client_;
  BlobStore* const blobs_;
  absl::Notification* const stop_;
  const std::function<void(const std::string&)> log_;
};

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_UNIT_FILES_H_
