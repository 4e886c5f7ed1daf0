// LoRA adapters and PEFT files; see lora_adapter.h.
#include "lora/lora_adapter.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/safetensors.h"

namespace openforce::lora {
namespace {

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";

int64_t InFeatures(const LlamaConfig& c, Projection p) {
  switch (p) {
    case Projection::kO:
      return c.num_attention_heads * c.head_dim;
    case Projection::kDown:
      return c.intermediate_size;
    default:
      return c.hidden_size;
  }
}

int64_t OutFeatures(const LlamaConfig& c, Projection p) {
  switch (p) {
    case Projection::kQ:
      return c.num_attention_heads * c.head_dim;
    case Projection::kK:
    case Projection::kV:
      return c.num_key_value_heads * c.head_dim;
    case Projection::kGate:
    case Projection::kUp:
      return c.intermediate_size;
    default:
      return c.hidden_size;
  }
}

absl::Status Unsupported(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// True for JSON values PEFT uses to mean "not set".
bool IsUnset(const nlohmann::json& json, const char* key) {
  if (!json.contains(key)) return true;
  const nlohmann::json& v = json[key];
  return v.is_null() || (v.is_object() && v.empty()) ||
         (v.is_array() && v.empty()) || (v.is_boolean() && !v.get<bool>());
}

}  // namespace

double LoraConfig::Scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank))
                    : alpha / static_cast<double>(rank);
}

bool LoraConfig::Targets(Projection p) const {
  return std::find(targets.begin(), targets.end(), p) != targets.end();
}

std::string PeftKey(size_t layer, Projection projection, bool is_a) {
  return absl::StrCat("base_model.model.model.layers.", layer, ".",
                      ProjectionPath(projection),
                      is_a ? ".lora_A.weight" : ".lora_B.weight");
}

namespace {

absl::StatusOr<LoraConfig> ParseAdapterConfigObject(const nlohmann::json& json,
                                                    const std::string& source) {
  if (json.contains("peft_type") && json["peft_type"] != "LORA") {
    return Unsupported(
        source, absl::StrCat("peft_type ", JsonPreview(json["peft_type"]),
                             " is not LORA"));
  }
  if (json.contains("task_type") && !json["task_type"].is_null() &&
      json["task_type"] != "CAUSAL_LM") {
    return Unsupported(
        source, absl::StrCat("task_type ", JsonPreview(json["task_type"]),
                             " is not CAUSAL_LM"));
  }
  for (const char* key :
       {"use_dora", "rank_pattern", "alpha_pattern", "modules_to_save",
        "layers_to_transform", "layers_pattern", "layer_replication",
        "fan_in_fan_out"}) {
    if (!IsUnset(json, key)) {
      return Unsupported(source,
                         absl::StrCat(key, " = ", JsonPreview(json[key]),
                                      " is not supported"));
    }
  }
  if (json.contains("bias") && json["bias"] != "none") {
    return Unsupported(source, absl::StrCat("bias ", JsonPreview(json["bias"]),
                                            " is not supported (none)"));
  }
  LoraConfig config;
  if (!json.contains("r") || !json["r"].is_number_integer() ||
      json["r"].get<int64_t>() <= 0) {
    return Unsupported(source, "'r' must be a positive integer");
  }
  config.rank = json["r"].get<int64_t>();
  if (!json.contains("lora_alpha") || !json["lora_alpha"].is_number()) {
    return Unsupported(source, "'lora_alpha' must be a number");
  }
  config.alpha = json["lora_alpha"].get<double>();
  if (json.contains("lora_dropout") && json["lora_dropout"].is_number()) {
    config.dropout = json["lora_dropout"].get<double>();
  }
  if (config.dropout < 0 || config.dropout >= 1) {
    return Unsupported(source, "'lora_dropout' must be in [0, 1)");
  }
  if (json.contains("use_rslora") && json["use_rslora"].is_boolean()) {
    config.use_rslora = json["use_rslora"].get<bool>();
  }
  if (json.contains("base_model_name_or_path") &&
      json["base_model_name_or_path"].is_string()) {
    config.base_model_name_or_path =
        json["base_model_name_or_path"].get<std::string>();
  }
  if (!json.contains("target_modules") || !json["target_modules"].is_array() ||
      json["target_modules"].empty()) {
    return Unsupported(
        source,
        "'target_modules' must be a non-empty list of module names "
        "(regular expressions are not supported)");
  }
  config.targets.clear();
  for (const nlohmann::json& name : json["target_modules"]) {
    if (!name.is_string())
      return Unsupported(source, "'target_modules' holds a non-string");
    absl::StatusOr<Projection> projection =
        ParseProjection(name.get<std::string>());
    if (!projection.ok())
      return Unsupported(source, std::string(projection.status().message()));
    if (!config.Targets(*projection)) config.targets.push_back(*projection);
  }
  std::sort(config.targets.begin(), config.targets.end());
  return config;
}

}  // namespace

