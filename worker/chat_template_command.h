// `openforce-worker chat-template`: renders a conversation with a model's chat
// template and prints the prompt and its token ids, so people can see exactly
// what the model will read. Needs only the tokenizer files of DIR
// (tokenizer_config.json or chat_template.jinja, and the tokenizer).
// Torch-free.
#ifndef OPENFORCE_WORKER_CHAT_TEMPLATE_COMMAND_H_
#define OPENFORCE_WORKER_CHAT_TEMPLATE_COMMAND_H_

#include <iosfwd>
#include <string>

#include "absl/status/status.h"

namespace openforce::worker {

struct ChatTemplateOptions {
  std::string model_dir;
  // JSON {"messages": [...], "tools": ..., "add_generation_prompt": bool,
  // ...extra template variables}; "-" reads standard input.
  std::string conversation_path;
  bool json = false;  // {"rendered": ..., "ids": [...]} instead of text
};

// Prints the rendered prompt, then a line with its ids (encoded without
// adding special tokens: the template already placed them).
[[nodiscard]] absl::Status RunChatTemplateCommand(
    const ChatTemplateOptions& options, std::istream& in, std::ostream& out);

}  // namespace openforce::worker

#endif  // OPENFORCE_WORKER_CHAT_TEMPLATE_COMMAND_H_
