// The Jinja interpreter; see template.h. A tree walker over the parser's
// nodes with Jinja's scoping: a for loop's iterations and a macro call get
// their own scope, so `set` inside them does not leak (namespace() objects
// carry state out), while `if` shares its enclosing scope.
#include "jinja/template.h"

#include <algorithm>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "jinja/internal/builtins.h"
#include "jinja/internal/lexer.h"
#include "jinja/internal/parser.h"

namespace openforce::jinja {

using internal::Expr;
using internal::Node;
using internal::NodeList;

struct Template::Nodes {
  NodeList nodes;
};

namespace {

constexpr int kMaxCallDepth = 64;

absl::Status AtLine(int line, const absl::Status& status) {
  if (status.ok()) return status;
  const std::string message(status.message());
  if (message.rfind("template line ", 0) == 0) return status;
  return absl::Status(status.code(),
                      absl::StrCat("template line ", line, ": ", message));
}

absl::Status Error(int line, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("template line ", line, ": ", what));
}

// Python's index normalisation for a sequence of `size`.
int64_t SliceIndex(const Value& value, int64_t fallback, int64_t size) {
  if (value.kind() != Value::Kind::kInt) return fallback;
  int64_t index = value.int_value();
  if (index < 0) index += size;
  return index;
}

class Interpreter {
 public:
  Interpreter(const Value& context, size_t max_output)
      : max_output_(max_output) {
    scopes_.emplace_back();
    if (context.is_mapping()) {
      for (const auto& [key, value] : context.dict().entries) {
        scopes_.back()[key] = value;
      }
    }
  }

