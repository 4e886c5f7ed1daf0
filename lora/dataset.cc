// Training data; see dataset.h.
#include "lora/dataset.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"

namespace openforce::lora {

absl::StatusOr<std::vector<TrainingRecord>> ParseJsonl(
    const std::string& text, const std::string& source) {
  std::vector<TrainingRecord> records;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const std::string where = absl::StrCat(source, ":", line_number, ": ");
    absl::StatusOr<nlohmann::json> parsed =
        ParseUntrustedJson(line, absl::StrCat(source, ":", line_number));
    if (!parsed.ok()) return parsed.status();
    const nlohmann::json& json = *parsed;
    if (!json.is_object()) {
      return absl::InvalidArgumentError(where + "not a JSON object");
    }
    TrainingRecord record;
    record.line = line_number;
    if (json.contains("messages")) {
      const nlohmann::json& messages = json["messages"];
      if (!messages.is_array() || messages.empty()) {
        return absl::InvalidArgumentError(
            where + "\"messages\" must be a non-empty list");
      }
      bool has_assistant = false;
      for (size_t i = 0; i < messages.size(); ++i) {
        const nlohmann::json& message = messages[i];
        const std::string which = absl::StrCat("message ", i + 1, " ");
        if (!message.is_object() || !message.contains("role") ||
            !message["role"].is_string()) {
          return absl::InvalidArgumentError(where + which +
                                            "needs a string \"role\"");
        }
        const std::string role = message["role"].get<std::string>();
        if (role != "system" && role != "user" && role != "assistant" &&
            role != "tool") {
          return absl::InvalidArgumentError(
              where + which + "has role '" + role +
              "' (system, user, assistant, tool)");
        }
        if (!message.contains("content") || !message["content"].is_string()) {
          return absl::InvalidArgumentError(where + which +
                                            "needs a string \"content\"");
        }
        has_assistant |= role == "assistant" &&
                         !message["content"].get<std::string>().empty();
      }
      if (!has_assistant) {
        return absl::InvalidArgumentError(
            where + "nothing to learn: no assistant turn with content");
      }
      // Re-read keeping key order: templates print tool calls with tojson.
      const nlohmann::ordered_json ordered =
          nlohmann::ordered_json::parse(line, nullptr, false);
      record.conversation =
          nlohmann::ordered_json{{"messages", ordered["messages"]}}.dump();
      records.push_back(std::move(record));
      continue;
    }
    if (json.contains("text")) {
      if (!json["text"].is_string())
        return absl::InvalidArgumentError(where + "\"text\" is not a string");
      record.completion = json["text"].get<std::string>();
    } else if (json.contains("prompt") && json.contains("completion")) {
      if (!json["prompt"].is_string() || !json["completion"].is_string()) {
        return absl::InvalidArgumentError(
            where + "\"prompt\" and \"completion\" must be strings");
      }
      record.prompt = json["prompt"].get<std::string>();
      record.completion = json["completion"].get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          where +
          "expected {\"text\": ...}, {\"prompt\": ..., \"completion\": ...} "
          "or {\"messages\": [...]}");
    }
    if (record.completion.empty()) {
      return absl::InvalidArgumentError(
          where + "nothing to learn: empty text or completion");
    }
    records.push_back(std::move(record));
  }
  if (records.empty())
    return absl::InvalidArgumentError(source + ": no records");
  return records;
}

absl::StatusOr<std::vector<TrainingRecord>> ReadJsonl(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseJsonl(text, path);
}

