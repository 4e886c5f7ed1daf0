// Streaming tokenizer.json reader; see tokenizer_json_reader.h.
#include "lora/internal/tokenizer_json_reader.h"

#include "absl/strings/str_cat.h"

namespace openforce::lora::internal {
namespace {

constexpr size_t kMaxDepth = 64;

using json = nlohmann::json;

class Handler {
 public:
  explicit Handler(TokenizerJson* out) : out_(out) {}

  bool null() { return Value(json(nullptr)); }
  bool boolean(bool value) { return Value(json(value)); }
  bool number_integer(json::number_integer_t value) {
    if (mode_ == Mode::kVocab) return VocabId(value);
    return Value(json(value));
  }
  bool number_unsigned(json::number_unsigned_t value) {
    if (mode_ == Mode::kVocab) {
      return VocabId(value > static_cast<uint64_t>(INT64_MAX)
                         ? -1
                         : static_cast<int64_t>(value));
    }
    return Value(json(value));
  }
  bool number_float(json::number_float_t value, const std::string&) {
    if (mode_ != Mode::kNormal) return Fail("a number where a token belongs");
    return Value(json(value));
  }
  bool string(std::string& value) {
    switch (mode_) {
      case Mode::kVocab:
        return Fail("a string where a vocab id belongs");
      case Mode::kMerges: {
        // "a b"
        const size_t space = value.find(' ');
        if (space == std::string::npos ||
            value.find(' ', space + 1) != std::string::npos) {
          return Fail(absl::StrCat("merge '", value,
                                   "' is not two tokens separated by one "
                                   "space"));
        }
        out_->merges.emplace_back(value.substr(0, space),
                                  value.substr(space + 1));
        return true;
      }
      case Mode::kMergePair:
        if (pair_.size() >= 2) return Fail("a merge pair with more than two");
        pair_.push_back(std::move(value));
        return true;
      case Mode::kNormal:
        return Value(json(std::move(value)));
    }
    return true;
  }
  bool binary(json::binary_t&) { return Fail("binary value"); }

  bool start_object(std::size_t) {
    if (mode_ != Mode::kNormal) return Fail("an object inside vocab or merges");
    if (++depth_ > kMaxDepth) return Fail("nesting deeper than 64");
    if (depth_ == 3 && path_model_ && key_ == "vocab") {
      mode_ = Mode::kVocab;
      out_->has_vocab = true;
      Value(json::object());
      return true;
    }
    json* value = Value(json::object()) ? last_ : nullptr;
    stack_.push_back(value);
    return true;
  }
  bool key(std::string& key) {
    if (mode_ == Mode::kVocab) {
      vocab_key_ = std::move(key);
      return true;
    }
    if (depth_ == 1) path_model_ = key == "model";
    key_ = key;
    object_element_ = &(*stack_.back())[key];
    return true;
  }
  bool end_object() {
    --depth_;
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kNormal;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (++depth_ > kMaxDepth) return Fail("nesting deeper than 64");
    if (mode_ == Mode::kVocab) return Fail("a list where a vocab id belongs");
    if (mode_ == Mode::kMergePair) return Fail("a list inside a merge pair");
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kMergePair;
      pair_.clear();
      return true;
    }
    if (depth_ == 3 && path_model_ && key_ == "merges") {
      mode_ = Mode::kMerges;
      Value(json::array());
      return true;
    }
    json* value = Value(json::array()) ? last_ : nullptr;
    stack_.push_back(value);
    return true;
  }
  bool end_array() {
    --depth_;
    if (mode_ == Mode::kMergePair) {
      if (pair_.size() != 2) return Fail("a merge pair without two tokens");
      out_->merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::kMerges;
      return true;
    }
    if (mode_ == Mode::kMerges) {
      mode_ = Mode::kNormal;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& error) {
    if (error_.empty()) {
      error_ =
          absl::StrCat("malformed JSON at byte ", position, ": ", error.what());
    }
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  enum class Mode { kNormal, kVocab, kMerges, kMergePair };

  // Places a value where the tree is being built; last_ points at it.
  bool Value(json value) {
    if (stack_.empty()) {
      out_->rest = std::move(value);
      last_ = &out_->rest;
    } else if (stack_.back()->is_array()) {
      stack_.back()->push_back(std::move(value));
      last_ = &stack_.back()->back();
    } else {
      *object_element_ = std::move(value);
      last_ = object_element_;
    }
    return true;
  }
  bool VocabId(int64_t id) {
    if (id < 0 || id >= (1 << 24)) {
      return Fail(absl::StrCat("vocab entry '", vocab_key_, "' has id ", id,
                               " outside [0, 2^24)"));
    }
    out_->vocab.emplace_back(std::move(vocab_key_), static_cast<int32_t>(id));
    return true;
  }
  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what;
    return false;
  }

  TokenizerJson* out_;
  std::vector<json*> stack_;
  json* object_element_ = nullptr;
  json* last_ = nullptr;
  size_t depth_ = 0;
  bool path_model_ = false;  // inside the top-level "model" object
  std::string key_;
  std::string vocab_key_;
  std::vector<std::string> pair_;
  Mode mode_ = Mode::kNormal;
  std::string error_;
};

}  // namespace

absl::StatusOr<TokenizerJson> ReadTokenizerJson(const std::string& text,
                                                const std::string& source) {
  TokenizerJson out;
  Handler handler(&out);
  bool ok = false;
  try {
    ok = json::sax_parse(text, &handler);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": ",
        handler.error().empty() ? "malformed JSON" : handler.error()));
  }
  return out;
}

}  // namespace openforce::lora::internal
