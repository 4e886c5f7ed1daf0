// A federated job in one process; see simulation.h.
#include "coordinator/simulation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "coordinator/internal/data_split.h"
#include "coordinator/internal/planning.h"
#include "lora/aggregation_rule.h"
#include "lora/chat_template.h"
#include "lora/compute_device.h"
#include "lora/dataset.h"
#include "lora/federated_aggregation.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/tokenizer.h"
#include "lora/trainer.h"
#include "proto/lora_convert.h"

namespace openforce::coordinator {
namespace {

constexpr double kBoundMargin = 0.99;  // "just under" the bound

constexpr std::pair<Attack, absl::string_view> kAttackNames[] = {
    {Attack::kNone, "none"},
    {Attack::kAbsent, "absent"},
    {Attack::kScaleToBound, "scale"},
    {Attack::kSignFlip, "sign_flip"},
    {Attack::kNoise, "noise"},
    {Attack::kZero, "zero"},
    {Attack::kClaimedSamples, "claimed_samples"},
};

uint64_t MixSeed(uint64_t seed, uint64_t a, uint64_t b) {
  // splitmix64 over the three values: distinct, well-spread unit seeds.
  uint64_t z = seed ^ (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xbf58476d1ce4e5b9ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// What a Dirichlet split groups by: a prompt/completion record's completion,
// a conversation's text, or a text record's first word.
std::string ClassLabel(const lora::TrainingRecord& record) {
  if (!record.conversation.empty()) return record.conversation;
  if (!record.prompt.empty()) return record.completion;
  return record.completion.substr(0, record.completion.find(' '));
}

double Norm(const lora::AdapterTensors& tensors) {
  double squared = 0;
  for (const auto& [name, tensor] : tensors)
    squared += tensor.to(at::kDouble).pow(2).sum().item<double>();
  return std::sqrt(squared);
}

void Scale(lora::AdapterTensors* tensors, double factor) {
  for (auto& [name, tensor] : *tensors) tensor.mul_(factor);
}

lora::AdapterTensors Snapshot(const lora::LoraAdapter& adapter) {
  lora::AdapterTensors out;
  for (const auto& [name, tensor] : adapter.NamedTensors())
    out[name] = tensor.detach().to(at::kFloat).clone();
  return out;
}

void Assign(const lora::AdapterTensors& values, lora::LoraAdapter* adapter) {
  at::NoGradGuard no_grad;
  for (auto& [name, tensor] : adapter->NamedTensors())
    tensor.copy_(values.at(name));
}

class Simulation {
 public:
  explicit Simulation(const SimulationOptions& options) : options_(options) {}

  absl::StatusOr<SimulationResult> Run();

 private:
  void Log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }
  absl::Status Prepare();
  // One worker's delta for the round, after its attack (if hostile);
  // nullopt when it delivers nothing.
  // `parent`: the current version's tensors, taken once per round.
  absl::StatusOr<std::optional<lora::AdapterTensors>> WorkerDelta(
      const lora::AdapterTensors& parent, int round, int worker,
      double* train_loss);
  absl::StatusOr<double> Evaluate(const lora::LoraAdapter& adapter) const;

  const SimulationOptions& options_;
  lora::AggregationRule rule_;
  lora::TrainingOptions training_;
  lora::LoraConfig lora_;
  std::unique_ptr<lora::LlamaModel> model_;
  std::vector<lora::Example> validation_;
  std::vector<lora::Example> all_training_;
  std::vector<std::vector<lora::Example>> shards_;
  std::vector<bool> hostile_;
  std::optional<lora::LoraAdapter> current_;
  SimulationResult result_;
};

absl::Status Simulation::Prepare() {
  if (options_.workers < 1 || options_.workers > 1000)
    return absl::InvalidArgumentError("workers must be in 1..1000");
  if (options_.rounds < 1 || options_.rounds > 1000)
    return absl::InvalidArgumentError("rounds must be in 1..1000");
  if (!(options_.hostile_fraction >= 0 && options_.hostile_fraction < 1))
    return absl::InvalidArgumentError("the hostile fraction must be in [0, 1)");
  if (!(options_.max_delta_norm > 0))
    return absl::InvalidArgumentError("the delta norm bound must be > 0");
  if (options_.validation_path.empty() &&
      !(options_.validation_fraction > 0 && options_.validation_fraction < 1)) {
    return absl::InvalidArgumentError(
        "the validation fraction must be in (0, 1) without a validation file");
  }
  ASSIGN_OR_RETURN(rule_, lora::ParseAggregationRule(options_.aggregation));
  result_.aggregation = lora::FormatAggregationRule(rule_);
  ASSIGN_OR_RETURN(training_, TrainingOptionsFromProto(options_.training));
  training_.freeze_lora_a = rule_.b_only();
  ASSIGN_OR_RETURN(lora_, LoraConfigFromProto(options_.lora));
  if (options_.threads < 0)
    return absl::InvalidArgumentError("threads must be >= 0");
  if (options_.threads > 0)
    RETURN_IF_ERROR(lora::SetCpuThreads(options_.threads));

  lora::LoadOptions load;
  if (options_.training.compute_dtype() == v1::DTYPE_BFLOAT16)
    load.dtype = at::kBFloat16;
  // Checked by TrainingOptionsFromProto before this point.
  load.quantization =
      static_cast<WeightFormat>(options_.training.base_format());
  ASSIGN_OR_RETURN(model_, lora::LlamaModel::Load(options_.model_dir, load));
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Tokenizer> tokenizer,
                   lora::LoadTokenizer(options_.model_dir));
  std::unique_ptr<lora::ChatTemplate> chat;
  absl::StatusOr<lora::ChatTemplate> loaded =
      lora::ChatTemplate::Load(options_.model_dir);
  if (loaded.ok()) {
    chat = std::make_unique<lora::ChatTemplate>(*std::move(loaded));
  } else if (!absl::IsNotFound(loaded.status())) {
    return loaded.status();
  }
  lora::TokenizeOptions tokenize;
  tokenize.sequence_length = options_.training.sequence_length();
  tokenize.chat_template = chat.get();

  ASSIGN_OR_RETURN(std::vector<lora::TrainingRecord> records,
                   lora::ReadJsonl(options_.dataset_path));
  std::vector<lora::TrainingRecord> validation;
  const uint64_t seed = options_.training.seed();
  if (!options_.validation_path.empty()) {
    ASSIGN_OR_RETURN(validation, lora::ReadJsonl(options_.validation_path));
  } else {
    // A seeded draw held out of training, as a job's validation split is
    // never leased for training.
    std::mt19937_64 rng(MixSeed(seed, 0x7a1, 0));
    std::shuffle(records.begin(), records.end(), rng);
    const size_t held = std::max<size_t>(
        1, static_cast<size_t>(options_.validation_fraction *
                               static_cast<double>(records.size())));
    if (held >= records.size()) {
      return absl::InvalidArgumentError(
          "the dataset is too small to hold out a validation split");
    }
    validation.assign(records.end() - static_cast<std::ptrdiff_t>(held),
                      records.end());
    records.resize(records.size() - held);
  }
  ASSIGN_OR_RETURN(validation_,
                   lora::TokenizeRecords(validation, *tokenizer, tokenize));
  ASSIGN_OR_RETURN(all_training_,
                   lora::TokenizeRecords(records, *tokenizer, tokenize));
  std::vector<std::string> labels;
  for (const lora::TrainingRecord& record : records)
    labels.push_back(ClassLabel(record));
  ASSIGN_OR_RETURN(std::vector<std::vector<size_t>> split,
                   internal::SplitRecords(
                       labels, static_cast<size_t>(options_.workers),
                       options_.dirichlet_alpha, MixSeed(seed, 0x5b1, 0)));
  for (const std::vector<size_t>& indices : split) {
    std::vector<lora::Example> shard;
    for (size_t i : indices) shard.push_back(all_training_[i]);
    shards_.push_back(std::move(shard));
    result_.records_per_worker.push_back(indices.size());
  }
  hostile_.assign(options_.workers, false);
  if (options_.attack != Attack::kNone) {
    std::vector<int> order(options_.workers);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(MixSeed(seed, 0x4057, 0));
    std::shuffle(order.begin(), order.end(), rng);
    const int count = static_cast<int>(
        std::lround(options_.hostile_fraction * options_.workers));
    for (int i = 0; i < count; ++i) {
      hostile_[order[i]] = true;
      result_.hostile_workers.push_back(order[i]);
    }
    std::sort(result_.hostile_workers.begin(), result_.hostile_workers.end());
  }
  ASSIGN_OR_RETURN(lora::LoraAdapter initial,
                   lora::LoraAdapter::Create(model_->config(), lora_, seed));
  current_ = std::move(initial);
  return absl::OkStatus();
}

absl::StatusOr<double> Simulation::Evaluate(
    const lora::LoraAdapter& adapter) const {
  return lora::EvaluateLoss(*model_, &adapter, validation_,
                            std::max<int64_t>(1, training_.batch_size));
}

absl::StatusOr<std::optional<lora::AdapterTensors>> Simulation::WorkerDelta(
    const lora::AdapterTensors& parent, int round, int worker,
    double* train_loss) {
  const bool hostile = hostile_[worker];
  const Attack attack = hostile ? options_.attack : Attack::kNone;
  if (attack == Attack::kAbsent) return std::nullopt;
  lora::AdapterTensors delta;
  if (attack == Attack::kZero || attack == Attack::kNoise) {
    // Nothing trained: zeros, or noise of the largest norm the bound admits.
    at::Generator generator = at::detail::createCPUGenerator(
        MixSeed(options_.training.seed(), round, 0x4e0 + worker));
    for (const auto& [name, tensor] : parent) {
      if (rule_.b_only() && lora::IsLoraAKey(name)) continue;
      delta[name] = attack == Attack::kZero
                        ? at::zeros_like(tensor)
                        : at::randn(tensor.sizes(), generator, at::kFloat);
    }
    if (attack == Attack::kNoise)
      Scale(&delta, kBoundMargin * options_.max_delta_norm / Norm(delta));
    *train_loss = std::numeric_limits<double>::quiet_NaN();
    return delta;
  }
  lora::LoraAdapter local = current_->Clone();
  lora::TrainingOptions options = training_;
  options.seed = MixSeed(options_.training.seed(), round, worker);
  ASSIGN_OR_RETURN(
      std::unique_ptr<lora::Trainer> trainer,
      lora::Trainer::Create(model_.get(), &local, shards_[worker], options));
  double loss_sum = 0;
  while (trainer->step() < options.max_steps) {
    ASSIGN_OR_RETURN(lora::StepMetrics metrics, trainer->Step());
    loss_sum += metrics.loss;
  }
  *train_loss = loss_sum / static_cast<double>(options.max_steps);
  for (auto& [name, tensor] : Snapshot(local)) {
    if (rule_.b_only() && lora::IsLoraAKey(name)) continue;
    delta[name] = tensor - parent.at(name);
  }
  switch (attack) {
    case Attack::kScaleToBound: {
      const double norm = Norm(delta);
      if (norm > 0)
        Scale(&delta, kBoundMargin * options_.max_delta_norm / norm);
      break;
    }
    case Attack::kSignFlip:
      Scale(&delta, -1.0);
      break;
    default:
      break;
  }
  return delta;
}

absl::StatusOr<SimulationResult> Simulation::Run() {
  RETURN_IF_ERROR(Prepare());
  ASSIGN_OR_RETURN(result_.initial_loss, Evaluate(*current_));
  Log(absl::StrFormat(
      "%d workers (%s), %zu validation examples; version 0 "
      "validation loss %.4f",
      options_.workers,
      options_.dirichlet_alpha > 0
          ? absl::StrCat("Dirichlet alpha ", options_.dirichlet_alpha)
          : std::string("IID"),
      validation_.size(), result_.initial_loss));
  // The centralized baseline: one trainer on all the training data for the
  // federated run's total steps, scored at the same points.
  std::optional<lora::LoraAdapter> central;
  std::unique_ptr<lora::Trainer> central_trainer;
  const int64_t steps_per_round =
      int64_t{options_.workers} * training_.max_steps;
  if (options_.centralized) {
    central = current_->Clone();
    lora::TrainingOptions options = training_;
    options.freeze_lora_a = false;
    options.max_steps = steps_per_round * options_.rounds;
    ASSIGN_OR_RETURN(
        central_trainer,
        lora::Trainer::Create(model_.get(), &*central, all_training_, options));
  }
  const bool claimed = options_.attack == Attack::kClaimedSamples;
  for (int round = 1; round <= options_.rounds; ++round) {
    SimulatedRound record;
    record.round = round;
    std::vector<lora::AdapterTensors> deltas;
    std::vector<double> weights, norms, losses;
    const lora::AdapterTensors parent = Snapshot(*current_);
    for (int worker = 0; worker < options_.workers; ++worker) {
      double loss = 0;
      ASSIGN_OR_RETURN(std::optional<lora::AdapterTensors> delta,
                       WorkerDelta(parent, round, worker, &loss));
      if (!delta.has_value()) continue;
      // The intake's checks: the norm bound and floor, and the sample count
      // the unit implies (a claim of more is refused).
      const double norm = Norm(*delta);
      if (norm > options_.max_delta_norm || norm < kDefaultMinDeltaNorm ||
          (claimed && hostile_[worker])) {
        ++record.deltas_refused;
        continue;
      }
      deltas.push_back(*std::move(delta));
      // Weights are what the coordinator knows: the shard's records.
      weights.push_back(static_cast<double>(shards_[worker].size()));
      norms.push_back(norm);
      losses.push_back(loss);
    }
    if (!norms.empty()) {
      // Round closing's floor: far below the median norm is left out.
      const double floor = kDefaultMinNormFraction * lora::Median(norms);
      for (size_t i = norms.size(); i-- > 0;) {
        if (norms[i] >= floor) continue;
        deltas.erase(deltas.begin() + static_cast<std::ptrdiff_t>(i));
        weights.erase(weights.begin() + static_cast<std::ptrdiff_t>(i));
        losses.erase(losses.begin() + static_cast<std::ptrdiff_t>(i));
        ++record.deltas_refused;
      }
    }
    if (deltas.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "round ", round, " has no delta that passed the checks"));
    }
    lora::DeltaSource source =
        [&deltas](size_t i,
                  const std::string& key) -> absl::StatusOr<at::Tensor> {
      auto it = deltas[i].find(key);
      return it == deltas[i].end() ? at::Tensor() : it->second;
    };
    lora::AggregationReport report;
    ASSIGN_OR_RETURN(
        lora::AdapterTensors next,
        lora::AggregateAdapterDeltas(parent, source, weights, rule_, &report));
    Assign(next, &*current_);
    double loss_sum = 0, loss_weight = 0;
    for (size_t i = 0; i < deltas.size(); ++i) {
      if (!report.selected[i]) {
        ++record.deltas_left_out;
        continue;
      }
      ++record.deltas_aggregated;
      if (std::isfinite(losses[i])) {
        loss_sum += losses[i] * weights[i];
        loss_weight += weights[i];
      }
    }
    record.mean_train_loss = loss_weight > 0
                                 ? loss_sum / loss_weight
                                 : std::numeric_limits<double>::quiet_NaN();
    record.truncation_error = report.truncation_error;
    ASSIGN_OR_RETURN(record.validation_loss, Evaluate(*current_));
    record.centralized_loss = std::numeric_limits<double>::quiet_NaN();
    if (central_trainer != nullptr) {
      while (central_trainer->step() < steps_per_round * round) {
        RETURN_IF_ERROR(central_trainer->Step().status());
      }
      ASSIGN_OR_RETURN(record.centralized_loss, Evaluate(*central));
    }
    Log(absl::StrFormat(
        "round %d: validation loss %.4f (centralized %.4f), %d aggregated, %d "
        "refused, %d left out",
        round, record.validation_loss, record.centralized_loss,
        record.deltas_aggregated, record.deltas_refused,
        record.deltas_left_out));
    result_.rounds.push_back(record);
  }
  return result_;
}

}  // namespace

