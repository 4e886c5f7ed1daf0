// LoRA trainer; see trainer.h.
#include "lora/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>
// clip_grad.h uses torch::Tensor without including its declaration.
#include <torch/nn/utils/clip_grad.h>
#include <torch/types.h>

#include <cmath>
#include <exception>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "lora/safetensors.h"

namespace openforce::lora {

struct Trainer::State {
  std::vector<at::Tensor> parameters;
  std::vector<std::string> names;  // PEFT keys, same order
  std::unique_ptr<torch::optim::AdamW> optimizer;
  at::Generator dropout_generator;
};

namespace {

constexpr char kStateFile[] = "trainer_state.json";
constexpr char kOptimizerFile[] = "optimizer.safetensors";

// Causal-LM loss summed over label tokens, and how many there were.
std::pair<at::Tensor, int64_t> SummedLoss(const at::Tensor& logits,
                                          const at::Tensor& labels) {
  const int64_t vocab = logits.size(-1);
  at::Tensor shifted_logits =
      logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, vocab});
  at::Tensor shifted_labels =
      labels.narrow(1, 1, labels.size(1) - 1).reshape({-1});
  const int64_t count = shifted_labels.ne(kIgnoreLabel).sum().item<int64_t>();
  at::Tensor loss = at::cross_entropy_loss(shifted_logits, shifted_labels, {},
                                           at::Reduction::Sum, kIgnoreLabel);
  return {loss, count};
}

std::pair<at::Tensor, at::Tensor> Collate(const std::vector<Example>& data,
                                          const std::vector<size_t>& indices,
                                          const at::Device& device) {
  std::vector<at::Tensor> ids, labels;
  for (size_t index : indices) {
    ids.push_back(at::tensor(data[index].input_ids, at::kLong));
    labels.push_back(at::tensor(data[index].labels, at::kLong));
  }
  return {at::stack(ids).to(device), at::stack(labels).to(device)};
}

std::string OptimizerStateKey(const at::Tensor& parameter) {
  return c10::guts::to_string(parameter.unsafeGetTensorImpl());
}

}  // namespace

double ScheduledLearningRate(const TrainingOptions& options, int64_t step) {
  if (options.warmup_steps > 0 && step < options.warmup_steps) {
    return options.learning_rate * static_cast<double>(step + 1) /
           static_cast<double>(options.warmup_steps);
  }
  const double decay_steps = static_cast<double>(
      std::max<int64_t>(1, options.max_steps - options.warmup_steps));
  const double progress = std::min(
      1.0, static_cast<double>(step - options.warmup_steps) / decay_steps);
  return options.learning_rate * 0.5 * (1.0 + std::cos(M_PI * progress));
}

Trainer::Trainer(const LlamaModel* model, LoraAdapter* adapter,
                 std::vector<Example> data, const TrainingOptions& options)
    : model_(model),
      adapter_(adapter),
      data_(std::move(data)),
      options_(options) {}

