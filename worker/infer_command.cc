// `openforce-worker infer`; see infer_command.h.
#include "worker/infer_command.h"

#include <functional>
#include <nlohmann/json.hpp>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace openforce::worker {

absl::StatusOr<std::vector<int64_t>> ParseTokenIds(
    const std::vector<std::string>& parts) {
  std::vector<int64_t> ids;
  for (const std::string& part : parts) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &id) || id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt-ids: '", part,
                       "' is not a token id (non-negative integer)"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::Status RunInferCommand(const lora::InferenceRequest& request, bool json,
                             std::ostream& out) {
  std::function<void(absl::string_view)> on_text;
  if (!json)
    on_text = [&out](absl::string_view piece) { out << piece << std::flush; };
  ASSIGN_OR_RETURN(lora::InferenceResult result,
                   lora::RunInference(request, on_text));
  if (json) {
    nlohmann::json report = {
        {"prompt_ids", result.prompt_ids},
        {"generated_ids", result.generated_ids},
        {"text", result.text},
        {"stop_reason", result.stop_reason},
        {"dtype", result.dtype},
        {"load_seconds", result.load_seconds},
        {"prefill_seconds", result.prefill_seconds},
        {"decode_tokens_per_second", result.decode_tokens_per_second},
    };
    out << report.dump(2) << "\n";
  } else if (!request.prompt_text.has_value() && result.text.empty()) {
    // No tokenizer: the ids are the output.
    out << absl::StrJoin(result.generated_ids, " ") << "\n";
  } else {
    out << "\n";
  }
  return absl::OkStatus();
}

}  // namespace openforce::worker
