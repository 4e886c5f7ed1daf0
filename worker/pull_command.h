// `openforce-worker pull`: downloads a job's published adapter version,
// verifies the coordinator's signature against a pinned public key and the
// content hash against the files, and writes PEFT-format files (plus
// openforce_adapter.json recording where they came from) that load in the
// LoRA engine, PEFT, or `openforce-worker infer` with no network.
#ifndef OPENFORCE_WORKER_PULL_COMMAND_H_
#define OPENFORCE_WORKER_PULL_COMMAND_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "proto/channel.h"
#include "proto/openforce.pb.h"

namespace openforce::worker {

struct PullRequest {
  std::string coordinator;
  TransportOptions transport;
  std::string job_id;
  uint64_t version = 0;              // 0: the latest
  std::string coordinator_key_file;  // PEM public key to pin
  std::string out_dir;
};

// NotFound when nothing is published yet; Unauthenticated when the signature
// does not verify with the pinned key; DataLoss when files do not match their
// hashes. Nothing is written to `out_dir` unless every check passed.
[[nodiscard]] absl::StatusOr<v1::SignedAdapter> PullAdapter(
    const PullRequest& request);

// The provenance file written next to the PEFT files.
inline constexpr char kProvenanceFile[] = "openforce_adapter.json";

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_PULL_COMMAND_H_
