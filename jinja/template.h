// A Jinja2 template interpreter focused on what Hugging Face chat templates
// use, with the environment transformers renders them in (trim_blocks,
// lstrip_blocks, loop controls, no autoescape, an immutable sandbox).
// Supported: output, if/elif/else, for (with else, "if" filter, loop.*,
// tuple unpacking), set (names, tuples, namespace attributes, blocks), macros
// (with defaults, keyword arguments and caller), call and filter blocks,
// break/continue, the generation tag, comments, whitespace control;
// expressions with Python operators, slices, list/dict/tuple literals,
// conditionals, tests, filters and string/dict methods (template.cc lists
// them). Anything else is an InvalidArgument naming the construct and its
// line, never a silently different prompt.
#ifndef OPENFORCE_JINJA_TEMPLATE_H_
#define OPENFORCE_JINJA_TEMPLATE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "jinja/value.h"

namespace openforce::jinja {

namespace internal {
struct Node;
}

class Template {
 public:
  // InvalidArgument with the line for a syntax error or an unsupported
  // statement.
  [[nodiscard]] static absl::StatusOr<Template> Parse(absl::string_view source);
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

  // Renders with `context` (a dict) as the global variables. Errors name the
  // line: an unknown filter, test or method, a type error, a template's own
  // raise_exception(message), or output beyond `max_output_bytes`.
  [[nodiscard]] absl::StatusOr<std::string> Render(
      const Value& context, size_t max_output_bytes = 64u << 20) const;

 private:
  Template();
  struct Nodes;
  std::unique_ptr<Nodes> nodes_;
};

}  // namespace openforce::jinja

#endif  // OPENFORCE_JINJA_TEMPLATE_H_