absl::StatusOr<Example> TokenizeConversation(
    const std::string& conversation_json, const ChatTemplate& chat_template,
    const Tokenizer& tokenizer) {
  nlohmann::ordered_json conversation =
      nlohmann::ordered_json::parse(conversation_json, nullptr, false);
  if (!conversation.is_object() || !conversation.contains("messages")) {
    return absl::InvalidArgumentError("not a conversation");
  }
  conversation["add_generation_prompt"] = false;
  ASSIGN_OR_RETURN(std::string rendered, chat_template.Render(conversation));
  std::string end_of_turn;
  if (std::optional<int64_t> eos = tokenizer.eos_id()) {
    if (std::optional<std::string> token = tokenizer.IdToToken(*eos)) {
      end_of_turn = *token;
    }
  }
  // Character spans of the assistant turns, found in order in the rendered
  // text (templates trim contents, so the trimmed text is looked for too).
  std::vector<std::pair<size_t, size_t>> spans;
  size_t cursor = 0;
  int turn = 0;
  for (const auto& message : conversation["messages"]) {
    ++turn;
    if (message["role"] != "assistant") continue;
    const std::string content = message["content"].get<std::string>();
    const std::string trimmed(absl::StripAsciiWhitespace(content));
    if (trimmed.empty()) continue;
    size_t begin = rendered.find(content, cursor);
    size_t length = content.size();
    if (begin == std::string::npos) {
      begin = rendered.find(trimmed, cursor);
      length = trimmed.size();
    }
    if (begin == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "assistant message ", turn,
          " does not appear in the text the chat template renders"));
    }
    size_t end = begin + length;
    if (!end_of_turn.empty() &&
        rendered.compare(end, end_of_turn.size(), end_of_turn) == 0) {
      end += end_of_turn.size();
    }
    spans.emplace_back(begin, end);
    cursor = end;
  }
  Example example;
  auto append = [&](size_t begin, size_t end, bool learn) -> absl::Status {
    if (end <= begin) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                     tokenizer.Encode(rendered.substr(begin, end - begin),
                                      /*add_bos=*/false));
    example.input_ids.insert(example.input_ids.end(), ids.begin(), ids.end());
    if (learn) {
      example.labels.insert(example.labels.end(), ids.begin(), ids.end());
    } else {
      example.labels.insert(example.labels.end(), ids.size(), kIgnoreLabel);
    }
    return absl::OkStatus();
  };
  size_t done = 0;
  for (const auto& [begin, end] : spans) {
    RETURN_IF_ERROR(append(done, begin, false));
    RETURN_IF_ERROR(append(begin, end, true));
    done = end;
  }
  RETURN_IF_ERROR(append(done, rendered.size(), false));
  return example;
}

absl::StatusOr<std::vector<Example>> TokenizeRecords(
    const std::vector<TrainingRecord>& records, const Tokenizer& tokenizer,
    const TokenizeOptions& options) {
  if (options.sequence_length < 2) {
    return absl::InvalidArgumentError("sequence length must be at least 2");
  }
  std::vector<Example> examples;
  for (const TrainingRecord& record : records) {
    if (!record.conversation.empty()) {
      if (options.chat_template == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "record at line ", record.line,
            " is a conversation, and the model has no chat template"));
      }
      absl::StatusOr<Example> example = TokenizeConversation(
          record.conversation, *options.chat_template, tokenizer);
      if (!example.ok()) {
        return absl::Status(example.status().code(),
                            absl::StrCat("record at line ", record.line, ": ",
                                         example.status().message()));
      }
      examples.push_back(*std::move(example));
      continue;
    }
    Example example;
    ASSIGN_OR_RETURN(std::vector<int64_t> prompt,
                     tokenizer.Encode(record.prompt, true));
    ASSIGN_OR_RETURN(std::vector<int64_t> completion,
                     tokenizer.Encode(record.completion, false));
    if (tokenizer.eos_id()) completion.push_back(*tokenizer.eos_id());
    example.input_ids = prompt;
    example.labels.assign(prompt.size(), kIgnoreLabel);
    example.input_ids.insert(example.input_ids.end(), completion.begin(),
                             completion.end());
    example.labels.insert(example.labels.end(), completion.begin(),
                          completion.end());
    examples.push_back(std::move(example));
  }
  const size_t length = static_cast<size_t>(options.sequence_length);
  std::vector<Example> sequences;
  if (options.packing) {
    Example stream;
    for (const Example& example : examples) {
      stream.input_ids.insert(stream.input_ids.end(), example.input_ids.begin(),
                              example.input_ids.end());
      stream.labels.insert(stream.labels.end(), example.labels.begin(),
                           example.labels.end());
    }
    // Full sequences only: a ragged tail would need padding, which packing
    // avoids.
    for (size_t start = 0; start + length <= stream.input_ids.size();
         start += length) {
      Example chunk;
      chunk.input_ids.assign(stream.input_ids.begin() + start,
                             stream.input_ids.begin() + start + length);
      chunk.labels.assign(stream.labels.begin() + start,
                          stream.labels.begin() + start + length);
      sequences.push_back(std::move(chunk));
    }
    if (sequences.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the data holds ", stream.input_ids.size(),
                       " tokens, fewer than one packed sequence of ", length));
    }
  } else {
    for (Example& example : examples) {
      example.input_ids.resize(std::min(example.input_ids.size(), length));
      example.labels.resize(example.input_ids.size());
      example.input_ids.resize(length, options.pad_id);
      example.labels.resize(length, kIgnoreLabel);
      sequences.push_back(std::move(example));
    }
  }
  return sequences;
}

}  // namespace openforce::lora
