// `openforce-worker infer`; see infer_command.h.
#include "worker/infer_command.h"

#include <functional>
#include <istream>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/model_manifest.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "worker/chat_history.h"
#include "worker/pull_command.h"

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

absl::Status CheckAdapterBaseModel(const std::string& adapter_dir,
                                   const std::string& model_dir) {
  const std::string record_path = adapter_dir + "/" + kProvenanceFile;
  absl::StatusOr<std::string> record = ReadFileToString(record_path);
  if (absl::IsNotFound(record.status())) return absl::OkStatus();
  RETURN_IF_ERROR(record.status());
  absl::StatusOr<nlohmann::json> json =
      ParseUntrustedJson(*record, record_path);
  if (!json.ok()) return json.status();
  if (!json->is_object() || !json->contains("base_model_hash") ||
      !(*json)["base_model_hash"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        record_path,
        " is not a valid adapter record: no \"base_model_hash\" string"));
  }
  const std::string expected = (*json)["base_model_hash"].get<std::string>();
  ASSIGN_OR_RETURN(std::string actual, ModelDirectoryHash(model_dir));
  if (actual != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the adapter in ", adapter_dir, " was trained on base model ",
        expected.substr(0, 16), "..., but ", model_dir, " is model ",
        actual.substr(0, 16),
        "...; give --model the directory the job was submitted with"));
  }
  return absl::OkStatus();
}

absl::Status RunChat(const lora::InferenceRequest& request,
                     const ChatOptions& options, std::istream& in,
                     std::ostream& out) {
  if (!request.adapter_dir.empty())
    RETURN_IF_ERROR(
        CheckAdapterBaseModel(request.adapter_dir, request.model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<lora::InferenceSession> session,
                   lora::InferenceSession::Open(request));
  const bool templated = !options.raw && session->chat_template() != nullptr &&
                         session->tokenizer() != nullptr;
  if (!options.raw && !templated) {
    out << "[the model has no chat template: sending raw text]\n";
  }
  if (!templated && !options.system.empty()) {
    return absl::InvalidArgumentError(
        "--system needs the model's chat template (drop --raw)");
  }
  const int64_t budget = session->context_length() - request.max_new_tokens;
  if (templated && budget <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-new-tokens ", request.max_new_tokens,
                     " leaves no room in the model's context of ",
                     session->context_length()));
  }
  auto new_history = [&] {
    return ChatHistory(session->chat_template(), session->tokenizer(),
                       options.system, budget);
  };
  ChatHistory history = new_history();
  std::string line;
  while (true) {
    if (options.prompt_marks) out << "> " << std::flush;
    if (!std::getline(in, line)) break;
    const std::string prompt(absl::StripTrailingAsciiWhitespace(line));
    if (prompt == "/quit" || prompt == "/exit") break;
    if (prompt == "/reset") {
      history = new_history();
      out << "[history cleared]\n";
      continue;
    }
    if (prompt.empty()) continue;
    auto stream = [&out](absl::string_view piece) {
      out << piece << std::flush;
    };
    absl::StatusOr<lora::InferenceResult> result;
    if (templated) {
      const int dropped = history.dropped_turns();
      absl::StatusOr<std::vector<int64_t>> ids = history.PromptFor(prompt);
      if (absl::IsOutOfRange(ids.status())) {
        out << "[" << ids.status().message() << "]\n";
        continue;
      }
      if (!ids.ok()) return ids.status();
      if (history.dropped_turns() > dropped) {
        out << "[context full: dropped the "
            << history.dropped_turns() - dropped << " oldest turn(s)]\n";
      }
      result = session->Generate(std::nullopt, *ids, stream);
      if (result.ok()) {
        history.AddReply(
            std::string(absl::StripTrailingAsciiWhitespace(result->text)));
      }
    } else {
      result = session->Generate(prompt, {}, stream);
    }
    if (!result.ok()) return result.status();
    out << "\n[" << result->generated_ids.size() << " tokens, "
        << absl::StrFormat("%.1f", result->decode_tokens_per_second)
        << " tokens/s]\n"
        << std::flush;
  }
  if (options.prompt_marks) out << "\n";
  return absl::OkStatus();
}

absl::Status RunInferCommand(const lora::InferenceRequest& request, bool json,
                             std::ostream& out) {
  if (!request.adapter_dir.empty())
    RETURN_IF_ERROR(
        CheckAdapterBaseModel(request.adapter_dir, request.model_dir));
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
        {"weight_format", result.weight_format},
        {"quantized_embeddings", result.quantized_embeddings},
        {"quantized_sha256", result.quantized_sha256},
        {"quantized_cache", result.quantized_cache},
        {"load_seconds", result.load_seconds},
        {"prefill_seconds", result.prefill_seconds},
        {"decode_tokens_per_second", result.decode_tokens_per_second},
    };
    // Generated bytes need not be valid UTF-8; JSON output replaces what is
    // not.
    out << report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  } else if (!request.prompt_text.has_value() && result.text.empty()) {
    // No tokenizer: the ids are the output.
    out << absl::StrJoin(result.generated_ids, " ") << "\n";
  } else {
    out << "\n";
  }
  return absl::OkStatus();
}

}  // namespace openforce::worker
