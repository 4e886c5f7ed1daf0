// tokenizer.json; see hf_tokenizer.h.
#include "lora/hf_tokenizer.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/untrusted_json.h"
#include "lora/internal/hf_added_vocabulary.h"
#include "lora/internal/hf_bpe.h"
#include "lora/internal/hf_decoder.h"
#include "lora/internal/hf_normalizer.h"
#include "lora/internal/hf_pre_tokenizer.h"
#include "lora/internal/special_token.h"
#include "lora/internal/tokenizer_json_reader.h"

namespace openforce::lora {
namespace {

// tokenizer.json files run to tens of megabytes (Gemma 3: 33 MB).
constexpr size_t kMaxTokenizerJsonBytes = 512ull << 20;

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

absl::StatusOr<std::optional<std::string>> OptionalString(
    const nlohmann::json& json, const char* key, const std::string& source) {
  if (!json.contains(key) || json[key].is_null()) return std::nullopt;
  if (!json[key].is_string()) {
    return Bad(source, absl::StrCat("model '", key, "' must be a string"));
  }
  return json[key].get<std::string>();
}

bool BoolField(const nlohmann::json& json, const char* key) {
  return json.contains(key) && json[key].is_boolean() && json[key].get<bool>();
}

absl::StatusOr<std::unique_ptr<internal::BpeModel>> ParseBpeModel(
    internal::TokenizerJson& document, const std::string& source) {
  const nlohmann::json& model = document.rest["model"];
  if (!model.is_object()) return Bad(source, "'model' is not an object");
  std::string type = "BPE";
  if (model.contains("type") && model["type"].is_string()) {
    type = model["type"].get<std::string>();
  } else if (!model.contains("merges")) {
    type = "WordPiece or Unigram";
  }
  if (type != "BPE") {
    return Bad(source,
               absl::StrCat("model type '", type,
                            "' is not supported (only BPE; "
                            "WordPiece, Unigram and WordLevel are not)"));
  }
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0)) {
    return Bad(source,
               "BPE dropout is not supported (it makes encoding random)");
  }
  internal::BpeOptions options;
  ASSIGN_OR_RETURN(options.unk_token,
                   OptionalString(model, "unk_token", source));
  ASSIGN_OR_RETURN(std::optional<std::string> prefix,
                   OptionalString(model, "continuing_subword_prefix", source));
  ASSIGN_OR_RETURN(std::optional<std::string> suffix,
                   OptionalString(model, "end_of_word_suffix", source));
  options.continuing_subword_prefix = prefix.value_or("");
  options.end_of_word_suffix = suffix.value_or("");
  options.fuse_unk = BoolField(model, "fuse_unk");
  options.byte_fallback = BoolField(model, "byte_fallback");
  options.ignore_merges = BoolField(model, "ignore_merges");

  if (!document.has_vocab) {
    return Bad(source, "BPE model has no 'vocab' object");
  }
  absl::StatusOr<std::unique_ptr<internal::BpeModel>> bpe =
      internal::BpeModel::Create(std::move(document.vocab), document.merges,
                                 std::move(options));
  if (!bpe.ok()) return Bad(source, std::string(bpe.status().message()));
  return bpe;
}