absl::StatusOr<LoraConfig> ParseAdapterConfig(const std::string& json_text,
                                              const std::string& source) {
  return ReadUntrustedJsonObject(
      json_text, source, [&](const nlohmann::json& json) {
        return ParseAdapterConfigObject(json, source);
      });
}

std::string AdapterConfigToJson(const LoraConfig& config) {
  std::vector<std::string> targets;
  for (Projection p : config.targets) targets.push_back(ProjectionName(p));
  std::sort(targets.begin(), targets.end());
  nlohmann::json alpha = config.alpha;
  if (config.alpha == std::floor(config.alpha))
    alpha = static_cast<int64_t>(config.alpha);
  nlohmann::json json = {
      {"alpha_pattern", nlohmann::json::object()},
      {"auto_mapping", nullptr},
      {"base_model_name_or_path", config.base_model_name_or_path},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"layer_replication", nullptr},
      {"layers_pattern", nullptr},
      {"layers_to_transform", nullptr},
      {"loftq_config", nlohmann::json::object()},
      {"lora_alpha", alpha},
      {"lora_dropout", config.dropout},
      {"megatron_config", nullptr},
      {"megatron_core", "megatron.core"},
      {"modules_to_save", nullptr},
      {"peft_type", "LORA"},
      {"r", config.rank},
      {"rank_pattern", nlohmann::json::object()},
      {"revision", nullptr},
      {"target_modules", targets},
      {"task_type", "CAUSAL_LM"},
      {"use_dora", false},
      {"use_rslora", config.use_rslora},
  };
  return json.dump(2);
}

std::map<std::string, std::vector<int64_t>> ExpectedAdapterTensors(
    const LlamaConfig& model, const LoraConfig& config) {
  std::map<std::string, std::vector<int64_t>> expected;
  for (int64_t layer = 0; layer < model.num_hidden_layers; ++layer) {
    for (Projection p : kAllProjections) {
      if (!config.Targets(p)) continue;
      const size_t index = static_cast<size_t>(layer);
      expected[PeftKey(index, p, true)] = {config.rank, InFeatures(model, p)};
      expected[PeftKey(index, p, false)] = {OutFeatures(model, p), config.rank};
    }
  }
  return expected;
}

absl::StatusOr<LoraAdapter> LoraAdapter::Create(const LlamaConfig& model,
                                                const LoraConfig& config,
                                                uint64_t seed,
                                                const std::string& device) {
  if (config.rank <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA rank must be positive, got ", config.rank));
  }
  if (config.targets.empty())
    return absl::InvalidArgumentError("LoRA has no target modules");
  if (config.dropout < 0 || config.dropout >= 1) {
    return absl::InvalidArgumentError("LoRA dropout must be in [0, 1)");
  }
  try {
    at::Generator generator = at::detail::createCPUGenerator(seed);
    std::vector<std::vector<LoraPair>> layers(model.num_hidden_layers);
    for (auto& layer : layers) {
      layer.resize(7);
      for (Projection p : kAllProjections) {
        if (!config.Targets(p)) continue;
        const int64_t in = InFeatures(model, p);
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));
        LoraPair& pair = layer[static_cast<int>(p)];
        pair.a = at::empty({config.rank, in})
                     .uniform_(-bound, bound, generator)
                     .to(device);
        pair.b = at::zeros({OutFeatures(model, p), config.rank},
                           at::TensorOptions().device(device));
      }
    }
    return LoraAdapter(config, std::move(layers));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("create LoRA adapter: ", e.what()));
  }
}

