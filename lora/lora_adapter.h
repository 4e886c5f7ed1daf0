// LoRA adapters for the Llama projections: configuration, PEFT-compatible
// initialisation (A Kaiming-uniform, B zeros), merging into and out of base
// weights, arithmetic for federated deltas, and PEFT's file format
// (adapter_config.json plus adapter_model.safetensors with
// base_model.model.model.layers.N.<module>.lora_A.weight keys), so adapters
// PEFT wrote load here and ours load in PEFT.
#ifndef OPENFORCE_LORA_LORA_ADAPTER_H_
#define OPENFORCE_LORA_LORA_ADAPTER_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lora/checkpoint.h"
#include "lora/llama_config.h"

namespace openforce::lora {

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<Projection> targets = {Projection::kQ, Projection::kV};
  bool use_rslora = false;  // scaling alpha / sqrt(r) instead of alpha / r
  std::string base_model_name_or_path;

  double Scaling() const;
  bool Targets(Projection p) const;
};

// A and B of one wrapped projection. A: [r, in], B: [out, r], as PEFT stores
// them.
struct LoraPair {
  at::Tensor a;
  at::Tensor b;
};

class LoraAdapter {
 public:
  // Fresh adapter: A ~ Kaiming-uniform(a = sqrt(5)) as PEFT initialises it, B =
  // 0, so the wrapped model starts equal to the base. fp32 parameters on
  // `device`.
  [[nodiscard]] static absl::StatusOr<LoraAdapter> Create(
      const LlamaConfig& model, const LoraConfig& config, uint64_t seed,
      const std::string& device = "cpu");

  // Reads PEFT files from `dir`, checks them against `model`, converts to fp32
  // on `device`.
  [[nodiscard]] static absl::StatusOr<LoraAdapter> Load(
      const std::string& dir, const LlamaConfig& model,
      const std::string& device = "cpu");

  // Writes adapter_config.json and adapter_model.safetensors into `dir`.
  [[nodiscard]] absl::Status Save(const std::string& dir) const;

  const LoraConfig& config() const { return config_; }
  // Null when `projection` of `layer` is not wrapped.
  const LoraPair* Find(size_t layer, Projection projection) const;
  LoraPair* Find(size_t layer, Projection projection);
  size_t num_layers() const { return layers_.size(); }

  // Every A and B, in a fixed order (layer, projection, A then B).
  std::vector<at::Tensor> Parameters() const;
  // PEFT key names with their tensors, in the same order.
  std::vector<std::pair<std::string, at::Tensor>> NamedTensors() const;
  int64_t ParameterCount() const;

  // W += scaling * B A (Merge) or W -= scaling * B A (Unmerge) for every
  // wrapped projection, in the weights' dtype.
  [[nodiscard]] absl::Status Merge(LlamaWeights* weights) const;
  [[nodiscard]] absl::Status Unmerge(LlamaWeights* weights) const;

  // Element-wise this - base / this + delta; the configs must match.
  [[nodiscard]] absl::StatusOr<LoraAdapter> Subtract(
      const LoraAdapter& base) const;
  [[nodiscard]] absl::StatusOr<LoraAdapter> Add(const LoraAdapter& delta) const;
  LoraAdapter Clone() const;

 private:
  LoraAdapter(LoraConfig config, std::vector<std::vector<LoraPair>> layers)
      : config_(std::move(config)), layers_(std::move(layers)) {}
  [[nodiscard]] absl::Status ApplyMerge(LlamaWeights* weights,
                                        double sign) const;
  [[nodiscard]] absl::Status CheckCompatible(const LoraAdapter& other) const;
  // this + sign * other, element-wise.
  [[nodiscard]] absl::StatusOr<LoraAdapter> Combine(const LoraAdapter& other,
                                                    double sign) const;

  LoraConfig config_;
  // layers_[layer][projection index]; undefined tensors where not targeted.
  std::vector<std::vector<LoraPair>> layers_;
};

// PEFT's key for A or B of `projection` in `layer`.
std::string PeftKey(size_t layer, Projection projection, bool is_a);

// PEFT key -> shape of every tensor an adapter for `model` and `config` holds.
std::map<std::string, std::vector<int64_t>> ExpectedAdapterTensors(
    const LlamaConfig& model, const LoraConfig& config);

// Parses adapter_config.json text. Accepts every field PEFT writes; refuses
// settings this engine would apply wrongly (DoRA, rank or alpha patterns, bias
// training, modules to save, layer subsets, regex target modules, another PEFT
// type).
[[nodiscard]] absl::StatusOr<LoraConfig> ParseAdapterConfig(
    const std::string& json_text, const std::string& source);
std::string AdapterConfigToJson(const LoraConfig& config);

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_LORA_ADAPTER_H_
