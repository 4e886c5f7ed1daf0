// Jinja lexer: template text to tokens, applying the whitespace rules
// transformers' chat templates render with (trim_blocks, lstrip_blocks, "-"
// markers, a single trailing newline dropped).
#ifndef OPENFORCE_JINJA_INTERNAL_LEXER_H_
#define OPENFORCE_JINJA_INTERNAL_LEXER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce::jinja::internal {

enum class TokenKind {
  kText,
  kOutputBegin,  // {{
  kOutputEnd,    // }}
  kBlockBegin,   // {%
  kBlockEnd,     // %}
  kName,
  kString,
  kInt,
  kFloat,
  kOperator,
  kEnd
};

struct Token {
  TokenKind kind;
  std::string text;  // text, name, operator, or the string literal's value
  int line = 1;
};

// InvalidArgument naming the line for an unclosed tag, string or comment.
[[nodiscard]] absl::StatusOr<std::vector<Token>> Tokenize(
    absl::string_view source);

}  // namespace openforce::jinja::internal

#endif  // OPENFORCE_JINJA_INTERNAL_LEXER_H_