Trainer::~Trainer() = default;

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(
    const LlamaModel* model, LoraAdapter* adapter, std::vector<Example> data,
    const TrainingOptions& options) {
  if (data.empty()) return absl::InvalidArgumentError("no training examples");
  if (options.batch_size <= 0 || options.gradient_accumulation <= 0 ||
      options.max_steps <= 0) {
    return absl::InvalidArgumentError(
        "batch size, gradient accumulation and max steps must be positive");
  }
  if (!(options.learning_rate > 0) || options.max_grad_norm < 0 ||
      options.warmup_steps < 0) {
    return absl::InvalidArgumentError(
        "learning rate must be positive; max_grad_norm and warmup_steps not "
        "negative");
  }
  const size_t length = data.front().input_ids.size();
  for (const Example& example : data) {
    if (example.input_ids.size() != length || example.labels.size() != length) {
      return absl::InvalidArgumentError(
          "training examples must all have the same length");
    }
    for (int64_t id : example.input_ids) {
      if (id < 0 || id >= model->config().vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("training token ", id, " is outside the vocabulary"));
      }
    }
  }
  std::unique_ptr<Trainer> trainer(
      new Trainer(model, adapter, std::move(data), options));
  try {
    trainer->state_ = std::make_unique<State>();
    State& state = *trainer->state_;
    for (auto& [name, tensor] : adapter->NamedTensors()) {
      // FFA-LoRA: A stays as the job's version 0 made it.
      if (options.freeze_lora_a && absl::StrContains(name, ".lora_A.")) {
        tensor.set_requires_grad(false);
        continue;
      }
      tensor.set_requires_grad(true);
      state.parameters.push_back(tensor);
      state.names.push_back(name);
    }
    torch::optim::AdamWOptions adam(options.learning_rate);
    adam.betas(std::make_tuple(options.adam_beta1, options.adam_beta2));
    adam.eps(options.adam_epsilon);
    adam.weight_decay(options.weight_decay);
    state.optimizer =
        std::make_unique<torch::optim::AdamW>(state.parameters, adam);
    state.dropout_generator =
        at::detail::createCPUGenerator(options.seed ^ 0x5eedull);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("set up training: ", e.what()));
  }
  trainer->ShuffleEpoch();
  return trainer;
}

void Trainer::ShuffleEpoch() {
  // Fisher-Yates over std::mt19937_64, whose output the standard fixes, so the
  // data order is the same on every platform for a seed and epoch.
  order_.resize(data_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  std::mt19937_64 rng(options_.seed * 1000003ull +
                      static_cast<uint64_t>(epoch_));
  for (size_t i = order_.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(order_[i - 1], order_[j]);
  }
  cursor_ = 0;
}

std::vector<size_t> Trainer::NextBatch() {
  std::vector<size_t> batch;
  while (static_cast<int64_t>(batch.size()) < options_.batch_size) {
    if (cursor_ == order_.size()) {
      ++epoch_;
      ShuffleEpoch();
    }
    batch.push_back(order_[cursor_++]);
  }
  return batch;
}

absl::StatusOr<StepMetrics> Trainer::Step() {
  StepMetrics metrics;
  try {
    State& state = *state_;
    const double lr = ScheduledLearningRate(options_, step_);
    for (auto& group : state.optimizer->param_groups())
      group.options().set_lr(lr);
    state.optimizer->zero_grad();

    // Every micro-batch's loss is divided by the window's total label count, so
    // the accumulated gradient is that of the mean over all label tokens of the
    // step.
    std::vector<std::pair<at::Tensor, at::Tensor>> batches;
    int64_t window_tokens = 0;
    for (int64_t micro = 0; micro < options_.gradient_accumulation; ++micro) {
      batches.push_back(Collate(data_, NextBatch(), model_->device()));
      window_tokens +=
          batches.back()
              .second.narrow(1, 1, batches.back().second.size(1) - 1)
              .ne(kIgnoreLabel)
              .sum()
              .item<int64_t>();
      metrics.sequences += options_.batch_size;
    }
    double loss_sum = 0;
    for (auto& [ids, labels] : batches) {
      ForwardOptions forward;
      forward.adapter = adapter_;
      forward.training = true;
      forward.dropout_generator = state.dropout_generator;
      forward.gradient_checkpointing = options_.gradient_checkpointing;
      at::Tensor logits = model_->Forward(ids, forward);
      auto [loss, count] = SummedLoss(logits, labels);
      loss_sum += loss.item<double>();
      if (window_tokens > 0)
        (loss / static_cast<double>(window_tokens)).backward();
    }
    metrics.tokens = window_tokens;
    metrics.loss =
        window_tokens > 0 ? loss_sum / static_cast<double>(window_tokens) : 0.0;
    if (options_.max_grad_norm > 0) {
      metrics.grad_norm = torch::nn::utils::clip_grad_norm_(
          state.parameters, options_.max_grad_norm);
    } else {
      double squared = 0;
      for (const at::Tensor& p : state.parameters) {
        if (p.grad().defined()) squared += p.grad().pow(2).sum().item<double>();
      }
      metrics.grad_norm = std::sqrt(squared);
    }
    if (!std::isfinite(metrics.loss) || !std::isfinite(metrics.grad_norm)) {
      return absl::InternalError(
          absl::StrCat("training diverged at step ", step_ + 1, ": loss ",
                       metrics.loss, ", gradient norm ", metrics.grad_norm));
    }
    state.optimizer->step();
    metrics.learning_rate = lr;
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("training step ", step_ + 1, ": ", e.what()));
  }
  metrics.step = ++step_;
  return metrics;
}