absl::StatusOr<Attack> ParseAttack(absl::string_view name) {
  std::vector<std::string> known;
  for (const auto& [attack, attack_name] : kAttackNames) {
    if (attack_name == name) return attack;
    known.emplace_back(attack_name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown attack '", name, "' (known: ", absl::StrJoin(known, ", "), ")"));
}

absl::string_view AttackName(Attack attack) {
  for (const auto& [value, name] : kAttackNames) {
    if (value == attack) return name;
  }
  return "?";
}

absl::StatusOr<SimulationResult> RunSimulation(
    const SimulationOptions& options) {
  try {
    Simulation simulation(options);
    return simulation.Run();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("simulation: ", e.what()));
  }
}

std::string FormatSimulation(const SimulationResult& result) {
  std::string out =
      absl::StrFormat("aggregation %s; version 0 validation loss %.4f\n",
                      result.aggregation, result.initial_loss);
  if (!result.hostile_workers.empty()) {
    absl::StrAppend(&out, "hostile workers: ",
                    absl::StrJoin(result.hostile_workers, ", "), "\n");
  }
  absl::StrAppend(&out,
                  "round  validation_loss  centralized  train_loss  "
                  "aggregated  refused  left_out  truncation_error\n");
  for (const SimulatedRound& round : result.rounds) {
    absl::StrAppendFormat(
        &out, "%5d  %15.4f  %11.4f  %10.4f  %10d  %7d  %8d  %16.3g\n",
        round.round, round.validation_loss, round.centralized_loss,
        round.mean_train_loss, round.deltas_aggregated, round.deltas_refused,
        round.deltas_left_out, round.truncation_error);
  }
  return out;
}

}  // namespace openforce::coordinator
