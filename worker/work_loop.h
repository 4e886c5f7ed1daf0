// `openforce-worker run`: the volunteer's loop. Creates or loads the worker's
// Ed25519 identity (0600) under the data directory, registers its hardware
// profile, heartbeats, leases one unit at a time, downloads what it lacks
// (base model once, cached by hash; parent adapter; shard) with resume and
// hash checks, trains, signs and uploads the delta, and repeats. A validation
// unit instead scores a round's candidate adapter and its parent on a slice
// of the job's held-out records (forward only) and sends the signed losses. A
// stop request (SIGTERM) ends training at the next step with a checkpoint and
// gives the lease back; a coordinator that is away is retried with backoff.
// The owner's donation policy pauses training (with a checkpoint) within a
// second of the machine getting busy and resumes it when allowed; a lease
// saved on disk lets a restarted worker continue its unit.
#ifndef OPENFORCE_WORKER_WORK_LOOP_H_
#define OPENFORCE_WORKER_WORK_LOOP_H_

#include <cstdint>
#include <iosfwd>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "proto/channel.h"
#include "proto/openforce.pb.h"
#include "worker/donation_policy.h"
#include "worker/system_monitor.h"

namespace openforce::worker {

struct WorkLoopOptions {
  std::string coordinator;  // host:port
  TransportOptions transport;
  std::string data_dir;
  std::string enrollment_token;
  std::string display_name;
  // The hardware profile to register (from the probe, with the owner's
  // limits applied).
  v1::HardwareProfile profile;
  // What a unit may use at most; the lease request offers
  // min(available - headroom, max_memory).
  uint64_t max_memory_bytes = 0;  // 0: no cap beyond the headroom
  // GPU workers: VRAM kept free for the desktop, and the most a unit may use
  // (0: no cap beyond the reserve).
  uint64_t gpu_reserve_bytes = 512ull << 20;
  uint64_t max_vram_bytes = 0;
  std::string device = "cpu";
  // Stop after this many units have been delivered (0: run until stopped).
  int max_units = 0;
  // When to work; checked twice a second while running.
  DonationPolicyOptions policy;
  SystemMonitorOptions monitor;
  // Where the live status goes (default DATA/status.json).
  std::string status_file;
};

// Runs until `stop` is notified (returns OK after releasing any lease) or a
// non-transient error (bad enrollment token, unreadable key, ...). Progress
// goes to `log`, one line per event.
[[nodiscard]] absl::Status RunWorkLoop(const WorkLoopOptions& options,
                                       absl::Notification* stop,
                                       std::ostream& log);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_WORK_LOOP_H_
