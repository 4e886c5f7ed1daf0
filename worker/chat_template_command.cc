// `openforce-worker chat-template`; see chat_template_command.h.
#include "worker/chat_template_command.h"

#include <istream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/chat_template.h"
#include "lora/tokenizer.h"

namespace openforce::worker {
namespace {

constexpr uint64_t kMaxConversationBytes = 16u << 20;

}  // namespace

absl::Status RunChatTemplateCommand(const ChatTemplateOptions& options,
                                    std::istream& in, std::ostream& out) {
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError("--model is required");
  }
  if (options.conversation_path.empty()) {
    return absl::InvalidArgumentError(
        "--conversation is required (a JSON file, or - for standard input)");
  }
  std::string text;
  if (options.conversation_path == "-") {
    text.assign(std::istreambuf_iterator<char>(in),
                std::istreambuf_iterator<char>());
    if (text.size() > kMaxConversationBytes) {
      return absl::OutOfRangeError("the conversation is larger than 16 MiB");
    }
  } else {
    ASSIGN_OR_RETURN(text, ReadFileToString(options.conversation_path,
                                            kMaxConversationBytes));
  }
  // Depth and syntax checked on the plain parser, then read again keeping
  // the order of keys, which tojson prints as written.
  RETURN_IF_ERROR(ParseUntrustedJson(text, options.conversation_path).status());
  const nlohmann::ordered_json conversation =
      nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!conversation.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.conversation_path, ": expected a JSON object with messages"));
  }
  ASSIGN_OR_RETURN(lora::ChatTemplate chat,
                   lora::ChatTemplate::Load(options.model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Tokenizer> tokenizer,
                   lora::LoadTokenizer(options.model_dir));
  ASSIGN_OR_RETURN(std::string rendered, chat.Render(conversation));
  ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                   tokenizer->Encode(rendered, /*add_bos=*/false));
  if (options.json) {
    out << nlohmann::json{{"rendered", rendered}, {"ids", ids}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  } else {
    out << rendered << "\n" << absl::StrJoin(ids, " ") << "\n";
  }
  return absl::OkStatus();
}

}  // namespace openforce::worker
