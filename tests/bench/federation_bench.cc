// Federated aggregation under honest and hostile volunteers, on the demo task
// (tests/testing/demo_task.h) with 10 simulated workers and the real trainer
// (coordinator/simulation.h). Prints three tables:
//   1. exact strategies (fedavg, ffa, svd), IID and non-IID (Dirichlet), final
//      validation loss against a centralized run on the same data and total
//      steps;
//   2. robust rules with 30% hostile workers, each attack, final validation
//      loss against the honest-only run (hostile workers absent), for each
//      of --attack_seeds (which workers are hostile, data order and
//      initialization all change with the seed; the attacks' effect varies
//      with it more than anything else here), worst ratio and range;
//   3. the rule with the smallest worst case under attack among those that
//      cost nothing measurable on honest runs: the default for jobs
//      submitted without --aggregation.
// Printed, never timed by ctest. Runs simulations two at a time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "coordinator/simulation.h"
#include "lora/compute_device.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/temp_dir.h"

ABSL_FLAG(int32_t, rounds, 14, "federated rounds");
ABSL_FLAG(int32_t, steps, 20, "optimizer steps per unit");
ABSL_FLAG(int32_t, workers, 10, "simulated workers");
ABSL_FLAG(double, alpha, 0.3, "Dirichlet alpha of the non-IID split");
ABSL_FLAG(double, hostile, 0.3, "fraction of hostile workers");
ABSL_FLAG(int32_t, parallel, 2, "simulations run at once");
ABSL_FLAG(std::string, candidates,
          "fedavg+clip:2+median,fedavg+clip:2+trimmed_mean:0.3,"
          "svd+clip:2+krum,svd+clip:2,svd+clip:2+centered_clip:1,"
          "svd+clip:2+direction,svd+clip:2+direction+centered_clip:1",
          "robust rules compared under attack (comma-separated)");
ABSL_FLAG(uint64_t, seed, 7, "training seed of the honest runs");
ABSL_FLAG(std::string, attack_seeds, "7,11,23",
          "training seeds of the attack runs (comma-separated)");

namespace openforce::coordinator {
namespace {

struct Run {
  std::string rule;
  double alpha = 0;
  Attack attack = Attack::kNone;
  uint64_t seed = 0;
  bool centralized = false;
  SimulationResult result;
  std::string error;
};

Run MakeRun(std::string rule, double alpha, Attack attack,
            bool centralized = false, uint64_t seed = 0) {
  Run run;
  run.rule = std::move(rule);
  run.alpha = alpha;
  run.attack = attack;
  run.centralized = centralized;
  run.seed = seed != 0 ? seed : absl::GetFlag(FLAGS_seed);
  return run;
}

double Final(const Run& run) {
  return run.result.rounds.empty() ? NAN
                                   : run.result.rounds.back().validation_loss;
}

void RunAll(const testing::DemoTaskFiles& task, std::vector<Run>* runs) {
  std::mutex mu;
  size_t next = 0;
  auto work = [&] {
    while (true) {
      size_t index;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (next == runs->size()) return;
        index = next++;
      }
      Run& run = (*runs)[index];
      SimulationOptions options;
      options.model_dir = task.model_dir;
      options.dataset_path = task.train_path;
      options.validation_path = task.held_out_path;
      options.lora.set_rank(8);
      options.lora.set_alpha(16);
      for (const char* target : {"q_proj", "k_proj", "v_proj", "o_proj",
                                 "gate_proj", "up_proj", "down_proj"}) {
        options.lora.add_target_modules(target);
      }
      options.training.set_learning_rate(1e-2);
      options.training.set_steps_per_shard(absl::GetFlag(FLAGS_steps));
      options.training.set_batch_size(16);
      options.training.set_sequence_length(12);
      options.training.set_warmup_steps(2);
      options.training.set_max_grad_norm(1.0);
      options.training.set_seed(run.seed);
      options.workers = absl::GetFlag(FLAGS_workers);
      options.rounds = absl::GetFlag(FLAGS_rounds);
      options.dirichlet_alpha = run.alpha;
      options.attack = run.attack;
      options.hostile_fraction =
          run.attack == Attack::kNone ? 0 : absl::GetFlag(FLAGS_hostile);
      options.max_delta_norm = 50;  // the demo job's bound
      options.aggregation = run.rule;
      options.centralized = run.centralized;
      // One libtorch thread each; OpenMP keeps the count per thread, so each
      // simulation thread sets its own.
      options.threads = 1;
      absl::StatusOr<SimulationResult> result = RunSimulation(options);
      std::lock_guard<std::mutex> lock(mu);
      if (result.ok()) {
        run.result = *std::move(result);
      } else {
        run.error = std::string(result.status().message());
      }
      std::fprintf(
          stderr, "  %-34s alpha %-4g %-16s seed %-3d %s\n", run.rule.c_str(),
          run.alpha, std::string(AttackName(run.attack)).c_str(),
          static_cast<int>(run.seed),
          run.error.empty() ? absl::StrFormat("final %.4f", Final(run)).c_str()
                            : run.error.c_str());
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_parallel)); ++i)
    threads.emplace_back(work);
  for (std::thread& thread : threads) thread.join();
}

