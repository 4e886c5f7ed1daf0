// Values of the Jinja interpreter, with Python's semantics where chat
// templates rely on them: None/True/False, int and float, str, list (also
// tuples), dict in insertion order, namespace() objects (the one mutable
// value), and callables (macros, builtins, bound string methods). Undefined is
// what a missing variable, key or attribute evaluates to.
#ifndef OPENFORCE_JINJA_VALUE_H_
#define OPENFORCE_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace openforce::jinja {

class Value;

using ValueList = std::vector<Value>;
using KeywordArgs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<absl::StatusOr<Value>(
    const ValueList& args, const KeywordArgs& kwargs)>;

// An insertion-ordered string-keyed map, as Python's dict.
struct ValueDict {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* Find(const std::string& key) const;
  Value* Find(const std::string& key);
  void Set(const std::string& key, Value value);
};

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  Value() = default;  // undefined
  static Value None();
  static Value Bool(bool value);
  static Value Int(int64_t value);
  static Value Float(double value);
  static Value String(std::string value);
  static Value List(ValueList items);
  static Value Dict(ValueDict dict);
  static Value Namespace(ValueDict attributes);
  static Value Callable(std::string name, Function function);
  // JSON objects keep their order when the JSON was parsed as ordered_json.
  static Value FromJson(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const {
    return kind_ == Kind::kInt || kind_ == Kind::kFloat;
  }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_mapping() const {
    return kind_ == Kind::kDict || kind_ == Kind::kNamespace;
  }

  bool bool_value() const { return bool_; }
  int64_t int_value() const { return int_; }
  double float_value() const { return kind_ == Kind::kInt ? int_ : float_; }
  const std::string& string_value() const { return *string_; }
  const ValueList& list() const { return *list_; }
  const ValueDict& dict() const { return *dict_; }
  ValueDict& mutable_namespace() const { return *dict_; }
  const std::string& callable_name() const { return *string_; }
  const Function& function() const { return *function_; }

  // Python truthiness (undefined is false).
  bool Truthy() const;
  // Python str(): what {{ value }} prints (undefined prints nothing).
  std::string ToString() const;
  // Python repr(), used inside lists and dicts.
  std::string Repr() const;
  // Python ==.
  bool Equals(const Value& other) const;
  // json.dumps semantics; InvalidArgument for callables and undefined.
  absl::StatusOr<nlohmann::ordered_json> ToJson() const;
  // Type name for error messages.
  const char* TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> string_;
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<const Function> function_;
};

// Python's repr of a float (shortest round-trip digits, "1.0" for integers).
std::string FormatFloat(double value);

}  // namespace openforce::jinja

#endif  // OPENFORCE_JINJA_VALUE_H_
