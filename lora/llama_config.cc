// config.json parsing; see llama_config.h.
#include "lora/llama_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"

namespace openforce::lora {
namespace {

constexpr const char* kFamilies = "llama, mistral, qwen2, qwen3, gemma3_text";

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

bool Has(const nlohmann::json& json, const char* key) {
  return json.contains(key) && !json[key].is_null();
}

absl::Status ReadInt(const nlohmann::json& json, const char* key, bool required,
                     const std::string& source, int64_t* out) {
  if (!Has(json, key)) {
    if (required) return Bad(source, absl::StrCat("missing '", key, "'"));
    return absl::OkStatus();
  }
  if (!json[key].is_number_integer()) {
    return Bad(source, absl::StrCat("'", key, "' must be an integer, got ",
                                    JsonPreview(json[key])));
  }
  *out = json[key].get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const nlohmann::json& json, const char* key,
                        const std::string& source, double* out) {
  if (!Has(json, key)) return absl::OkStatus();
  if (!json[key].is_number()) {
    return Bad(source, absl::StrCat("'", key, "' must be a number, got ",
                                    JsonPreview(json[key])));
  }
  *out = json[key].get<double>();
  if (!std::isfinite(*out)) {
    return Bad(source, absl::StrCat("'", key, "' must be finite"));
  }
  return absl::OkStatus();
}

absl::Status ReadBool(const nlohmann::json& json, const char* key,
                      const std::string& source, bool* out) {
  if (!Has(json, key)) return absl::OkStatus();
  if (!json[key].is_boolean()) {
    return Bad(source, absl::StrCat("'", key, "' must be true or false, got ",
                                    JsonPreview(json[key])));
  }
  *out = json[key].get<bool>();
  return absl::OkStatus();
}

absl::Status ReadIds(const nlohmann::json& json, const char* key,
                     const std::string& source, std::vector<int64_t>* out) {
  if (!Has(json, key)) return absl::OkStatus();
  const nlohmann::json& value = json[key];
  if (value.is_number_integer()) {
    out->push_back(value.get<int64_t>());
    return absl::OkStatus();
  }
  if (value.is_array()) {
    for (const nlohmann::json& id : value) {
      if (!id.is_number_integer()) {
        return Bad(source, absl::StrCat("'", key, "' must hold integers"));
      }
      out->push_back(id.get<int64_t>());
    }
    return absl::OkStatus();
  }
  return Bad(source, absl::StrCat("'", key, "' must be an integer or a list"));
}

absl::StatusOr<Activation> ParseActivation(const nlohmann::json& value,
                                           const char* key,
                                           const std::string& source) {
  if (value.is_string()) {
    const std::string name = value.get<std::string>();
    if (name == "silu" || name == "swish") return Activation::kSilu;
    if (name == "gelu_pytorch_tanh" || name == "gelu_new")
      return Activation::kGeluTanh;
    if (name == "gelu") return Activation::kGelu;
    if (name == "relu") return Activation::kRelu;
  }
  return Bad(source, absl::StrCat(key, " ", JsonPreview(value),
                                  " is not supported (silu, swish, gelu, "
                                  "gelu_pytorch_tanh, gelu_new, relu)"));
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const nlohmann::json& json,
                                             const std::string& source) {
  RopeScaling rope;
  if (!json.is_object()) {
    return Bad(source, absl::StrCat("rope_scaling ", JsonPreview(json),
                                    " must be an object or null"));
  }
  // Newer configs say rope_type, older ones type.
  const char* type_key = json.contains("rope_type") ? "rope_type" : "type";
  if (!json.contains(type_key) || !json[type_key].is_string()) {
    return Bad(source, "rope_scaling has no 'rope_type' (or 'type') string");
  }
  const std::string type = json[type_key].get<std::string>();
  if (type == "default") {
    rope.type = RopeType::kDefault;
  } else if (type == "linear") {
    rope.type = RopeType::kLinear;
  } else if (type == "dynamic") {
    rope.type = RopeType::kDynamic;
  } else if (type == "llama3") {
    rope.type = RopeType::kLlama3;
  } else if (type == "yarn") {
    rope.type = RopeType::kYarn;
  } else {
    return Bad(source, absl::StrCat("rope_scaling ", type_key, " '", type,
                                    "' is not supported (default, linear, "
                                    "dynamic, llama3, yarn)"));
  }
  const std::string where = absl::StrCat(source, ": rope_scaling");
  RETURN_IF_ERROR(ReadDouble(json, "factor", where, &rope.factor));
  if (rope.type != RopeType::kDefault) {
    if (!Has(json, "factor")) {
      return Bad(source, absl::StrCat("rope_scaling of type '", type,
                                      "' needs 'factor'"));
    }
    if (rope.factor <= 0) {
      return Bad(source, absl::StrCat("rope_scaling factor ", rope.factor,
                                      " must be positive"));
    }
  }
  RETURN_IF_ERROR(ReadInt(json, "original_max_position_embeddings",
                          rope.type == RopeType::kLlama3, where,
                          &rope.original_max_position_embeddings));
  if (rope.type == RopeType::kLlama3) {
    for (const char* key : {"low_freq_factor", "high_freq_factor"}) {
      if (!Has(json, key)) {
        return Bad(source, absl::StrCat("rope_scaling of type 'llama3' needs '",
                                        key, "'"));
      }
    }
    RETURN_IF_ERROR(
        ReadDouble(json, "low_freq_factor", where, &rope.low_freq_factor));
    RETURN_IF_ERROR(
        ReadDouble(json, "high_freq_factor", where, &rope.high_freq_factor));
    if (!(rope.high_freq_factor > rope.low_freq_factor) ||
        rope.low_freq_factor <= 0 ||
        rope.original_max_position_embeddings <= 0) {
      return Bad(source,
                 "rope_scaling llama3 needs 0 < low_freq_factor < "
                 "high_freq_factor and a positive "
                 "original_max_position_embeddings");
    }
  }
  if (rope.type == RopeType::kYarn) {
    RETURN_IF_ERROR(
        ReadDouble(json, "attention_factor", where, &rope.attention_factor));
    RETURN_IF_ERROR(ReadDouble(json, "beta_fast", where, &rope.beta_fast));
    RETURN_IF_ERROR(ReadDouble(json, "beta_slow", where, &rope.beta_slow));
    RETURN_IF_ERROR(ReadDouble(json, "mscale", where, &rope.mscale));
    RETURN_IF_ERROR(
        ReadDouble(json, "mscale_all_dim", where, &rope.mscale_all_dim));
    RETURN_IF_ERROR(ReadBool(json, "truncate", where, &rope.truncate));
    // modeling_rope_utils treats 0 like unset ("or 32").
    if (rope.beta_fast == 0) rope.beta_fast = 32;
    if (rope.beta_slow == 0) rope.beta_slow = 1;
    if (rope.attention_factor < 0) {
      return Bad(source, "rope_scaling attention_factor must not be negative");
    }
  }
  return rope;
}

// Which layers slide, from layer_types when the config has it (transformers
// prefers it), else from the family's rule.
absl::Status ReadLayerTypes(const nlohmann::json& json,
                            const std::string& source, LlamaConfig* config) {
  if (!Has(json, "layer_types")) return absl::OkStatus();
  const nlohmann::json& types = json["layer_types"];
  if (!types.is_array() ||
      types.size() != static_cast<size_t>(config->num_hidden_layers)) {
    return Bad(source, absl::StrCat("layer_types must list one entry for each "
                                    "of the ",
                                    config->num_hidden_layers, " layers"));
  }
  config->layer_is_sliding.clear();
  for (const nlohmann::json& type : types) {
    if (type == "sliding_attention") {
      config->layer_is_sliding.push_back(true);
    } else if (type == "full_attention") {
      config->layer_is_sliding.push_back(false);
    } else {
      return Bad(source, absl::StrCat("layer_types entry ", JsonPreview(type),
                                      " is not supported (full_attention, "
                                      "sliding_attention)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> ParseLlamaConfigObject(const nlohmann::json& json,
                                                   const std::string& source) {
  LlamaConfig config;
  if (json.contains("model_type")) {
    if (!json["model_type"].is_string()) {
      return Bad(source,
                 absl::StrCat("model_type ", JsonPreview(json["model_type"]),
                              " is not a string"));
    }
    config.model_type = json["model_type"].get<std::string>();
  }
  const std::string& family = config.model_type;
  if (family != "llama" && family != "mistral" && family != "qwen2" &&
      family != "qwen3" && family != "gemma3_text") {
    std::string hint;
    if (family == "gemma3") {
      hint =
          "; multimodal Gemma 3 checkpoints are not supported, a "
          "gemma3_text (Gemma3ForCausalLM) one is";
    }
    return Bad(source,
               absl::StrCat("model_type '", family, "' is not supported (",
                            kFamilies, ")", hint));
  }
  const bool gemma = family == "gemma3_text";
  ApplyFamilyDefaults(&config);
  RETURN_IF_ERROR(
      ReadInt(json, "vocab_size", true, source, &config.vocab_size));
  RETURN_IF_ERROR(
      ReadInt(json, "hidden_size", true, source, &config.hidden_size));
  RETURN_IF_ERROR(ReadInt(json, "intermediate_size", true, source,
                          &config.intermediate_size));
  RETURN_IF_ERROR(ReadInt(json, "num_hidden_layers", true, source,
                          &config.num_hidden_layers));
  RETURN_IF_ERROR(ReadInt(json, "num_attention_heads", true, source,
                          &config.num_attention_heads));
  config.num_key_value_heads = config.num_attention_heads;
  RETURN_IF_ERROR(ReadInt(json, "num_key_value_heads", false, source,
                          &config.num_key_value_heads));
  RETURN_IF_ERROR(ReadInt(json, "head_dim", false, source, &config.head_dim));
  RETURN_IF_ERROR(ReadInt(json, "max_position_embeddings", false, source,
                          &config.max_position_embeddings));
  RETURN_IF_ERROR(
      ReadDouble(json, "rms_norm_eps", source, &config.rms_norm_eps));
  RETURN_IF_ERROR(ReadDouble(json, "rope_theta", source, &config.rope_theta));
  RETURN_IF_ERROR(ReadDouble(json, "partial_rotary_factor", source,
                             &config.partial_rotary_factor));
  RETURN_IF_ERROR(ReadBool(json, "tie_word_embeddings", source,
                           &config.tie_word_embeddings));
  if (Has(json, "torch_dtype") && json["torch_dtype"].is_string()) {
    config.torch_dtype = json["torch_dtype"].get<std::string>();
  }
  RETURN_IF_ERROR(ReadIds(json, "bos_token_id", source, &config.bos_token_ids));
  RETURN_IF_ERROR(ReadIds(json, "eos_token_id", source, &config.eos_token_ids));

  // Activation: Gemma names it hidden_activation.
  const char* activation_key = gemma && Has(json, "hidden_activation")
                                   ? "hidden_activation"
                                   : "hidden_act";
  if (Has(json, activation_key)) {
    ASSIGN_OR_RETURN(
        config.hidden_act,
        ParseActivation(json[activation_key], activation_key, source));
  }
  if (Has(json, "rope_scaling")) {
    ASSIGN_OR_RETURN(config.rope_scaling,
                     ParseRopeScaling(json["rope_scaling"], source));
  }

  // Biases.
  bool attention_bias = false, mlp_bias = false;
  RETURN_IF_ERROR(ReadBool(json, "attention_bias", source, &attention_bias));
  RETURN_IF_ERROR(ReadBool(json, "mlp_bias", source, &mlp_bias));
  if (family == "llama") {
    config.qkv_bias = config.o_bias = attention_bias;
    config.mlp_bias = mlp_bias;
  } else if (family == "qwen2") {
    // Qwen2 always has q/k/v biases and never others; its config does not say.
    config.qkv_bias = true;
  } else if (family == "qwen3" || gemma) {
    config.qkv_bias = config.o_bias = attention_bias;
  } else if (attention_bias) {
    return Bad(source,
               "attention_bias true is not part of mistral (its "
               "projections have no bias)");
  }
  if (mlp_bias && family != "llama") {
    return Bad(source, absl::StrCat("mlp_bias true is not part of ", family,
                                    " (only llama has it)"));
  }

  // Sliding windows.
  int64_t window = config.sliding_window;
  RETURN_IF_ERROR(ReadInt(json, "sliding_window", false, source, &window));
  if (Has(json, "sliding_window") && window <= 0) {
    return Bad(source, absl::StrCat("sliding_window ", window,
                                    " must be positive or null"));
  }
  if (json.contains("sliding_window") && json["sliding_window"].is_null()) {
    window = 0;
  }
  config.layer_is_sliding.assign(config.num_hidden_layers, false);
  if (family == "mistral") {
    config.sliding_window = window;
    config.layer_is_sliding.assign(config.num_hidden_layers, window > 0);
    RETURN_IF_ERROR(ReadLayerTypes(json, source, &config));
  } else if (family == "qwen2" || family == "qwen3") {
    bool use_sliding_window = false;
    int64_t max_window_layers = config.num_hidden_layers;
    RETURN_IF_ERROR(
        ReadBool(json, "use_sliding_window", source, &use_sliding_window));
    RETURN_IF_ERROR(
        ReadInt(json, "max_window_layers", false, source, &max_window_layers));
    config.sliding_window = use_sliding_window ? window : 0;
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      config.layer_is_sliding[i] =
          config.sliding_window > 0 && i >= max_window_layers;
    }
    RETURN_IF_ERROR(ReadLayerTypes(json, source, &config));
  } else if (gemma) {
    config.sliding_window = window;
    int64_t pattern = 6;
    RETURN_IF_ERROR(
        ReadInt(json, "sliding_window_pattern", false, source, &pattern));
    if (pattern <= 0) {
      return Bad(source, "sliding_window_pattern must be positive");
    }
    for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
      config.layer_is_sliding[i] = (i + 1) % pattern != 0;
    }
    RETURN_IF_ERROR(ReadLayerTypes(json, source, &config));
    RETURN_IF_ERROR(ReadDouble(json, "query_pre_attn_scalar", source,
                               &config.query_pre_attn_scalar));
    RETURN_IF_ERROR(ReadDouble(json, "rope_local_base_freq", source,
                               &config.rope_local_base_freq));
    RETURN_IF_ERROR(ReadDouble(json, "attn_logit_softcapping", source,
                               &config.attn_logit_softcapping));
    RETURN_IF_ERROR(ReadDouble(json, "final_logit_softcapping", source,
                               &config.final_logit_softcapping));
    if (config.query_pre_attn_scalar <= 0 || config.rope_local_base_freq <= 0 ||
        config.attn_logit_softcapping < 0 ||
        config.final_logit_softcapping < 0) {
      return Bad(source,
                 "query_pre_attn_scalar and rope_local_base_freq must be "
                 "positive, softcapping values positive or null");
    }
  } else if (Has(json, "sliding_window") || Has(json, "layer_types")) {
    return Bad(source,
               "sliding_window / layer_types are not part of llama (use "
               "model_type mistral, qwen2, qwen3 or gemma3_text)");
  }
  if (config.sliding_window == 0) {
    config.layer_is_sliding.assign(config.num_hidden_layers, false);
  }

  absl::Status shape_ok = ValidateModelShape(config.Shape());
  if (!shape_ok.ok()) return Bad(source, std::string(shape_ok.message()));
  if (config.head_dim == 0)
    config.head_dim = config.hidden_size / config.num_attention_heads;
  if (!(config.partial_rotary_factor > 0 &&
        config.partial_rotary_factor <= 1)) {
    return Bad(source, absl::StrCat("partial_rotary_factor ",
                                    config.partial_rotary_factor,
                                    " must be in (0, 1]"));
  }
  if (config.RotaryDim() < 2 || config.RotaryDim() % 2 != 0) {
    return Bad(source, absl::StrCat("rotary dimension ", config.RotaryDim(),
                                    " (head_dim ", config.head_dim,
                                    " x partial_rotary_factor) must be even"));
  }
  if (config.rms_norm_eps <= 0 || config.rope_theta <= 0) {
    return Bad(source, "rms_norm_eps and rope_theta must be positive");
  }
  if (config.max_position_embeddings <= 0) {
    return Bad(source, "max_position_embeddings must be positive");
  }
  return config;
}

}  // namespace

const char* RopeTypeName(RopeType type) {
  switch (type) {
    case RopeType::kDefault:
      return "default";
    case RopeType::kLinear:
      return "linear";
    case RopeType::kDynamic:
      return "dynamic";
    case RopeType::kLlama3:
      return "llama3";
    case RopeType::kYarn:
      return "yarn";
  }
  return "default";
}

void ApplyFamilyDefaults(LlamaConfig* config) {
  if (config->model_type == "qwen2") config->qkv_bias = true;
  if (config->model_type == "qwen3") config->qk_norm = true;
  if (config->model_type == "gemma3_text") {
    // Gemma3TextConfig's defaults.
    config->qk_norm = true;
    config->gemma_norms = true;
    config->hidden_act = Activation::kGeluTanh;
    config->head_dim = 256;
    config->query_pre_attn_scalar = 256;
    config->sliding_window = 4096;
    config->rope_local_base_freq = 10000;
    config->rope_theta = 1000000;
    config->tie_word_embeddings = true;
  }
}

int64_t LlamaConfig::RotaryDim() const {
  return static_cast<int64_t>(static_cast<double>(head_dim) *
                              partial_rotary_factor);
}

double LlamaConfig::AttentionScale() const {
  return 1.0 / std::sqrt(query_pre_attn_scalar > 0
                             ? query_pre_attn_scalar
                             : static_cast<double>(head_dim));
}

bool LlamaConfig::HasSlidingLayers() const {
  if (sliding_window <= 0) return false;
  for (bool sliding : layer_is_sliding) {
    if (sliding) return true;
  }
  return false;
}

ModelShape LlamaConfig::Shape() const {
  ModelShape shape;
  shape.vocab_size = vocab_size;
  shape.hidden_size = hidden_size;
  shape.intermediate_size = intermediate_size;
  shape.num_hidden_layers = num_hidden_layers;
  shape.num_attention_heads = num_attention_heads;
  shape.num_key_value_heads = num_key_value_heads;
  shape.head_dim = head_dim;
  shape.tie_word_embeddings = tie_word_embeddings;
  shape.attention_bias = qkv_bias;
  return shape;
}

absl::StatusOr<LlamaConfig> ParseLlamaConfig(const std::string& json_text,
                                             const std::string& source) {
  return ReadUntrustedJsonObject(json_text, source,
                                 [&](const nlohmann::json& json) {
                                   return ParseLlamaConfigObject(json, source);
                                 });
}

absl::StatusOr<LlamaConfig> LoadLlamaConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseLlamaConfig(text, path);
}

namespace {

const char* ArchitectureName(const std::string& model_type) {
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "qwen3") return "Qwen3ForCausalLM";
  if (model_type == "gemma3_text") return "Gemma3ForCausalLM";
  return "LlamaForCausalLM";
}

const char* ActivationName(Activation activation) {
  switch (activation) {
    case Activation::kSilu:
      return "silu";
    case Activation::kGeluTanh:
      return "gelu_pytorch_tanh";
    case Activation::kGelu:
      return "gelu";
    case Activation::kRelu:
      return "relu";
  }
  return "silu";
}

nlohmann::json RopeScalingJson(const RopeScaling& rope) {
  if (rope.type == RopeType::kDefault) return nullptr;
  nlohmann::json json = {{"rope_type", RopeTypeName(rope.type)},
                         {"factor", rope.factor}};
  if (rope.original_max_position_embeddings > 0) {
    json["original_max_position_embeddings"] =
        rope.original_max_position_embeddings;
  }
  if (rope.type == RopeType::kLlama3) {
    json["low_freq_factor"] = rope.low_freq_factor;
    json["high_freq_factor"] = rope.high_freq_factor;
  }
  if (rope.type == RopeType::kYarn) {
    if (rope.attention_factor > 0)
      json["attention_factor"] = rope.attention_factor;
    json["beta_fast"] = rope.beta_fast;
    json["beta_slow"] = rope.beta_slow;
    if (rope.mscale > 0) json["mscale"] = rope.mscale;
    if (rope.mscale_all_dim > 0) json["mscale_all_dim"] = rope.mscale_all_dim;
    if (!rope.truncate) json["truncate"] = false;
  }
  return json;
}

}  // namespace

std::string LlamaConfigToJson(const LlamaConfig& config) {
  const bool gemma = config.model_type == "gemma3_text";
  nlohmann::json json = {
      {"architectures", {ArchitectureName(config.model_type)}},
      {"model_type", config.model_type},
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"head_dim", config.head_dim},
      {"max_position_embeddings", config.max_position_embeddings},
      {"rms_norm_eps", config.rms_norm_eps},
      {"rope_theta", config.rope_theta},
      {"rope_scaling", RopeScalingJson(config.rope_scaling)},
      {gemma ? "hidden_activation" : "hidden_act",
       ActivationName(config.hidden_act)},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"torch_dtype", config.torch_dtype},
  };
  if (config.partial_rotary_factor != 1.0)
    json["partial_rotary_factor"] = config.partial_rotary_factor;
  if (config.model_type == "llama") {
    json["attention_bias"] = config.qkv_bias;
    json["mlp_bias"] = config.mlp_bias;
  } else if (config.model_type != "mistral" && config.model_type != "qwen2") {
    json["attention_bias"] = config.o_bias;
  }
  std::vector<std::string> layer_types;
  for (bool sliding : config.layer_is_sliding)
    layer_types.push_back(sliding ? "sliding_attention" : "full_attention");
  if (config.model_type == "mistral") {
    json["sliding_window"] = config.sliding_window > 0
                                 ? nlohmann::json(config.sliding_window)
                                 : nlohmann::json(nullptr);
    if (config.sliding_window > 0) json["layer_types"] = layer_types;
  } else if (config.model_type == "qwen2" || config.model_type == "qwen3") {
    json["use_sliding_window"] = config.sliding_window > 0;
    json["sliding_window"] = config.sliding_window > 0
                                 ? nlohmann::json(config.sliding_window)
                                 : nlohmann::json(nullptr);
    json["max_window_layers"] = config.num_hidden_layers;
    if (config.sliding_window > 0) json["layer_types"] = layer_types;
  } else if (gemma) {
    json["sliding_window"] = config.sliding_window;
    json["layer_types"] = layer_types;
    json["query_pre_attn_scalar"] = config.query_pre_attn_scalar;
    json["rope_local_base_freq"] = config.rope_local_base_freq;
    auto optional = [](double v) {
      return v > 0 ? nlohmann::json(v) : nlohmann::json(nullptr);
    };
    json["attn_logit_softcapping"] = optional(config.attn_logit_softcapping);
    json["final_logit_softcapping"] = optional(config.final_logit_softcapping);
  }
  if (config.bos_token_ids.size() == 1)
    json["bos_token_id"] = config.bos_token_ids[0];
  if (config.eos_token_ids.size() == 1) {
    json["eos_token_id"] = config.eos_token_ids[0];
  } else if (!config.eos_token_ids.empty()) {
    json["eos_token_id"] = config.eos_token_ids;
  }
  return json.dump(2);
}

}  // namespace openforce::lora