absl::Status Trainer::SaveCheckpoint(const std::string& dir) const {
  const std::filesystem::path target(dir);
  const std::string staging = dir + ".partial";
  const std::string previous = dir + ".previous";
  std::error_code error;
  std::filesystem::remove_all(staging, error);
  RETURN_IF_ERROR(MakeDirectories(staging));
  RETURN_IF_ERROR(adapter_->Save(staging + "/adapter"));

  nlohmann::json adam_steps = nlohmann::json::object();
  std::vector<std::pair<std::string, at::Tensor>> moments;
  try {
    auto& optimizer_state = state_->optimizer->state();
    for (size_t i = 0; i < state_->parameters.size(); ++i) {
      auto it = optimizer_state.find(OptimizerStateKey(state_->parameters[i]));
      if (it == optimizer_state.end()) continue;  // no step taken yet
      auto& adam = static_cast<torch::optim::AdamWParamState&>(*it->second);
      moments.emplace_back(state_->names[i] + ".exp_avg", adam.exp_avg());
      moments.emplace_back(state_->names[i] + ".exp_avg_sq", adam.exp_avg_sq());
      adam_steps[state_->names[i]] = adam.step();
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("save optimizer state: ", e.what()));
  }
  RETURN_IF_ERROR(WriteSafetensors(staging + "/" + kOptimizerFile, moments));

  at::Tensor rng = state_->dropout_generator.get_state();
  nlohmann::json json = {
      {"step", step_},
      {"epoch", epoch_},
      {"cursor", cursor_},
      {"seed", options_.seed},
      {"examples", data_.size()},
      {"adam_steps", adam_steps},
      {"dropout_rng",
       absl::BytesToHexString(absl::string_view(
           static_cast<const char*>(rng.data_ptr()), rng.numel()))},
  };
  RETURN_IF_ERROR(
      WriteFileAtomically(staging + "/" + kStateFile, json.dump(2)));
  RETURN_IF_ERROR(SyncDirectory(staging));

  // Swap directories: the old checkpoint survives until the new one is in
  // place.
  std::filesystem::remove_all(previous, error);
  if (std::filesystem::exists(target)) {
    std::filesystem::rename(target, previous, error);
    if (error)
      return absl::InternalError(
          absl::StrCat("move aside ", dir, ": ", error.message()));
  }
  std::filesystem::rename(staging, target, error);
  if (error)
    return absl::InternalError(
        absl::StrCat("install ", dir, ": ", error.message()));
  const std::string parent =
      target.has_parent_path() ? target.parent_path().string() : ".";
  RETURN_IF_ERROR(SyncDirectory(parent));
  std::filesystem::remove_all(previous, error);
  return absl::OkStatus();
}

