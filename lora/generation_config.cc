// generation_config.json; see generation_config.h.
#include "lora/generation_config.h"

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

absl::StatusOr<GenerationConfig> ParseObject(const nlohmann::json& json,
                                             const std::string& source) {
  GenerationConfig config;
  if (json.contains("eos_token_id") && !json["eos_token_id"].is_null()) {
    const nlohmann::json& eos = json["eos_token_id"];
    if (eos.is_number_integer()) {
      config.eos_token_ids.push_back(eos.get<int64_t>());
    } else if (eos.is_array()) {
      for (const nlohmann::json& id : eos) {
        if (!id.is_number_integer()) {
          return Bad(source, "'eos_token_id' must hold integers");
        }
        config.eos_token_ids.push_back(id.get<int64_t>());
      }
    } else {
      return Bad(source, "'eos_token_id' must be an integer or a list");
    }
  }
  auto number = [&](const char* key, double* out) -> absl::Status {
    if (!json.contains(key) || json[key].is_null()) return absl::OkStatus();
    if (!json[key].is_number()) {
      return Bad(source, absl::StrCat("'", key, "' must be a number, got ",
                                      JsonPreview(json[key])));
    }
    *out = json[key].get<double>();
    return absl::OkStatus();
  };
  const bool says_how = json.contains("do_sample") ||
                        json.contains("temperature") ||
                        json.contains("top_k") || json.contains("top_p") ||
                        json.contains("repetition_penalty");
  if (!says_how) return config;
  SamplingOptions sampling;
  // transformers' GenerationConfig defaults: greedy unless do_sample, and
  // top_k 50 when sampling.
  const bool do_sample = json.contains("do_sample") &&
                         json["do_sample"].is_boolean() &&
                         json["do_sample"].get<bool>();
  sampling.greedy = !do_sample;
  double top_k = 50;
  RETURN_IF_ERROR(number("temperature", &sampling.temperature));
  RETURN_IF_ERROR(number("top_k", &top_k));
  RETURN_IF_ERROR(number("top_p", &sampling.top_p));
  RETURN_IF_ERROR(number("repetition_penalty", &sampling.repetition_penalty));
  sampling.top_k = static_cast<int64_t>(top_k);
  absl::Status valid = ValidateSamplingOptions(sampling);
  if (!valid.ok()) return Bad(source, std::string(valid.message()));
  config.sampling = sampling;
  return config;
}

}  // namespace

absl::StatusOr<GenerationConfig> ParseGenerationConfig(
    const std::string& json_text, const std::string& source) {
  return ReadUntrustedJsonObject(
      json_text, source,
      [&](const nlohmann::json& json) { return ParseObject(json, source); });
}

absl::StatusOr<GenerationConfig> LoadGenerationConfig(
    const std::string& model_dir) {
  const std::string path = model_dir + "/generation_config.json";
  absl::StatusOr<std::string> text = ReadFileToString(path, 1 << 20);
  if (absl::IsNotFound(text.status())) return GenerationConfig();
  if (!text.ok()) return text.status();
  return ParseGenerationConfig(*text, path);
}

}  // namespace openforce::lora