  absl::Status Run(const NodeList& nodes, std::string* out) {
    return Execute(nodes, out);
  }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::Status Execute(const NodeList& nodes, std::string* out) {
    for (const auto& node : nodes) {
      absl::Status status = ExecuteNode(*node, out);
      if (!status.ok()) return status;
      if (flow_ != Flow::kNormal) return absl::OkStatus();
      if (out->size() > max_output_) {
        return absl::ResourceExhaustedError(
            absl::StrCat("template output exceeds ", max_output_, " bytes"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ExecuteNode(const Node& node, std::string* out) {
    switch (node.kind) {
      case Node::Kind::kText:
        *out += node.text;
        return absl::OkStatus();
      case Node::Kind::kOutput: {
        absl::StatusOr<Value> value = Evaluate(*node.expr);
        if (!value.ok()) return value.status();
        *out += value->ToString();
        return absl::OkStatus();
      }
      case Node::Kind::kIf:
        for (const auto& [condition, body] : node.branches) {
          absl::StatusOr<Value> test = Evaluate(*condition);
          if (!test.ok()) return test.status();
          if (test->Truthy()) return Execute(body, out);
        }
        return Execute(node.else_body, out);
      case Node::Kind::kFor:
        return ExecuteFor(node, out);
      case Node::Kind::kSet: {
        absl::StatusOr<Value> value = Evaluate(*node.expr);
        if (!value.ok()) return value.status();
        return Assign(node, *std::move(value));
      }
      case Node::Kind::kSetBlock: {
        std::string captured;
        absl::Status status = Execute(node.body, &captured);
        if (!status.ok()) return status;
        scopes_.back()[node.targets[0]] = Value::String(captured);
        return absl::OkStatus();
      }
      case Node::Kind::kMacro:
        scopes_.back()[node.text] = MakeMacro(node);
        return absl::OkStatus();
      case Node::Kind::kCall: {
        // caller() renders the call block's body.
        const Node* body_owner = &node;
        Value caller = Value::Callable(
            "caller",
            [this, body_owner](const ValueList&,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
              std::string text;
              absl::Status status = Execute(body_owner->body, &text);
              if (!status.ok()) return status;
              return Value::String(text);
            });
        scopes_.emplace_back();
        scopes_.back()["caller"] = caller;
        absl::StatusOr<Value> value = Evaluate(*node.expr);
        scopes_.pop_back();
        if (!value.ok()) return value.status();
        *out += value->ToString();
        return absl::OkStatus();
      }
      case Node::Kind::kFilterBlock: {
        std::string captured;
        absl::Status status = Execute(node.body, &captured);
        if (!status.ok()) return status;
        scopes_.emplace_back();
        scopes_.back()[" body"] = Value::String(captured);
        absl::StatusOr<Value> value = Evaluate(*node.filter);
        scopes_.pop_back();
        if (!value.ok()) return value.status();
        *out += value->ToString();
        return absl::OkStatus();
      }
      case Node::Kind::kBreak:
      case Node::Kind::kContinue:
        if (loop_depth_ == 0) {
          return Error(node.line, "break or continue outside a for loop");
        }
        flow_ =
            node.kind == Node::Kind::kBreak ? Flow::kBreak : Flow::kContinue;
        return absl::OkStatus();
      case Node::Kind::kGeneration:
        return Execute(node.body, out);
    }
    return absl::OkStatus();
  }

  absl::Status Assign(const Node& node, Value value) {
    if (node.attribute_target) {
      const Value* target = Lookup(node.targets[0]);
      if (target == nullptr || target->kind() != Value::Kind::kNamespace) {
        return Error(node.line,
                     absl::StrCat("cannot set an attribute of '",
                                  node.targets[0], "': not a namespace()"));
      }
      target->mutable_namespace().Set(node.targets[1], std::move(value));
      return absl::OkStatus();
    }
    if (node.targets.size() == 1) {
      scopes_.back()[node.targets[0]] = std::move(value);
      return absl::OkStatus();
    }
    absl::StatusOr<ValueList> items = internal::Iterate(value);
    if (!items.ok() || items->size() != node.targets.size()) {
      return Error(node.line, absl::StrCat("cannot unpack into ",
                                           node.targets.size(), " names"));
    }
    for (size_t i = 0; i < node.targets.size(); ++i) {
      scopes_.back()[node.targets[i]] = (*items)[i];
    }
    return absl::OkStatus();
  }

  absl::Status ExecuteFor(const Node& node, std::string* out) {
    absl::StatusOr<Value> iterable = Evaluate(*node.expr);
    if (!iterable.ok()) return iterable.status();
    absl::StatusOr<ValueList> all = internal::Iterate(*iterable);
    if (!all.ok()) return AtLine(node.line, all.status());
    // Jinja binds the loop variables per iteration; unpack each item when
    // there are several names.
    auto bind = [&](const Value& item) -> absl::Status {
      if (node.targets.size() == 1) {
        scopes_.back()[node.targets[0]] = item;
        return absl::OkStatus();
      }
      absl::StatusOr<ValueList> parts = internal::Iterate(item);
      if (!parts.ok() || parts->size() != node.targets.size()) {
        return Error(node.line, absl::StrCat("cannot unpack a loop item into ",
                                             node.targets.size(), " names"));
      }
      for (size_t i = 0; i < node.targets.size(); ++i) {
        scopes_.back()[node.targets[i]] = (*parts)[i];
      }
      return absl::OkStatus();
    };
    ValueList items;
    if (node.filter != nullptr) {
      for (const Value& item : *all) {
        scopes_.emplace_back();
        absl::Status bound = bind(item);
        absl::StatusOr<Value> keep =
            bound.ok() ? Evaluate(*node.filter) : absl::StatusOr<Value>(bound);
        scopes_.pop_back();
        if (!keep.ok()) return keep.status();
        if (keep->Truthy()) items.push_back(item);
      }
    } else {
      items = *std::move(all);
    }
    if (items.empty()) return Execute(node.else_body, out);
    const int64_t length = static_cast<int64_t>(items.size());
    ++loop_depth_;
    for (int64_t i = 0; i < length; ++i) {
      ValueDict loop;
      loop.Set("index", Value::Int(i + 1));
      loop.Set("index0", Value::Int(i));
      loop.Set("revindex", Value::Int(length - i));
      loop.Set("revindex0", Value::Int(length - i - 1));
      loop.Set("first", Value::Bool(i == 0));
      loop.Set("last", Value::Bool(i == length - 1));
      loop.Set("length", Value::Int(length));
      loop.Set("previtem", i > 0 ? items[i - 1] : Value());
      loop.Set("nextitem", i + 1 < length ? items[i + 1] : Value());
      loop.Set("cycle", Value::Callable(
                            "cycle",
                            [i](const ValueList& args,
                                const KeywordArgs&) -> absl::StatusOr<Value> {
                              if (args.empty()) return Value();
                              return args[static_cast<size_t>(i) % args.size()];
                            }));
      scopes_.emplace_back();
      scopes_.back()["loop"] = Value::Dict(std::move(loop));
      absl::Status status = bind(items[i]);
      if (status.ok()) status = Execute(node.body, out);
      scopes_.pop_back();
      if (!status.ok()) {
        --loop_depth_;
        return status;
      }
      const Flow flow = flow_;
      flow_ = Flow::kNormal;
      if (flow == Flow::kBreak) break;
    }
    --loop_depth_;
    return absl::OkStatus();
  }

  Value MakeMacro(const Node& node) {
    const Node* macro = &node;
    return Value::Callable(
        node.text,
        [this, macro](const ValueList& args,
                      const KeywordArgs& kwargs) -> absl::StatusOr<Value> {
          if (++call_depth_ > kMaxCallDepth) {
            --call_depth_;
            return Error(macro->line, "macros call each other too deeply");
          }
          std::map<std::string, Value> scope;
          for (size_t i = 0; i < macro->params.size(); ++i) {
            const auto& [param, fallback] = macro->params[i];
            Value value;
            if (i < args.size()) {
              value = args[i];
            } else {
              bool found = false;
              for (const auto& [key, given] : kwargs) {
                if (key == param) {
                  value = given;
                  found = true;
                }
              }
              if (!found && fallback != nullptr) {
                absl::StatusOr<Value> evaluated = Evaluate(*fallback);
                if (!evaluated.ok()) {
                  --call_depth_;
                  return evaluated.status();
                }
                value = *std::move(evaluated);
              }
            }
            scope[param] = value;
          }
          if (const Value* caller = Lookup("caller")) scope["caller"] = *caller;
          scopes_.push_back(std::move(scope));
          const int saved_loops = loop_depth_;
          loop_depth_ = 0;
          std::string text;
          absl::Status status = Execute(macro->body, &text);
          loop_depth_ = saved_loops;
          scopes_.pop_back();
          --call_depth_;
          if (!status.ok()) return status;
          return Value::String(text);
        });
  }

  const Value* Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return &found->second;
    }
    return nullptr;
  }

  absl::StatusOr<Value> Evaluate(const Expr& expr) {
    absl::StatusOr<Value> value = EvaluateUnchecked(expr);
    if (!value.ok()) return AtLine(expr.line, value.status());
    return value;
  }

  absl::StatusOr<ValueList> EvaluateAll(
      const std::vector<internal::ExprPtr>& items, size_t first) {
    ValueList values;
    for (size_t i = first; i < items.size(); ++i) {
      absl::StatusOr<Value> value = Evaluate(*items[i]);
      if (!value.ok()) return value.status();
      values.push_back(*std::move(value));
    }
    return values;
  }

  absl::StatusOr<KeywordArgs> EvaluateKwargs(const Expr& expr) {
    KeywordArgs kwargs;
    for (const auto& [name, item] : expr.kwargs) {
      absl::StatusOr<Value> value = Evaluate(*item);
      if (!value.ok()) return value.status();
      kwargs.emplace_back(name, *std::move(value));
    }
    return kwargs;
  }

  absl::StatusOr<Value> EvaluateUnchecked(const Expr& expr) {
    switch (expr.kind) {
      case Expr::Kind::kLiteral:
        return expr.value;
      case Expr::Kind::kName: {
        if (const Value* value = Lookup(expr.name)) return *value;
        Value global = internal::GlobalFunction(expr.name);
        return global;  // undefined when there is no such name
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        absl::StatusOr<ValueList> items = EvaluateAll(expr.items, 0);
        if (!items.ok()) return items.status();
        return Value::List(*std::move(items));
      }
      case Expr::Kind::kDict: {
        ValueDict dict;
        for (size_t i = 0; i + 1 < expr.items.size(); i += 2) {
          absl::StatusOr<Value> key = Evaluate(*expr.items[i]);
          if (!key.ok()) return key.status();
          absl::StatusOr<Value> value = Evaluate(*expr.items[i + 1]);
          if (!value.ok()) return value.status();
          if (!key->is_string()) {
            return Error(expr.line, "dict keys must be strings here");
          }
          dict.Set(key->string_value(), *std::move(value));
        }
        return Value::Dict(std::move(dict));
      }
      case Expr::Kind::kAttribute: {
        absl::StatusOr<Value> object = Evaluate(*expr.items[0]);
        if (!object.ok()) return object.status();
        return GetAttribute(*object, expr.name, expr.line);
      }
      case Expr::Kind::kSubscript: {
        absl::StatusOr<Value> object = Evaluate(*expr.items[0]);
        if (!object.ok()) return object.status();
        absl::StatusOr<Value> key = Evaluate(*expr.items[1]);
        if (!key.ok()) return key.status();
        return GetItem(*object, *key, expr.line);
      }
      case Expr::Kind::kSlice:
        return EvaluateSlice(expr);
      case Expr::Kind::kCall: {
        absl::StatusOr<Value> callee = Evaluate(*expr.items[0]);
        if (!callee.ok()) return callee.status();
        if (callee->kind() != Value::Kind::kCallable) {
          std::string what = expr.items[0]->kind == Expr::Kind::kName
                                 ? "'" + expr.items[0]->name + "'"
                                 : "this value";
          return Error(expr.line,
                       callee->is_undefined()
                           ? absl::StrCat(what,
                                          " is not a supported function "
                                          "or method")
                           : absl::StrCat(what, " (", callee->TypeName(),
                                          ") is not callable"));
        }
        absl::StatusOr<ValueList> args = EvaluateAll(expr.items, 1);
        if (!args.ok()) return args.status();
        absl::StatusOr<KeywordArgs> kwargs = EvaluateKwargs(expr);
        if (!kwargs.ok()) return kwargs.status();
        return callee->function()(*args, *kwargs);
      }
      case Expr::Kind::kFilter: {
        absl::StatusOr<Value> value = Evaluate(*expr.items[0]);
        if (!value.ok()) return value.status();
        absl::StatusOr<ValueList> args = EvaluateAll(expr.items, 1);
        if (!args.ok()) return args.status();
        absl::StatusOr<KeywordArgs> kwargs = EvaluateKwargs(expr);
        if (!kwargs.ok()) return kwargs.status();
        absl::StatusOr<Value> result =
            internal::ApplyFilter(expr.name, *value, *args, *kwargs);
        if (absl::IsNotFound(result.status())) {
          return Error(expr.line,
                       absl::StrCat("unsupported filter '", expr.name, "'"));
        }
        return result;
      }
      case Expr::Kind::kTest: {
        absl::StatusOr<Value> value = Evaluate(*expr.items[0]);
        if (!value.ok()) return value.status();
        absl::StatusOr<ValueList> args = EvaluateAll(expr.items, 1);
        if (!args.ok()) return args.status();
        absl::StatusOr<bool> result =
            internal::ApplyTest(expr.name, *value, *args);
        if (absl::IsNotFound(result.status())) {
          return Error(expr.line,
                       absl::StrCat("unsupported test '", expr.name, "'"));
        }
        if (!result.ok()) return result.status();
        return Value::Bool(*result != expr.negated);
      }
      case Expr::Kind::kUnary: {
        absl::StatusOr<Value> operand = Evaluate(*expr.items[0]);
        if (!operand.ok()) return operand.status();
        if (expr.name == "not") return Value::Bool(!operand->Truthy());
        if (operand->kind() == Value::Kind::kInt) {
          return Value::Int(expr.name == "-" ? -operand->int_value()
                                             : operand->int_value());
        }
        if (operand->kind() == Value::Kind::kFloat) {
          return Value::Float(expr.name == "-" ? -operand->float_value()
                                               : operand->float_value());
        }
        return Error(expr.line,
                     absl::StrCat("bad operand for unary ", expr.name, ": ",
                                  operand->TypeName()));
      }
      case Expr::Kind::kAnd:
      case Expr::Kind::kOr: {
        absl::StatusOr<Value> left = Evaluate(*expr.items[0]);
        if (!left.ok()) return left.status();
        const bool decided =
            expr.kind == Expr::Kind::kAnd ? !left->Truthy() : left->Truthy();
        if (decided) return left;
        return Evaluate(*expr.items[1]);
      }
      case Expr::Kind::kConditional: {
        absl::StatusOr<Value> test = Evaluate(*expr.items[1]);
        if (!test.ok()) return test.status();
        if (test->Truthy()) return Evaluate(*expr.items[0]);
        if (expr.items.size() > 2) return Evaluate(*expr.items[2]);
        return Value();
      }
      case Expr::Kind::kBinary:
        return EvaluateBinary(expr);
    }
    return Value();
  }

  absl::StatusOr<Value> GetAttribute(const Value& object,
                                     const std::string& name, int line) {
    if (object.is_undefined()) {
      return Error(
          line, absl::StrCat("cannot read '", name, "' of an undefined value"));
    }
    if (object.is_mapping()) {
      if (const Value* found = object.dict().Find(name)) return *found;
    }
    if (object.is_list()) {
      int64_t index = 0;
      if (absl::SimpleAtoi(name, &index))
        return GetItem(object, Value::Int(index), line);
    }
    return internal::Method(object, name);
  }

  absl::StatusOr<Value> GetItem(const Value& object, const Value& key,
                                int line) {
    if (object.is_undefined()) {
      return Error(line, absl::StrCat("cannot index an undefined value with ",
                                      key.Repr()));
    }
    if (object.is_mapping()) {
      if (key.is_string()) {
        if (const Value* found = object.dict().Find(key.string_value()))
          return *found;
        return internal::Method(object, key.string_value());
      }
      return Value();
    }
    if ((object.is_list() || object.is_string()) &&
        key.kind() == Value::Kind::kInt) {
      ValueList chars;
      const ValueList* items = &chars;
      if (object.is_list()) {
        items = &object.list();
      } else {
        absl::StatusOr<ValueList> iterated = internal::Iterate(object);
        if (!iterated.ok()) return iterated.status();
        chars = *std::move(iterated);
      }
      const int64_t size = static_cast<int64_t>(items->size());
      int64_t index = key.int_value();
      if (index < 0) index += size;
      if (index < 0 || index >= size) return Value();
      return (*items)[static_cast<size_t>(index)];
    }
    if (key.is_string()) return GetAttribute(object, key.string_value(), line);
    return Value();
  }

  absl::StatusOr<Value> EvaluateSlice(const Expr& expr) {
    absl::StatusOr<Value> object = Evaluate(*expr.items[0]);
    if (!object.ok()) return object.status();
    Value bounds[3];
    for (int i = 0; i < 3; ++i) {
      if (expr.items[i + 1] == nullptr) continue;
      absl::StatusOr<Value> value = Evaluate(*expr.items[i + 1]);
      if (!value.ok()) return value.status();
      bounds[i] = *std::move(value);
    }
    absl::StatusOr<ValueList> items = internal::Iterate(*object);
    if (!items.ok() || !(object->is_list() || object->is_string())) {
      return Error(expr.line,
                   absl::StrCat("cannot slice a ", object->TypeName()));
    }
    const int64_t size = static_cast<int64_t>(items->size());
    const int64_t step =
        bounds[2].kind() == Value::Kind::kInt ? bounds[2].int_value() : 1;
    if (step == 0) return Error(expr.line, "slice step cannot be zero");
    ValueList out;
    if (step > 0) {
      int64_t start =
          std::clamp<int64_t>(SliceIndex(bounds[0], 0, size), 0, size);
      int64_t stop =
          std::clamp<int64_t>(SliceIndex(bounds[1], size, size), 0, size);
      for (int64_t i = start; i < stop; i += step) out.push_back((*items)[i]);
    } else {
      int64_t start = std::clamp<int64_t>(SliceIndex(bounds[0], size - 1, size),
                                          -1, size - 1);
      int64_t stop = bounds[1].kind() == Value::Kind::kInt
                         ? std::clamp<int64_t>(SliceIndex(bounds[1], -1, size),
                                               -1, size - 1)
                         : -1;
      for (int64_t i = start; i > stop; i += step) out.push_back((*items)[i]);
    }
    if (object->is_string()) {
      std::string text;
      for (const Value& c : out) text += c.string_value();
      return Value::String(text);
    }
    return Value::List(std::move(out));
  }

  absl::StatusOr<Value> EvaluateBinary(const Expr& expr) {
    absl::StatusOr<Value> left_or = Evaluate(*expr.items[0]);
    if (!left_or.ok()) return left_or.status();
    absl::StatusOr<Value> right_or = Evaluate(*expr.items[1]);
    if (!right_or.ok()) return right_or.status();
    const Value& a = *left_or;
    const Value& b = *right_or;
    const std::string& op = expr.name;
    if (op == "==") return Value::Bool(a.Equals(b));
    if (op == "!=") return Value::Bool(!a.Equals(b));
    if (op == "in" || op == "not in") {
      absl::StatusOr<bool> found = internal::ApplyTest("in", a, {b});
      if (!found.ok()) return AtLine(expr.line, found.status());
      return Value::Bool(*found == (op == "in"));
    }
    if (op == "~") return Value::String(a.ToString() + b.ToString());
    if (op == "<" || op == "<=" || op == ">" || op == ">=") {
      const bool comparable =
          (a.is_number() && b.is_number()) || (a.is_string() && b.is_string());
      if (!comparable) {
        return Error(expr.line, absl::StrCat("cannot compare ", a.TypeName(),
                                             " with ", b.TypeName()));
      }
      absl::StatusOr<bool> result = internal::ApplyTest(op, a, {b});
      if (!result.ok()) return result.status();
      return Value::Bool(*result);
    }
    if (op == "+") {
      if (a.is_string() && b.is_string())
        return Value::String(a.string_value() + b.string_value());
      if (a.is_list() && b.is_list()) {
        ValueList joined = a.list();
        joined.insert(joined.end(), b.list().begin(), b.list().end());
        return Value::List(std::move(joined));
      }
    }
    if (op == "*" && ((a.is_string() && b.kind() == Value::Kind::kInt) ||
                      (b.is_string() && a.kind() == Value::Kind::kInt))) {
      const std::string& text =
          a.is_string() ? a.string_value() : b.string_value();
      const int64_t times = a.is_string() ? b.int_value() : a.int_value();
      if (times > 0 && text.size() * static_cast<size_t>(times) > max_output_) {
        return Error(expr.line, "string repetition too large");
      }
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += text;
      return Value::String(out);
    }
    if (!a.is_number() || !b.is_number()) {
      return Error(expr.line,
                   absl::StrCat("unsupported operand types for ", op, ": ",
                                a.TypeName(), " and ", b.TypeName()));
    }
    const bool ints =
        a.kind() == Value::Kind::kInt && b.kind() == Value::Kind::kInt;
    if (op == "+")
      return ints ? Value::Int(a.int_value() + b.int_value())
                  : Value::Float(a.float_value() + b.float_value());
    if (op == "-")
      return ints ? Value::Int(a.int_value() - b.int_value())
                  : Value::Float(a.float_value() - b.float_value());
    if (op == "*")
      return ints ? Value::Int(a.int_value() * b.int_value())
                  : Value::Float(a.float_value() * b.float_value());
    if (b.float_value() == 0 && (op == "/" || op == "//" || op == "%")) {
      return Error(expr.line, "division by zero");
    }
    if (op == "/") return Value::Float(a.float_value() / b.float_value());
    if (op == "//") {
      if (ints) {
        int64_t q = a.int_value() / b.int_value();
        if ((a.int_value() % b.int_value() != 0) &&
            ((a.int_value() < 0) != (b.int_value() < 0))) {
          --q;
        }
        return Value::Int(q);
      }
      return Value::Float(std::floor(a.float_value() / b.float_value()));
    }
    if (op == "%") {
      if (ints) {
        int64_t r = a.int_value() % b.int_value();
        if (r != 0 && ((r < 0) != (b.int_value() < 0))) r += b.int_value();
        return Value::Int(r);
      }
      double r = std::fmod(a.float_value(), b.float_value());
      if (r != 0 && ((r < 0) != (b.float_value() < 0))) r += b.float_value();
      return Value::Float(r);
    }
    if (op == "**") {
      if (ints && b.int_value() >= 0) {
        int64_t result = 1;
        for (int64_t i = 0; i < b.int_value() && i < 64; ++i)
          result *= a.int_value();
        return Value::Int(result);
      }
      return Value::Float(std::pow(a.float_value(), b.float_value()));
    }
    return Error(expr.line, absl::StrCat("unsupported operator '", op, "'"));
  }

  std::vector<std::map<std::string, Value>> scopes_;
  size_t max_output_;
  Flow flow_ = Flow::kNormal;
  int loop_depth_ = 0;
  int call_depth_ = 0;
};

}  // namespace

Template::Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

absl::StatusOr<Template> Template::Parse(absl::string_view source) {
  absl::StatusOr<std::vector<internal::Token>> tokens =
      internal::Tokenize(source);
  if (!tokens.ok()) return tokens.status();
  absl::StatusOr<NodeList> nodes = internal::Parse(*std::move(tokens));
  if (!nodes.ok()) return nodes.status();
  Template parsed;
  parsed.nodes_ = std::make_unique<Nodes>();
  parsed.nodes_->nodes = *std::move(nodes);
  return parsed;
}

absl::StatusOr<std::string> Template::Render(const Value& context,
                                             size_t max_output_bytes) const {
  Interpreter interpreter(context, max_output_bytes);
  std::string out;
  absl::Status status = interpreter.Run(nodes_->nodes, &out);
  if (!status.ok()) return status;
  return out;
}

}  // namespace openforce::jinja
