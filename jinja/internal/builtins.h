// Jinja's filters, tests, global functions and the methods of str, dict and
// list that chat templates call, with Python's semantics.
#ifndef OPENFORCE_JINJA_INTERNAL_BUILTINS_H_
#define OPENFORCE_JINJA_INTERNAL_BUILTINS_H_

#include <string>

#include "absl/status/statusor.h"
#include "jinja/value.h"

namespace openforce::jinja::internal {

// Calls a test that needs no interpreter ("defined", "string", ...).
// NotFound for an unknown test name.
[[nodiscard]] absl::StatusOr<bool> ApplyTest(const std::string& name,
                                             const Value& value,
                                             const ValueList& args);

// Calls a filter; NotFound for an unknown name. Filters that take a test or
// filter by name (select, map) receive the test through ApplyTest.
[[nodiscard]] absl::StatusOr<Value> ApplyFilter(const std::string& name,
                                                const Value& value,
                                                const ValueList& args,
                                                const KeywordArgs& kwargs);

// value.name for methods of str, dict and list (a bound callable); undefined
// when there is no such method.
Value Method(const Value& value, const std::string& name);

// Global functions: range, namespace, dict, raise_exception.
Value GlobalFunction(const std::string& name);

// json.dumps(value, ensure_ascii=False, indent=indent) as transformers'
// tojson renders it; indent < 0 means none.
[[nodiscard]] absl::StatusOr<std::string> ToJsonText(const Value& value,
                                                     int indent);

// The items a for loop visits: list items, dict keys, string characters.
[[nodiscard]] absl::StatusOr<ValueList> Iterate(const Value& value);

}  // namespace openforce::jinja::internal

#endif  // OPENFORCE_JINJA_INTERNAL_BUILTINS_H_
