// Training data; see dataset.h.
#include "lora/dataset.h"

#include <nlohmann/json.hpp>

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
          "expected {\"text\": ...} or {\"prompt\": ..., \"completion\": ...}");
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

absl::StatusOr<std::vector<Example>> TokenizeRecords(
    const std::vector<TrainingRecord>& records, const Tokenizer& tokenizer,
    const TokenizeOptions& options) {
  if (options.sequence_length < 2) {
    return absl::InvalidArgumentError("sequence length must be at least 2");
  }
  std::vector<Example> examples;
  for (const TrainingRecord& record : records) {
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