absl::StatusOr<std::vector<internal::AddedToken>> ParseAddedTokens(
    const nlohmann::json& json, const std::string& source) {
  std::vector<internal::AddedToken> tokens;
  if (!json.contains("added_tokens") || json["added_tokens"].is_null()) {
    return tokens;
  }
  if (!json["added_tokens"].is_array()) {
    return Bad(source, "'added_tokens' is not a list");
  }
  for (const nlohmann::json& entry : json["added_tokens"]) {
    if (!entry.is_object() || !entry.contains("id") ||
        !entry["id"].is_number_integer() || !entry.contains("content") ||
        !entry["content"].is_string()) {
      return Bad(source,
                 absl::StrCat("added token ", JsonPreview(entry),
                              " needs an integer 'id' and a 'content'"));
    }
    internal::AddedToken token;
    token.content = entry["content"].get<std::string>();
    const int64_t id = entry["id"].get<int64_t>();
    if (id < 0 || id >= (1 << 24) || token.content.empty()) {
      return Bad(source, absl::StrCat("added token ", JsonPreview(entry),
                                      " has a bad id or empty content"));
    }
    token.id = static_cast<int32_t>(id);
    token.special = BoolField(entry, "special");
    token.lstrip = BoolField(entry, "lstrip");
    token.rstrip = BoolField(entry, "rstrip");
    token.single_word = BoolField(entry, "single_word");
    // The crate's default: special tokens are not normalized, others are.
    token.normalized =
        entry.contains("normalized") && entry["normalized"].is_boolean()
            ? entry["normalized"].get<bool>()
            : !token.special;
    tokens.push_back(std::move(token));
  }
  return tokens;
}

// A special-token name from tokenizer_config.json: a string or an
// AddedToken-like object with "content".
std::optional<std::string> ConfigTokenName(const nlohmann::json& config,
                                           const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  return internal::SpecialTokenText(config[key]);
}

}  // namespace