absl::StatusOr<LoraAdapter> LoraAdapter::Load(const std::string& dir,
                                              const LlamaConfig& model,
                                              const std::string& device) {
  const std::string config_path = absl::StrCat(dir, "/", kConfigFile);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  ASSIGN_OR_RETURN(LoraConfig config, ParseAdapterConfig(text, config_path));
  ASSIGN_OR_RETURN(auto file,
                   SafetensorsFile::Open(absl::StrCat(dir, "/", kWeightsFile)));
  std::vector<std::vector<LoraPair>> layers(model.num_hidden_layers);
  size_t used = 0;
  try {
    for (size_t layer = 0; layer < layers.size(); ++layer) {
      layers[layer].resize(7);
      for (Projection p : config.targets) {
        for (bool is_a : {true, false}) {
          const std::string key = PeftKey(layer, p, is_a);
          // PEFT before 0.5 wrote keys with the adapter name
          // ("lora_A.default.weight").
          std::string found = key;
          if (!file->Contains(found)) {
            found = key.substr(0, key.size() - 7) + ".default.weight";
          }
          if (!file->Contains(found)) {
            return absl::InvalidArgumentError(
                absl::StrCat(file->path(), ": missing tensor '", key, "'"));
          }
          const std::vector<int64_t> shape =
              is_a ? std::vector<int64_t>{config.rank, InFeatures(model, p)}
                   : std::vector<int64_t>{OutFeatures(model, p), config.rank};
          ASSIGN_OR_RETURN(at::Tensor tensor, file->Tensor(found));
          if (tensor.sizes().vec() != shape) {
            return absl::InvalidArgumentError(absl::StrCat(
                file->path(), ": tensor '", found, "' has shape [",
                absl::StrJoin(tensor.sizes(), ", "), "], expected [",
                absl::StrJoin(shape, ", "), "] for r=", config.rank));
          }
          LoraPair& pair = layers[layer][static_cast<int>(p)];
          (is_a ? pair.a : pair.b) =
              tensor.to(at::Device(device), at::kFloat).clone();
          ++used;
        }
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("load adapter ", dir, ": ", e.what()));
  }
  if (used != file->entries().size()) {
    for (const auto& [name, entry] : file->entries()) {
      bool known = false;
      for (size_t layer = 0; layer < layers.size() && !known; ++layer) {
        for (Projection p : config.targets) {
          for (bool is_a : {true, false}) {
            const std::string key = PeftKey(layer, p, is_a);
            if (name == key ||
                name == key.substr(0, key.size() - 7) + ".default.weight") {
              known = true;
            }
          }
        }
      }
      if (!known) {
        return absl::InvalidArgumentError(absl::StrCat(
            file->path(), ": unexpected tensor '", name,
            "' (not a LoRA factor of this model's target modules)"));
      }
    }
  }
  return LoraAdapter(std::move(config), std::move(layers));
}

absl::Status LoraAdapter::Save(const std::string& dir) const {
  RETURN_IF_ERROR(MakeDirectories(dir));
  RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(dir, "/", kWeightsFile),
                                   NamedTensors(), {{"format", "pt"}}));
  return WriteFileAtomically(absl::StrCat(dir, "/", kConfigFile),
                             AdapterConfigToJson(config_));
}

const LoraPair* LoraAdapter::Find(size_t layer, Projection projection) const {
  if (layer >= layers_.size()) return nullptr;
  const LoraPair& pair = layers_[layer][static_cast<int>(projection)];
  return pair.a.defined() ? &pair : nullptr;
}

LoraPair* LoraAdapter::Find(size_t layer, Projection projection) {
  if (layer >= layers_.size()) return nullptr;
  LoraPair& pair = layers_[layer][static_cast<int>(projection)];
  return pair.a.defined() ? &pair : nullptr;
}

