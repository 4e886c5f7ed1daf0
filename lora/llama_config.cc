// config.json parsing; see llama_config.h.
#include "lora/llama_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"

namespace openforce::lora {
namespace {

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

absl::Status ReadInt(const nlohmann::json& json, const char* key, bool required,
                     const std::string& source, int64_t* out) {
  if (!json.contains(key) || json[key].is_null()) {
    if (required) return Bad(source, absl::StrCat("missing '", key, "'"));
    return absl::OkStatus();
  }
  if (!json[key].is_number_integer()) {
    return Bad(source, absl::StrCat("'", key, "' must be an integer"));
  }
  *out = json[key].get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadIds(const nlohmann::json& json, const char* key,
                     const std::string& source, std::vector<int64_t>* out) {
  if (!json.contains(key) || json[key].is_null()) return absl::OkStatus();
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

}  // namespace

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
  shape.attention_bias = attention_bias;
  return shape;
}

namespace {

absl::StatusOr<LlamaConfig> ParseLlamaConfigObject(const nlohmann::json& json,
                                                   const std::string& source) {
  LlamaConfig config;
  if (json.contains("model_type") && json["model_type"].is_string()) {
    config.model_type = json["model_type"].get<std::string>();
  }
  if (config.model_type != "llama" && config.model_type != "mistral" &&
      config.model_type != "qwen2") {
    return Bad(
        source,
        absl::StrCat("model_type '", config.model_type,
                     "' is not a Llama-family model (llama, mistral, qwen2)"));
  }
  // Qwen2 always has q/k/v biases; its config does not say so.
  config.attention_bias = config.model_type == "qwen2";
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
  if (json.contains("rms_norm_eps") && json["rms_norm_eps"].is_number()) {
    config.rms_norm_eps = json["rms_norm_eps"].get<double>();
  }
  if (json.contains("rope_theta") && json["rope_theta"].is_number()) {
    config.rope_theta = json["rope_theta"].get<double>();
  }
  if (json.contains("attention_bias") && json["attention_bias"].is_boolean()) {
    config.attention_bias = json["attention_bias"].get<bool>();
  }
  if (json.contains("tie_word_embeddings") &&
      json["tie_word_embeddings"].is_boolean()) {
    config.tie_word_embeddings = json["tie_word_embeddings"].get<bool>();
  }
  if (json.contains("torch_dtype") && json["torch_dtype"].is_string()) {
    config.torch_dtype = json["torch_dtype"].get<std::string>();
  }
  RETURN_IF_ERROR(ReadIds(json, "bos_token_id", source, &config.bos_token_ids));
  RETURN_IF_ERROR(ReadIds(json, "eos_token_id", source, &config.eos_token_ids));

  if (json.contains("hidden_act") && json["hidden_act"] != "silu") {
    return Bad(source,
               absl::StrCat("hidden_act ", JsonPreview(json["hidden_act"]),
                            " is not supported (silu)"));
  }
  if (json.contains("rope_scaling") && !json["rope_scaling"].is_null()) {
    return Bad(source,
               absl::StrCat("rope_scaling ", JsonPreview(json["rope_scaling"]),
                            " is not supported yet"));
  }
  absl::Status shape_ok = ValidateModelShape(config.Shape());
  if (!shape_ok.ok()) return Bad(source, std::string(shape_ok.message()));
  if (config.head_dim == 0)
    config.head_dim = config.hidden_size / config.num_attention_heads;
  if (config.head_dim % 2 != 0) {
    return Bad(source, absl::StrCat("head_dim ", config.head_dim,
                                    " must be even for rotary embeddings"));
  }
  if (config.rms_norm_eps <= 0 || config.rope_theta <= 0) {
    return Bad(source, "rms_norm_eps and rope_theta must be positive");
  }
  return config;
}

}  // namespace

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

std::string LlamaConfigToJson(const LlamaConfig& config) {
  nlohmann::json json = {
      {"architectures",
       {config.model_type == "qwen2" ? "Qwen2ForCausalLM"
                                     : "LlamaForCausalLM"}},
      {"model_type", config.model_type},
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"num_key_value_heads", config.num_key_value_heads},
      {"max_position_embeddings", config.max_position_embeddings},
      {"rms_norm_eps", config.rms_norm_eps},
      {"rope_theta", config.rope_theta},
      {"attention_bias", config.attention_bias},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"hidden_act", "silu"},
      {"rope_scaling", nullptr},
      {"torch_dtype", config.torch_dtype},
  };
  if (config.head_dim != 0 &&
      config.head_dim != config.hidden_size / config.num_attention_heads) {
    json["head_dim"] = config.head_dim;
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