HfTokenizer::HfTokenizer() = default;
HfTokenizer::~HfTokenizer() = default;

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(
    const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  ASSIGN_OR_RETURN(std::string text,
                   ReadFileToString(path, kMaxTokenizerJsonBytes));
  std::string config;
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    ASSIGN_OR_RETURN(config, ReadFileToString(config_path, 64ull << 20));
  }
  return Parse(text, config, path);
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Parse(
    const std::string& tokenizer_json, const std::string& config_json,
    const std::string& source) {
  ASSIGN_OR_RETURN(internal::TokenizerJson document,
                   internal::ReadTokenizerJson(tokenizer_json, source));
  const nlohmann::json& json = document.rest;
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  try {
    if (!json.is_object() || !json.contains("model")) {
      return Bad(source, "not a tokenizer.json (no 'model')");
    }
    ASSIGN_OR_RETURN(tokenizer->model_, ParseBpeModel(document, source));
    ASSIGN_OR_RETURN(std::vector<internal::AddedToken> added,
                     ParseAddedTokens(json, source));
    tokenizer->added_ =
        std::make_unique<internal::AddedVocabulary>(std::move(added));
    auto component = [&](const char* key, auto parse, auto* out) {
      if (!json.contains(key) || json[key].is_null()) return absl::OkStatus();
      auto parsed = parse(json[key]);
      if (!parsed.ok()) {
        return Bad(source, std::string(parsed.status().message()));
      }
      *out = *std::move(parsed);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(component("normalizer", internal::ParseNormalizer,
                              &tokenizer->normalizer_));
    RETURN_IF_ERROR(component("pre_tokenizer", internal::ParsePreTokenizer,
                              &tokenizer->pre_tokenizer_));
    RETURN_IF_ERROR(
        component("decoder", internal::ParseDecoder, &tokenizer->decoder_));
    if (json.contains("post_processor") && !json["post_processor"].is_null()) {
      RETURN_IF_ERROR(
          tokenizer->ParsePostProcessor(json["post_processor"], source));
    }
    if (json.contains("truncation") && json["truncation"].is_object()) {
      const nlohmann::json& truncation = json["truncation"];
      if (truncation.contains("max_length") &&
          truncation["max_length"].is_number_unsigned()) {
        tokenizer->truncation_max_length_ =
            truncation["max_length"].get<size_t>();
      }
      tokenizer->truncate_left_ =
          truncation.contains("direction") && truncation["direction"] == "Left";
    }
    if (json.contains("padding") && json["padding"].is_object() &&
        json["padding"].contains("strategy") &&
        json["padding"]["strategy"].is_object()) {
      return Bad(source,
                 "fixed-length padding in tokenizer.json is not supported");
    }
  } catch (const std::exception& e) {
    return Bad(source, e.what());
  }

  // bos / eos: tokenizer_config.json names them; without it, the template's
  // leading special token is the bos.
  nlohmann::json config;
  if (!config_json.empty()) {
    ASSIGN_OR_RETURN(config,
                     ParseUntrustedJson(config_json, "tokenizer_config.json"));
  }
  if (std::optional<std::string> bos = ConfigTokenName(config, "bos_token")) {
    tokenizer->bos_id_ = tokenizer->TokenToId(*bos);
  } else if (!tokenizer->prefix_ids_.empty()) {
    tokenizer->bos_id_ = tokenizer->prefix_ids_.front();
  }
  if (std::optional<std::string> eos = ConfigTokenName(config, "eos_token")) {
    tokenizer->eos_id_ = tokenizer->TokenToId(*eos);
  }
  return tokenizer;
}

absl::Status HfTokenizer::ParsePostProcessor(const nlohmann::json& json,
                                             const std::string& source) {
  if (!json.is_object() || !json.contains("type") ||
      !json["type"].is_string()) {
    return Bad(source, "post_processor has no type");
  }
  const std::string type = json["type"].get<std::string>();
  if (type == "ByteLevel") return absl::OkStatus();  // offsets only
  if (type == "Sequence") {
    if (!json.contains("processors") || !json["processors"].is_array()) {
      return Bad(source, "Sequence post_processor has no 'processors'");
    }
    for (const nlohmann::json& step : json["processors"]) {
      RETURN_IF_ERROR(ParsePostProcessor(step, source));
    }
    return absl::OkStatus();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    // {"cls": ["<s>", 0], "sep": ["</s>", 2]}: cls A sep.
    for (const char* key : {"cls", "sep"}) {
      if (!json.contains(key) || !json[key].is_array() ||
          json[key].size() != 2 || !json[key][1].is_number_integer()) {
        return Bad(source,
                   absl::StrCat(type, " needs '", key, "' as [token, id]"));
      }
    }
    prefix_ids_.push_back(json["cls"][1].get<int32_t>());
    suffix_ids_.insert(suffix_ids_.begin(), json["sep"][1].get<int32_t>());
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return Bad(source, absl::StrCat("post_processor type '", type,
                                    "' is not supported (TemplateProcessing, "
                                    "ByteLevel, RobertaProcessing, "
                                    "BertProcessing, Sequence)"));
  }
  if (!json.contains("single") || !json["single"].is_array()) {
    return Bad(source, "TemplateProcessing has no 'single' template");
  }
  const nlohmann::json specials = json.contains("special_tokens")
                                      ? json["special_tokens"]
                                      : nlohmann::json::object();
  bool seen_sequence = false;
  std::vector<int32_t> prefix, suffix;
  for (const nlohmann::json& item : json["single"]) {
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) {
        return Bad(source,
                   "TemplateProcessing 'single' names the sequence twice");
      }
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") ||
        !item["SpecialToken"].contains("id") ||
        !item["SpecialToken"]["id"].is_string()) {
      return Bad(source,
                 absl::StrCat("TemplateProcessing item ", JsonPreview(item),
                              " is neither Sequence nor SpecialToken"));
    }
    const std::string name = item["SpecialToken"]["id"].get<std::string>();
    if (!specials.is_object() || !specials.contains(name) ||
        !specials[name].contains("ids") || !specials[name]["ids"].is_array()) {
      return Bad(source, absl::StrCat("TemplateProcessing special token '",
                                      name, "' has no ids"));
    }
    for (const nlohmann::json& id : specials[name]["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        return Bad(source,
                   absl::StrCat("special token '", name, "' has a bad id"));
      }
      (seen_sequence ? suffix : prefix).push_back(id.get<int32_t>());
    }
  }
  prefix_ids_.insert(prefix_ids_.end(), prefix.begin(), prefix.end());
  suffix_ids_.insert(suffix_ids_.end(), suffix.begin(), suffix.end());
  return absl::OkStatus();
}

