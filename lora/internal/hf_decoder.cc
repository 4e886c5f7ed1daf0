// Decoders; see hf_decoder.h. Each follows the decode_chain of the crate's
// decoder of the same name.
#include "lora/internal/hf_decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/untrusted_json.h"
#include "lora/internal/hf_pattern.h"
#include "lora/internal/hf_pre_tokenizer.h"
#include "lora/internal/unicode_text.h"

namespace openforce::lora::internal {
namespace {

class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& token : *tokens) {
      // A token with any character outside the byte table contributes its
      // own UTF-8 bytes (added tokens such as <|eot_id|> in other scripts).
      std::string mapped;
      mapped.reserve(token.size());
      bool all_mapped = true;
      size_t pos = 0;
      while (pos < token.size()) {
        const int byte = ByteLevelByte(NextCodePoint(token, &pos));
        if (byte < 0) {
          all_mapped = false;
          break;
        }
        mapped.push_back(static_cast<char>(byte));
      }
      bytes += all_mapped ? mapped : token;
    }
    *tokens = {ToValidUtf8(bytes)};
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepend)
      : replacement_(std::move(replacement)), prepend_(prepend) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& token = (*tokens)[i];
      std::string out;
      out.reserve(token.size());
      size_t pos = 0;
      while (pos < token.size()) {
        if (token.compare(pos, replacement_.size(), replacement_) == 0) {
          // The crate drops every replacement of the first token when a
          // prefix was prepended, and turns the others into spaces.
          if (!(i == 0 && prepend_)) out.push_back(' ');
          pos += replacement_.size();
        } else {
          out.push_back(token[pos++]);
        }
      }
      token = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool prepend_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i)
          out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& token : *tokens) {
      int byte = -1;
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 &&
          token[5] == '>') {
        byte = ParseHexByte(token[3], token[4]);
      }
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    *tokens = std::move(out);
  }

 private:
  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int ParseHexByte(char high, char low) {
    const int h = HexDigit(high), l = HexDigit(low);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string joined;
    for (const std::string& token : *tokens) joined += token;
    *tokens = {std::move(joined)};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      std::vector<size_t> offsets;  // start of each character
      std::vector<char32_t> chars;
      size_t pos = 0;
      while (pos < token.size()) {
        offsets.push_back(pos);
        chars.push_back(NextCodePoint(token, &pos));
      }
      offsets.push_back(token.size());
      size_t begin = 0;
      for (size_t i = 0; i < start_ && i < chars.size(); ++i) {
        if (chars[i] != content_) break;
        begin = i + 1;
      }
      size_t end = chars.size();
      for (size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const size_t index = chars.size() - i - 1;
        if (chars[index] != content_ || index < begin) break;
        end = index;
      }
      token = token.substr(offsets[begin], offsets[end] - offsets[begin]);
    }
  }

 private:
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens)
      token = pattern_.ReplaceAll(token, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& step : steps_) step->DecodeChain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(
    const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("type") ||
      !json["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("decoder ", JsonPreview(json), " has no type"));
  }
  const std::string type = json["type"].get<std::string>();
  if (type == "ByteLevel")
    return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (json.contains("replacement") && json["replacement"].is_string()) {
      replacement = json["replacement"].get<std::string>();
    }
    if (replacement.empty()) {
      return absl::InvalidArgumentError(
          "Metaspace decoder has an empty replacement");
    }
    bool prepend = true;
    if (json.contains("prepend_scheme") && json["prepend_scheme"].is_string()) {
      prepend = json["prepend_scheme"] != "never";
    } else if (json.contains("add_prefix_space") &&
               json["add_prefix_space"].is_boolean()) {
      prepend = json["add_prefix_space"].get<bool>();
    }
    return std::unique_ptr<Decoder>(
        new MetaspaceDecoder(std::move(replacement), prepend));
  }
  if (type == "ByteFallback")
    return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Strip") {
    if (!json.contains("content") || !json["content"].is_string() ||
        !json.contains("start") || !json["start"].is_number_integer() ||
        json["start"].get<int64_t>() < 0 || !json.contains("stop") ||
        !json["stop"].is_number_integer() || json["stop"].get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          "Strip decoder needs 'content', 'start' and 'stop'");
    }
    const std::string content = json["content"].get<std::string>();
    size_t pos = 0;
    const char32_t c = NextCodePoint(content, &pos);
    if (pos != content.size()) {
      return absl::InvalidArgumentError(
          "Strip decoder content must be one character");
    }
    return std::unique_ptr<Decoder>(new StripDecoder(
        c, json["start"].get<size_t>(), json["stop"].get<size_t>()));
  }
  if (type == "Replace") {
    if (!json.contains("content") || !json["content"].is_string() ||
        !json.contains("pattern")) {
      return absl::InvalidArgumentError(
          "Replace decoder needs 'pattern' and 'content'");
    }
    absl::StatusOr<Pattern> pattern =
        Pattern::Parse(json["pattern"], "Replace decoder");
    if (!pattern.ok()) return pattern.status();
    return std::unique_ptr<Decoder>(new ReplaceDecoder(
        *std::move(pattern), json["content"].get<std::string>()));
  }
  if (type == "Sequence") {
    if (!json.contains("decoders") || !json["decoders"].is_array()) {
      return absl::InvalidArgumentError(
          "Sequence decoder has no 'decoders' list");
    }
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const nlohmann::json& step : json["decoders"]) {
      absl::StatusOr<std::unique_ptr<Decoder>> parsed = ParseDecoder(step);
      if (!parsed.ok()) return parsed.status();
      steps.push_back(*std::move(parsed));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(steps)));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "decoder type '", type,
      "' is not supported (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, "
      "Replace, Sequence)"));
}

}  // namespace openforce::lora::internal
