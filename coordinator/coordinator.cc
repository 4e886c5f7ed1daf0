// Creating a coordinator and its periodic work (see coordinator.h); the
// calls themselves live in the parts.
#include "coordinator/coordinator.h"

#include <utility>

#include "common/file_util.h"
#include "common/status_macros.h"

namespace openforce::coordinator {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    CoordinatorOptions options, Ed25519PrivateKey identity,
    std::unique_ptr<StateStore> state, std::unique_ptr<BlobStore> blobs) {
  if (options.heartbeat_interval_ms == 0 || options.lease_retry_ms == 0)
    return absl::InvalidArgumentError("intervals must be positive");
  RETURN_IF_ERROR(MakeDirectories(options.data_dir + "/tmp"));
  std::unique_ptr<Coordinator> coordinator(
      new Coordinator(std::move(options), std::move(identity), std::move(state),
                      std::move(blobs)));
  // Uploads abandoned before a restart go now, not an interval later.
  RETURN_IF_ERROR(coordinator->intake_.SweepUploads(/*force=*/true));
  return coordinator;
}

Coordinator::Coordinator(CoordinatorOptions options, Ed25519PrivateKey identity,
                         std::unique_ptr<StateStore> state,
                         std::unique_ptr<BlobStore> blobs)
    : core_(std::move(options), std::move(identity), std::move(state),
            std::move(blobs)) {}

absl::Status Coordinator::Tick() {
  RETURN_IF_ERROR(intake_.SweepUploads(/*force=*/false));
  RETURN_IF_ERROR(scheduler_.ExpireLeases());
  return closer_.CloseReadyRounds();
}

}  // namespace openforce::coordinator
