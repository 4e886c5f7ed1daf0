// A model's chat template, rendered as transformers' apply_chat_template
// renders it: the Jinja template from tokenizer_config.json's
// "chat_template" (a string, or a list of named templates whose "default" is
// used) or from chat_template.jinja beside it, with the conversation's
// messages, tools, add_generation_prompt and extra variables, the model's
// special tokens (bos_token, eos_token, ...) and strftime_now(). Torch-free.
#ifndef OPENFORCE_LORA_CHAT_TEMPLATE_H_
#define OPENFORCE_LORA_CHAT_TEMPLATE_H_

#include <ctime>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"
#include "jinja/template.h"
#include "jinja/value.h"

namespace openforce::lora {

class ChatTemplate {
 public:
  // NotFound when the directory has no chat template; InvalidArgument naming
  // the file and line when the template does not parse.
  [[nodiscard]] static absl::StatusOr<ChatTemplate> Load(
      const std::string& model_dir);
  // From template text and tokenizer_config.json's text (for special tokens;
  // may be empty).
  [[nodiscard]] static absl::StatusOr<ChatTemplate> Parse(
      const std::string& template_text, const std::string& tokenizer_config,
      const std::string& source);

  // `conversation` is {"messages": [...], "tools": [...] or null,
  // "add_generation_prompt": bool, ...extra variables}, the shape of the
  // fixtures' rows (their "template_vars" may carry special tokens too).
  [[nodiscard]] absl::StatusOr<std::string> Render(
      const nlohmann::ordered_json& conversation) const;

  // The clock strftime_now() reads; injectable for tests.
  void set_clock(std::function<std::time_t()> clock) {
    clock_ = std::move(clock);
  }

 private:
  ChatTemplate(jinja::Template compiled, jinja::ValueDict special_tokens,
               std::string source);

  std::shared_ptr<jinja::Template> template_;
  jinja::ValueDict special_tokens_;
  std::string source_;
  std::function<std::time_t()> clock_;
};

}  // namespace openforce::lora

#endif  // OPENFORCE_LORA_CHAT_TEMPLATE_H_
