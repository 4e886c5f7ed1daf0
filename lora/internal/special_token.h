// The text of a special token as tokenizer_config.json writes it: a plain
// string, or an AddedToken object {"content": ..., "lstrip": ...}.
#ifndef OPENFORCE_LORA_INTERNAL_SPECIAL_TOKEN_H_
#define OPENFORCE_LORA_INTERNAL_SPECIAL_TOKEN_H_

#include <optional>
#include <string>

namespace openforce::lora::internal {

// `Json` is nlohmann::json or nlohmann::ordered_json.
template <typename Json>
std::optional<std::string> SpecialTokenText(const Json& value) {
  if (value.is_string()) return value.template get<std::string>();
  if (value.is_object() && value.contains("content") &&
      value["content"].is_string()) {
    return value["content"].template get<std::string>();
  }
  return std::nullopt;
}

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_SPECIAL_TOKEN_H_