int Main() {
  if (!lora::SetCpuThreads(1).ok()) return 1;
  testing::TempDir dir;
  const testing::DemoTaskFiles task = testing::WriteDemoTask(dir.path());
  const double alpha = absl::GetFlag(FLAGS_alpha);
  const std::vector<std::string> candidates =
      absl::StrSplit(absl::GetFlag(FLAGS_candidates), ',', absl::SkipEmpty());
  const std::vector<Attack> attacks = {Attack::kScaleToBound, Attack::kSignFlip,
                                       Attack::kNoise, Attack::kZero,
                                       Attack::kClaimedSamples};
  std::vector<uint64_t> seeds;
  for (absl::string_view text : absl::StrSplit(
           absl::GetFlag(FLAGS_attack_seeds), ',', absl::SkipEmpty())) {
    uint64_t seed = 0;
    if (!absl::SimpleAtoi(text, &seed) || seed == 0) {
      std::fprintf(stderr, "--attack_seeds: '%s' is not a positive number\n",
                   std::string(text).c_str());
      return 1;
    }
    seeds.push_back(seed);
  }
  if (seeds.empty()) seeds.push_back(absl::GetFlag(FLAGS_seed));
  // Zero deltas and false sample counts are refused at intake whatever the
  // seed: one seed shows it.
  auto seeds_for = [&](Attack attack) {
    return attack == Attack::kZero || attack == Attack::kClaimedSamples
               ? std::vector<uint64_t>{seeds.front()}
               : seeds;
  };

  std::vector<Run> runs;
  for (double split : {0.0, alpha}) {
    for (const char* exact : {"fedavg", "ffa", "svd"})
      runs.push_back(MakeRun(exact, split, Attack::kNone,
                             split == 0.0 && std::string(exact) == "fedavg"));
  }
  std::vector<std::string> rules = candidates;
  rules.insert(rules.begin(), "fedavg");  // no defence, for contrast
  for (const std::string& rule : rules) {
    runs.push_back(MakeRun(rule, 0.0, Attack::kNone));
    if (rule != "fedavg") runs.push_back(MakeRun(rule, alpha, Attack::kNone));
    for (uint64_t seed : seeds)
      runs.push_back(MakeRun(rule, 0.0, Attack::kAbsent, false, seed));
    for (Attack attack : attacks) {
      for (uint64_t seed : seeds_for(attack))
        runs.push_back(MakeRun(rule, 0.0, attack, false, seed));
    }
  }
  std::printf(
      "federation_bench: demo task, %d workers, %d rounds x %d steps, LoRA r8 "
      "on every projection, %d simulations\n",
      absl::GetFlag(FLAGS_workers), absl::GetFlag(FLAGS_rounds),
      absl::GetFlag(FLAGS_steps), static_cast<int>(runs.size()));
  std::fflush(stdout);
  RunAll(task, &runs);
  auto find = [&](const std::string& rule, double split, Attack attack,
                  uint64_t seed = 0) -> const Run* {
    if (seed == 0) seed = absl::GetFlag(FLAGS_seed);
    for (const Run& run : runs) {
      if (run.rule == rule && run.alpha == split && run.attack == attack &&
          run.seed == seed)
        return &run;
    }
    return nullptr;
  };
  for (const Run& run : runs) {
    if (!run.error.empty()) {
      std::printf("FAILED %s %s: %s\n", run.rule.c_str(),
                  std::string(AttackName(run.attack)).c_str(),
                  run.error.c_str());
      return 1;
    }
  }

  const Run* central_run = find("fedavg", 0.0, Attack::kNone);
  const double central = central_run->result.rounds.back().centralized_loss;
  std::printf("\n1. Exact strategies, no attack (initial loss %.4f)\n",
              central_run->result.initial_loss);
  std::printf(
      "| split | strategy | final validation loss | vs centralized "
      "%.4f | goal |\n|---|---|---|---|---|\n",
      central);
  for (double split : {0.0, alpha}) {
    for (const char* exact : {"fedavg", "ffa", "svd"}) {
      const double loss = Final(*find(exact, split, Attack::kNone));
      const double goal = split == 0.0 ? 1.02 : 1.05;
      std::printf("| %s | %s | %.4f | %.3fx | %s |\n",
                  split == 0.0
                      ? "IID"
                      : absl::StrFormat("Dirichlet %.2g", split).c_str(),
                  exact, loss, loss / central,
                  loss / central <= goal ? "met" : "missed");
    }
  }

  std::printf(
      "\n2. %.0f%% hostile workers, IID: worst ratio of the final validation "
      "loss to the honest-only run over seeds %s (range)\n",
      100 * absl::GetFlag(FLAGS_hostile),
      absl::GetFlag(FLAGS_attack_seeds).c_str());
  std::printf("| rule | all honest | non-IID honest | honest-only |");
  for (Attack attack : attacks)
    std::printf(" %s |", std::string(AttackName(attack)).c_str());
  std::printf(" worst |\n|---|---|---|---|");
  for (size_t i = 0; i <= attacks.size(); ++i) std::printf("---|");
  std::printf("\n");
  std::map<std::string, double> worst_of;
  for (const std::string& rule : rules) {
    const Run* non_iid = find(rule, alpha, Attack::kNone);
    double honest_low = INFINITY, honest_high = 0;
    for (uint64_t seed : seeds) {
      const double loss = Final(*find(rule, 0.0, Attack::kAbsent, seed));
      honest_low = std::min(honest_low, loss);
      honest_high = std::max(honest_high, loss);
    }
    std::printf("| %s | %.4f | %s | %.4f-%.4f |", rule.c_str(),
                Final(*find(rule, 0.0, Attack::kNone)),
                non_iid == nullptr
                    ? "-"
                    : absl::StrFormat("%.4f", Final(*non_iid)).c_str(),
                honest_low, honest_high);
    double worst = 0;
    for (Attack attack : attacks) {
      double low = INFINITY, high = 0;
      for (uint64_t seed : seeds_for(attack)) {
        const double ratio = Final(*find(rule, 0.0, attack, seed)) /
                             Final(*find(rule, 0.0, Attack::kAbsent, seed));
        low = std::min(low, ratio);
        high = std::max(high, ratio);
      }
      worst = std::max(worst, high);
      if (low == high) {
        std::printf(" %.3fx |", high);
      } else {
        std::printf(" %.3fx (%.3f-%.3f) |", high, low, high);
      }
    }
    worst_of[rule] = worst;
    std::printf(" %.3fx |\n", worst);
  }

  // The default: no measurable cost when everyone is honest (within 2% of
  // the best exact strategy's honest run, IID and non-IID), then the
  // smallest worst case.
  double best_honest = INFINITY, best_non_iid = INFINITY;
  for (const char* exact : {"fedavg", "ffa", "svd"}) {
    best_honest =
        std::min(best_honest, Final(*find(exact, 0.0, Attack::kNone)));
    best_non_iid =
        std::min(best_non_iid, Final(*find(exact, alpha, Attack::kNone)));
  }
  std::string chosen;
  for (const std::string& rule : candidates) {
    const double honest = Final(*find(rule, 0.0, Attack::kNone));
    const double non_iid = Final(*find(rule, alpha, Attack::kNone));
    const bool free =
        honest <= 1.02 * best_honest && non_iid <= 1.02 * best_non_iid;
    if (free && (chosen.empty() || worst_of[rule] < worst_of[chosen]))
      chosen = rule;
  }
  std::printf("\n3. Default: ");
  if (chosen.empty()) {
    std::printf(
        "no candidate is within 2%% of the best honest runs (%.4f IID, %.4f "
        "non-IID)\n",
        best_honest, best_non_iid);
  } else {
    std::printf(
        "%s (honest %.4f vs best exact %.4f, non-IID %.4f vs %.4f; worst "
        "attack %.3fx of honest-only; goal <= 1.05x: %s)\n",
        chosen.c_str(), Final(*find(chosen, 0.0, Attack::kNone)), best_honest,
        Final(*find(chosen, alpha, Attack::kNone)), best_non_iid,
        worst_of[chosen], worst_of[chosen] <= 1.05 ? "met" : "missed");
  }
  return 0;
}

}  // namespace
}  // namespace openforce::coordinator

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return openforce::coordinator::Main();
}
