// Bounded JSON parsing; see untrusted_json.h.
#include "common/untrusted_json.h"

#include "absl/strings/str_cat.h"

namespace openforce {

absl::Status CheckJsonDepth(absl::string_view text, absl::string_view what,
                            int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": JSON nests deeper than ", max_depth,
                         " levels (at byte ", i, ")"));
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ParseUntrustedJson(absl::string_view text,
                                                  absl::string_view what,
                                                  int max_depth) {
  if (absl::Status deep = CheckJsonDepth(text, what, max_depth); !deep.ok())
    return deep;
  nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  return json;
}

std::string JsonPreview(const nlohmann::json& value, size_t max_chars) {
  std::string text;
  try {
    text = value.dump(-1, ' ', /*ensure_ascii=*/true,
                      nlohmann::json::error_handler_t::replace);
  } catch (const nlohmann::json::exception&) {
    return "<unprintable>";
  }
  if (text.size() > max_chars) {
    text.resize(max_chars);
    text += "...";
  }
  return text;
}

}  // namespace openforce
