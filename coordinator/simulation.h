// `openforce-coordinator simulate`: a federated job run in one process, so an
// operator can choose an aggregation rule before a real run. N simulated
// workers train their shards with the real trainer, a hostile fraction may
// attack, each delta goes through the checks the coordinator's intake and
// round closing apply, the job's aggregation rule combines them, and each
// round's aggregate is scored on a validation split next to a centralized run
// on the same data and the same total number of steps.
#ifndef OPENFORCE_COORDINATOR_SIMULATION_H_
#define OPENFORCE_COORDINATOR_SIMULATION_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {

enum class Attack {
  kNone,            // every worker honest
  kAbsent,          // hostile workers deliver nothing: the honest-only run
  kScaleToBound,    // the honest delta scaled to just under the norm bound
  kSignFlip,        // the honest delta negated
  kNoise,           // Gaussian noise just under the norm bound
  kZero,            // an all-zero delta: work never done
  kClaimedSamples,  // honest delta claiming 100x the samples it trained
};

// "none", "absent", "scale", "sign_flip", "noise", "zero", "claimed_samples".
[[nodiscard]] absl::StatusOr<Attack> ParseAttack(absl::string_view name);
absl::string_view AttackName(Attack attack);

struct SimulationOptions {
  std::string model_dir;     // config.json, *.safetensors, tokenizer
  std::string dataset_path;  // JSONL, as `job submit` takes
  // JSONL scored after every round; empty: validation_fraction of the
  // dataset is held out (never trained on).
  std::string validation_path;
  double validation_fraction = 0.1;
  v1::LoraConfig lora;
  v1::TrainingConfig training;  // per unit: steps_per_shard steps
  int workers = 10;
  int rounds = 3;
  double dirichlet_alpha = 0;  // 0: IID
  double hostile_fraction = 0;
  Attack attack = Attack::kNone;
  double max_delta_norm = 100;
  std::string aggregation;  // a rule; "" is the default
  bool centralized = true;  // also run the centralized baseline
  int threads = 1;  // libtorch CPU threads; 0: leave the process's setting
  // Progress lines for people; may be empty.
  std::function<void(const std::string&)> log;
};

struct SimulatedRound {
  int round = 0;
  double validation_loss = 0;
  double centralized_loss = 0;  // NaN when not run
  double mean_train_loss = 0;   // over the deltas aggregated
  int deltas_aggregated = 0;
  int deltas_refused = 0;       // by the intake checks or the norm floor
  int deltas_left_out = 0;      // by the robust rule (direction, Krum)
  double truncation_error = 0;  // svd
};

struct SimulationResult {
  std::string aggregation;  // canonical rule
  double initial_loss = 0;  // validation loss of version 0
  std::vector<SimulatedRound> rounds;
  std::vector<int> hostile_workers;
  std::vector<size_t> records_per_worker;
};

[[nodiscard]] absl::StatusOr<SimulationResult> RunSimulation(
    const SimulationOptions& options);

// A table of the rounds, for people.
std::string FormatSimulation(const SimulationResult& result);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_SIMULATION_H_
