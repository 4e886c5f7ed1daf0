// Jinja parser: tokens to the syntax tree, with Jinja2's operator precedence.
// Statements chat templates do not use (extends, include, import, block,
// raw, with, autoescape) are refused with their name and line.
#ifndef OPENFORCE_JINJA_INTERNAL_PARSER_H_
#define OPENFORCE_JINJA_INTERNAL_PARSER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "jinja/internal/ast.h"
#include "jinja/internal/lexer.h"

namespace openforce::jinja::internal {

[[nodiscard]] absl::StatusOr<NodeList> Parse(std::vector<Token> tokens);

}  // namespace openforce::jinja::internal

#endif  // OPENFORCE_JINJA_INTERNAL_PARSER_H_