std::vector<at::Tensor> LoraAdapter::Parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [name, tensor] : NamedTensors()) out.push_back(tensor);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> LoraAdapter::NamedTensors()
    const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t layer = 0; layer < layers_.size(); ++layer) {
    for (Projection p : kAllProjections) {
      const LoraPair* pair = Find(layer, p);
      if (pair == nullptr) continue;
      out.emplace_back(PeftKey(layer, p, true), pair->a);
      out.emplace_back(PeftKey(layer, p, false), pair->b);
    }
  }
  return out;
}

int64_t LoraAdapter::ParameterCount() const {
  int64_t count = 0;
  for (const at::Tensor& tensor : Parameters()) count += tensor.numel();
  return count;
}

absl::Status LoraAdapter::ApplyMerge(LlamaWeights* weights, double sign) const {
  if (weights->layers.size() != layers_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("adapter has ", layers_.size(), " layers, model has ",
                     weights->layers.size()));
  }
  for (const LayerWeights& layer : weights->layers) {
    for (Projection p : config_.targets) {
      if (layer.Quantized(p).defined()) {
        // Adding B A to quantized codes would re-quantize the base and lose
        // the update in its rounding: quantized bases run adapters unmerged.
        return absl::FailedPreconditionError(
            "the base weights are quantized; an adapter cannot be merged "
            "into them (run it unmerged)");
      }
    }
  }
  try {
    at::NoGradGuard no_grad;
    for (size_t layer = 0; layer < layers_.size(); ++layer) {
      for (Projection p : config_.targets) {
        const LoraPair* pair = Find(layer, p);
        at::Tensor& w = weights->layers[layer][p];
        // Compute the update in fp32, round once into the weight's dtype.
        at::Tensor update =
            at::matmul(pair->b, pair->a) * (sign * config_.Scaling());
        w.copy_((w.to(at::kFloat) + update.to(w.device())).to(w.scalar_type()));
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("merge LoRA adapter: ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status LoraAdapter::Merge(LlamaWeights* weights) const {
  return ApplyMerge(weights, 1.0);
}
absl::Status LoraAdapter::Unmerge(LlamaWeights* weights) const {
  return ApplyMerge(weights, -1.0);
}

absl::Status LoraAdapter::CheckCompatible(const LoraAdapter& other) const {
  if (other.layers_.size() != layers_.size() ||
      other.config_.rank != config_.rank ||
      other.config_.targets != config_.targets) {
    return absl::InvalidArgumentError(
        "adapters differ in layers, rank or target modules and cannot be "
        "combined");
  }
  return absl::OkStatus();
}

LoraAdapter LoraAdapter::Clone() const {
  std::vector<std::vector<LoraPair>> layers = layers_;
  for (auto& layer : layers) {
    for (LoraPair& pair : layer) {
      if (!pair.a.defined()) continue;
      pair.a = pair.a.detach().clone();
      pair.b = pair.b.detach().clone();
    }
  }
  return LoraAdapter(config_, std::move(layers));
}

absl::StatusOr<LoraAdapter> LoraAdapter::Combine(const LoraAdapter& other,
                                                 double sign) const {
  RETURN_IF_ERROR(CheckCompatible(other));
  LoraAdapter out = Clone();
  try {
    at::NoGradGuard no_grad;
    for (size_t layer = 0; layer < layers_.size(); ++layer) {
      for (Projection p : config_.targets) {
        out.Find(layer, p)->a.add_(other.Find(layer, p)->a, sign);
        out.Find(layer, p)->b.add_(other.Find(layer, p)->b, sign);
      }
    }
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("combine LoRA adapters: ", e.what()));
  }
  return out;
}

absl::StatusOr<LoraAdapter> LoraAdapter::Subtract(
    const LoraAdapter& base) const {
  return Combine(base, -1.0);
}

absl::StatusOr<LoraAdapter> LoraAdapter::Add(const LoraAdapter& delta) const {
  return Combine(delta, 1.0);
}

}  // namespace openforce::lora