absl::Status HfTokenizer::EncodeSegment(absl::string_view text,
                                        bool starts_text,
                                        std::vector<int32_t>* ids) const {
  std::string normalized(text);
  if (normalizer_ != nullptr) {
    RETURN_IF_ERROR(normalizer_->Normalize(&normalized));
  }
  // Added tokens flagged normalized=true are found in the normalized text.
  std::vector<internal::TextSegment> segments;
  added_->Split(normalized, /*normalized=*/true, &segments);
  std::vector<std::string> pieces;
  for (const internal::TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids->push_back(segment.token_id);
      continue;
    }
    if (segment.end == segment.begin) continue;
    pieces.clear();
    pieces.emplace_back(normalized, segment.begin, segment.end - segment.begin);
    if (pre_tokenizer_ != nullptr) {
      pre_tokenizer_->PreTokenize(&pieces, starts_text && segment.begin == 0);
    }
    for (const std::string& piece : pieces) {
      RETURN_IF_ERROR(model_->Tokenize(piece, ids));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> HfTokenizer::Encode(absl::string_view text,
                                                         bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<internal::TextSegment> segments;
  added_->Split(text, /*normalized=*/false, &segments);
  for (const internal::TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    RETURN_IF_ERROR(
        EncodeSegment(text.substr(segment.begin, segment.end - segment.begin),
                      segment.begin == 0, &ids));
  }
  if (truncation_max_length_ > 0) {
    const size_t budget =
        add_bos ? truncation_max_length_ -
                      std::min(truncation_max_length_,
                               prefix_ids_.size() + suffix_ids_.size())
                : truncation_max_length_;
    if (ids.size() > budget) {
      if (truncate_left_) {
        ids.erase(ids.begin(), ids.end() - budget);
      } else {
        ids.resize(budget);
      }
    }
  }
  std::vector<int64_t> out;
  out.reserve(ids.size() + prefix_ids_.size() + suffix_ids_.size());
  if (add_bos) out.insert(out.end(), prefix_ids_.begin(), prefix_ids_.end());
  out.insert(out.end(), ids.begin(), ids.end());
  if (add_bos) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::optional<std::string> HfTokenizer::IdToToken(int64_t id) const {
  if (id < 0 || id >= (1 << 24)) return std::nullopt;
  if (const internal::AddedToken* added =
          added_->FindById(static_cast<int32_t>(id))) {
    return added->content;
  }
  const std::string* token = model_->IdToToken(static_cast<int32_t>(id));
  if (token == nullptr) return std::nullopt;
  return *token;
}

std::optional<int64_t> HfTokenizer::TokenToId(absl::string_view token) const {
  if (const internal::AddedToken* added = added_->FindByContent(token)) {
    return added->id;
  }
  std::optional<int32_t> id = model_->TokenToId(token);
  if (!id.has_value()) return std::nullopt;
  return *id;
}

bool HfTokenizer::IsSpecial(int64_t id) const {
  if (id < 0 || id >= (1 << 24)) return false;
  const internal::AddedToken* added =
      added_->FindById(static_cast<int32_t>(id));
  return added != nullptr && added->special;
}

int64_t HfTokenizer::vocab_size() const {
  int64_t size = model_->VocabSize();
  // Added tokens may extend past the model's vocabulary.
  for (int64_t id = size; IdToToken(id).has_value(); ++id) size = id + 1;
  return size;
}

absl::StatusOr<std::string> HfTokenizer::DecodeTokens(
    const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", id, " is negative"));
    }
    if (skip_special_tokens && IsSpecial(id)) continue;
    std::optional<std::string> token = IdToToken(id);
    if (token.has_value()) tokens.push_back(*std::move(token));
  }
  if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
  decoder_->DecodeChain(&tokens);
  return absl::StrJoin(tokens, "");
}

}  // namespace openforce::lora
