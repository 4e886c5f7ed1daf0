// The syntax tree the Jinja parser builds and the interpreter walks.
#ifndef OPENFORCE_JINJA_INTERNAL_AST_H_
#define OPENFORCE_JINJA_INTERNAL_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "jinja/value.h"

namespace openforce::jinja::internal {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // items
    kTuple,      // items
    kDict,       // items as key, value pairs
    kAttribute,  // items[0].name
    kSubscript,  // items[0][items[1]]
    kSlice,      // items[0][items[1]:items[2]:items[3]] (null parts absent)
    kCall,       // items[0](args..., kwargs)
    kFilter,     // items[0] | name(args, kwargs)
    kTest,       // items[0] is [not] name(args)
    kUnary,      // op items[0]   (op: "-", "+", "not")
    kBinary,     // items[0] op items[1]
    kAnd,
    kOr,
    kConditional,  // items[0] if items[1] else items[2] (items[2] optional)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;      // name, attribute, filter, test, or operator
  bool negated = false;  // "is not"
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using NodeList = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches: (condition, body)...; else_body
    kFor,          // targets in iterable [if filter]: body; else_body
    kSet,          // targets (or namespace attribute) = expr
    kSetBlock,     // {% set name %}body{% endset %}
    kMacro,        // name(params with defaults): body
    kCall,         // {% call macro(args) %}body{% endcall %}: caller()
    kFilterBlock,  // {% filter name %}body{% endfilter %}
    kBreak,
    kContinue,
    kGeneration,  // {% generation %}body{% endgeneration %}: body as is
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;    // output value, for iterable, set value, call
  ExprPtr filter;  // for ... if filter; or the filter of a filter block
  std::vector<std::string> targets;  // for/set names; set ns.attr: {ns, attr}
  bool attribute_target = false;
  std::vector<std::pair<ExprPtr, NodeList>> branches;
  NodeList body;
  NodeList else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters
};

}  // namespace openforce::jinja::internal

#endif  // OPENFORCE_JINJA_INTERNAL_AST_H_
