// `openforce-worker tokenize`; see tokenize_command.h.
#include "worker/tokenize_command.h"

#include <istream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/tokenizer.h"

namespace openforce::worker {
namespace {

// Input larger than this is refused rather than read into memory.
constexpr size_t kMaxInputBytes = 256u << 20;
constexpr size_t kMaxLineBytes = 64u << 20;

absl::StatusOr<std::string> ReadAll(std::istream& in) {
  std::string text;
  char buffer[1 << 16];
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxInputBytes) {
      return absl::OutOfRangeError(
          absl::StrCat("input is larger than ", kMaxInputBytes >> 20,
                       " MiB; use --jsonl to stream it line by line"));
    }
  }
  return text;
}

absl::StatusOr<std::vector<int64_t>> ParseIds(absl::string_view text) {
  std::vector<int64_t> ids;
  for (absl::string_view part :
       absl::StrSplit(text, absl::ByAnyChar(" ,\n\t\r"), absl::SkipEmpty())) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(part, &id) || id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(JsonPreview(std::string(part)), " is not a token id"));
    }
    ids.push_back(id);
  }
  return ids;
}

nlohmann::json EncodeResult(const lora::Tokenizer& tokenizer,
                            const std::vector<int64_t>& ids) {
  nlohmann::json tokens = nlohmann::json::array();
  for (int64_t id : ids) {
    std::optional<std::string> token = tokenizer.IdToToken(id);
    tokens.push_back(token.has_value() ? nlohmann::json(*token)
                                       : nlohmann::json(nullptr));
  }
  return {{"ids", ids}, {"tokens", tokens}};
}

// One --jsonl line: its JSON result.
absl::StatusOr<nlohmann::json> RunLine(const TokenizeOptions& options,
                                       const lora::Tokenizer& tokenizer,
                                       const std::string& line) {
  ASSIGN_OR_RETURN(nlohmann::json value, ParseUntrustedJson(line, "line"));
  if (options.decode) {
    if (!value.is_array()) {
      return absl::InvalidArgumentError("expected a JSON array of token ids");
    }
    std::vector<int64_t> ids;
    for (const nlohmann::json& id : value) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(JsonPreview(id), " is not a token id"));
      }
      ids.push_back(id.get<int64_t>());
    }
    ASSIGN_OR_RETURN(std::string text,
                     tokenizer.DecodeTokens(ids, options.skip_special_tokens));
    return nlohmann::json{{"text", text}};
  }
  if (!value.is_string()) {
    return absl::InvalidArgumentError("expected a JSON string");
  }
  ASSIGN_OR_RETURN(
      std::vector<int64_t> ids,
      tokenizer.Encode(value.get<std::string>(), options.add_special_tokens));
  return EncodeResult(tokenizer, ids);
}

// JSON text is UTF-8; replace what is not, so a dump never throws.
std::string Dump(const nlohmann::json& json) {
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

absl::Status RunTokenizeCommand(const TokenizeOptions& options,
                                std::istream& in, std::ostream& out) {
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError("--model is required");
  }
  if (options.json && options.jsonl) {
    return absl::InvalidArgumentError("give --json or --jsonl, not both");
  }
  if (options.decode && options.add_special_tokens) {
    return absl::InvalidArgumentError(
        "--add-special-tokens applies to encoding, not --decode");
  }
  if (!options.decode && options.skip_special_tokens) {
    return absl::InvalidArgumentError(
        "--skip-special-tokens applies to --decode");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<lora::Tokenizer> tokenizer,
                   lora::LoadTokenizer(options.model_dir));
  if (options.jsonl) {
    std::string line;
    int64_t number = 0, failed = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.size() > kMaxLineBytes) {
        ++failed;
        out << Dump({{"line", number}, {"error", "line too long"}}) << "\n";
        continue;
      }
      if (!line.empty() && line.back() == '\r') line.pop_back();
      absl::StatusOr<nlohmann::json> result =
          RunLine(options, *tokenizer, line);
      if (result.ok()) {
        out << Dump(*result) << "\n";
      } else {
        ++failed;
        out << Dump({{"line", number},
                     {"error", std::string(result.status().message())}})
            << "\n";
      }
    }
    out.flush();
    if (failed > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(failed, " of ", number, " lines failed"));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::string input, ReadAll(in));
  if (options.decode) {
    ASSIGN_OR_RETURN(std::vector<int64_t> ids, ParseIds(input));
    ASSIGN_OR_RETURN(std::string text,
                     tokenizer->DecodeTokens(ids, options.skip_special_tokens));
    if (options.json) {
      out << Dump({{"text", text}}) << "\n";
    } else {
      out << text;
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                   tokenizer->Encode(input, options.add_special_tokens));
  if (options.json) {
    out << Dump(EncodeResult(*tokenizer, ids)) << "\n";
  } else {
    out << absl::StrJoin(ids, " ") << "\n";
  }
  return absl::OkStatus();
}

}  // namespace openforce::worker