absl::Status Trainer::RestoreCheckpoint(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(dir + "/" + kStateFile));
  nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("step") ||
      !json.contains("dropout_rng")) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/", kStateFile, " is malformed"));
  }
  if (json.value("seed", uint64_t{0}) != options_.seed ||
      json.value("examples", size_t{0}) != data_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", dir,
                     " was made with another seed or data set; cannot resume"));
  }
  ASSIGN_OR_RETURN(LoraAdapter saved,
                   LoraAdapter::Load(dir + "/adapter", model_->config(),
                                     model_->device().str()));
  ASSIGN_OR_RETURN(auto moments,
                   SafetensorsFile::Open(dir + "/" + kOptimizerFile));
  try {
    at::NoGradGuard no_grad;
    const std::vector<std::pair<std::string, at::Tensor>> saved_tensors =
        saved.NamedTensors();
    if (saved_tensors.size() != adapter_->NamedTensors().size()) {
      return absl::FailedPreconditionError(
          "checkpoint adapter has other target modules");
    }
    std::map<std::string, at::Tensor> saved_by_name(saved_tensors.begin(),
                                                    saved_tensors.end());
    auto& optimizer_state = state_->optimizer->state();
    for (size_t i = 0; i < state_->parameters.size(); ++i) {
      auto saved_tensor = saved_by_name.find(state_->names[i]);
      if (saved_tensor == saved_by_name.end()) {
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint adapter lacks tensor ", state_->names[i]));
      }
      state_->parameters[i].copy_(saved_tensor->second);
      const std::string& name = state_->names[i];
      optimizer_state.erase(OptimizerStateKey(state_->parameters[i]));
      if (!json["adam_steps"].contains(name)) continue;
      auto adam = std::make_unique<torch::optim::AdamWParamState>();
      adam->step(json["adam_steps"][name].get<int64_t>());
      ASSIGN_OR_RETURN(at::Tensor exp_avg, moments->Tensor(name + ".exp_avg"));
      ASSIGN_OR_RETURN(at::Tensor exp_avg_sq,
                       moments->Tensor(name + ".exp_avg_sq"));
      adam->exp_avg(exp_avg.to(state_->parameters[i].device()).clone());
      adam->exp_avg_sq(exp_avg_sq.to(state_->parameters[i].device()).clone());
      optimizer_state[OptimizerStateKey(state_->parameters[i])] =
          std::move(adam);
    }
    std::string rng_bytes =
        absl::HexStringToBytes(json["dropout_rng"].get<std::string>());
    at::Tensor rng =
        at::empty({static_cast<int64_t>(rng_bytes.size())}, at::kByte);
    std::memcpy(rng.data_ptr(), rng_bytes.data(), rng_bytes.size());
    state_->dropout_generator.set_state(rng);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("restore checkpoint ", dir, ": ", e.what()));
  }
  step_ = json["step"].get<int64_t>();
  epoch_ = json["epoch"].get<int64_t>();
  ShuffleEpoch();
  cursor_ = json["cursor"].get<size_t>();
  return absl::OkStatus();
}

absl::StatusOr<double> EvaluateLoss(const LlamaModel& model,
                                    const LoraAdapter* adapter,
                                    const std::vector<Example>& data,
                                    int64_t batch_size) {
  if (data.empty() || batch_size <= 0) {
    return absl::InvalidArgumentError(
        "evaluation needs examples and a positive batch size");
  }
  double total = 0;
  int64_t tokens = 0;
  try {
    at::NoGradGuard no_grad;
    for (size_t start = 0; start < data.size();
         start += static_cast<size_t>(batch_size)) {
      std::vector<size_t> indices;
      for (size_t i = start; i < std::min(data.size(), start + batch_size);
           ++i) {
        indices.push_back(i);
      }
      auto [ids, labels] = Collate(data, indices, model.device());
      ForwardOptions forward;
      forward.adapter = adapter;
      auto [loss, count] = SummedLoss(model.Forward(ids, forward), labels);
      total += loss.item<double>();
      tokens += count;
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("evaluate: ", e.what()));
  }
  if (tokens == 0)
    return absl::InvalidArgumentError("evaluation data has no label tokens");
  return total / static_cast<double>(tokens);
}

}  // namespace openforce::lora
