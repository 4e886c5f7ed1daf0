// Chat templates; see chat_template.h.
#include "lora/chat_template.h"

#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/internal/special_token.h"

namespace openforce::lora {
namespace {

constexpr uint64_t kMaxTemplateBytes = 1u << 20;
constexpr uint64_t kMaxConfigBytes = 64u << 20;

}  // namespace

ChatTemplate::ChatTemplate(jinja::Template compiled,
                           jinja::ValueDict special_tokens, std::string source)
    : template_(std::make_shared<jinja::Template>(std::move(compiled))),
      special_tokens_(std::move(special_tokens)),
      source_(std::move(source)),
      clock_([] { return std::time(nullptr); }) {}

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(
    const std::string& template_text, const std::string& tokenizer_config,
    const std::string& source) {
  jinja::ValueDict special_tokens;
  if (!tokenizer_config.empty()) {
    nlohmann::ordered_json config;
    try {
      config = nlohmann::ordered_json::parse(tokenizer_config);
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer_config.json: ", e.what()));
    }
    for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token",
                            "pad_token", "cls_token", "mask_token"}) {
      if (!config.contains(key)) continue;
      if (std::optional<std::string> text =
              internal::SpecialTokenText(config[key])) {
        special_tokens.Set(key, jinja::Value::String(*text));
      }
    }
    if (config.contains("additional_special_tokens") &&
        config["additional_special_tokens"].is_array()) {
      jinja::ValueList extra;
      for (const auto& token : config["additional_special_tokens"]) {
        if (std::optional<std::string> text =
                internal::SpecialTokenText(token)) {
          extra.push_back(jinja::Value::String(*text));
        }
      }
      special_tokens.Set("additional_special_tokens",
                         jinja::Value::List(std::move(extra)));
    }
  }
  absl::StatusOr<jinja::Template> compiled =
      jinja::Template::Parse(template_text);
  if (!compiled.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", compiled.status().message()));
  }
  return ChatTemplate(*std::move(compiled), std::move(special_tokens), source);
}

absl::StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& model_dir) {
  const std::string config_path = model_dir + "/tokenizer_config.json";
  const std::string jinja_path = model_dir + "/chat_template.jinja";
  std::string config_text;
  if (std::filesystem::exists(config_path)) {
    ASSIGN_OR_RETURN(config_text,
                     ReadFileToString(config_path, kMaxConfigBytes));
  }
  std::string template_text, source;
  if (std::filesystem::exists(jinja_path)) {
    ASSIGN_OR_RETURN(template_text,
                     ReadFileToString(jinja_path, kMaxTemplateBytes));
    source = jinja_path;
  } else if (!config_text.empty()) {
    ASSIGN_OR_RETURN(nlohmann::json config,
                     ParseUntrustedJson(config_text, config_path));
    if (config.is_object() && config.contains("chat_template")) {
      const nlohmann::json& value = config["chat_template"];
      if (value.is_string()) {
        template_text = value.get<std::string>();
      } else if (value.is_array()) {
        // Named templates: "default" is what apply_chat_template uses.
        for (const nlohmann::json& entry : value) {
          if (entry.is_object() && entry.value("name", "") == "default" &&
              entry.contains("template") && entry["template"].is_string()) {
            template_text = entry["template"].get<std::string>();
          }
        }
        if (template_text.empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              config_path,
              ": chat_template lists no template named 'default'"));
        }
      }
      source = config_path;
    }
  }
  if (template_text.empty()) {
    return absl::NotFoundError(
        absl::StrCat(model_dir,
                     " has no chat template (tokenizer_config.json's "
                     "chat_template or chat_template.jinja)"));
  }
  return Parse(template_text, config_text, source);
}

absl::StatusOr<std::string> ChatTemplate::Render(
    const nlohmann::ordered_json& conversation) const {
  if (!conversation.is_object() || !conversation.contains("messages") ||
      !conversation["messages"].is_array()) {
    return absl::InvalidArgumentError(
        "a conversation is an object with a \"messages\" list");
  }
  for (const auto& message : conversation["messages"]) {
    if (!message.is_object() || !message.contains("role") ||
        !message["role"].is_string()) {
      return absl::InvalidArgumentError(
          "every message needs a string \"role\"");
    }
  }
  jinja::ValueDict context = special_tokens_;
  context.Set("add_generation_prompt", jinja::Value::Bool(false));
  context.Set("tools", jinja::Value::None());
  context.Set("documents", jinja::Value::None());
  for (const auto& [key, value] : conversation.items()) {
    if (key == "template_vars" && value.is_object()) {
      for (const auto& [var, var_value] : value.items()) {
        context.Set(var, jinja::Value::FromJson(var_value));
      }
      continue;
    }
    context.Set(key, jinja::Value::FromJson(value));
  }
  const std::function<std::time_t()> clock = clock_;
  context.Set(
      "strftime_now",
      jinja::Value::Callable(
          "strftime_now",
          [clock](const jinja::ValueList& args,
                  const jinja::KeywordArgs&) -> absl::StatusOr<jinja::Value> {
            if (args.empty() || !args[0].is_string()) {
              return absl::InvalidArgumentError(
                  "strftime_now needs a format string");
            }
            const std::time_t now = clock();
            std::tm local{};
            localtime_r(&now, &local);
            char buffer[256];
            const size_t length = std::strftime(
                buffer, sizeof(buffer), args[0].string_value().c_str(), &local);
            return jinja::Value::String(std::string(buffer, length));
          }));
  absl::StatusOr<std::string> rendered =
      template_->Render(jinja::Value::Dict(std::move(context)));
  if (!rendered.ok()) {
    return absl::Status(
        rendered.status().code(),
        absl::StrCat(source_, ": ", rendered.status().message()));
  }
  return rendered;
}

}  // namespace openforce::lora
