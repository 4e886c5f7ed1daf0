// Filters, tests, methods and global functions; see builtins.h.
#include "jinja/internal/builtins.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace openforce::jinja::internal {
namespace {

absl::Status TypeError(const std::string& what) {
  return absl::InvalidArgumentError(what);
}

// Python's str.strip family: `chars` none means whitespace.
std::string Strip(const std::string& text, const Value& chars, bool left,
                  bool right) {
  const std::string set =
      chars.is_string() ? chars.string_value() : std::string(" \t\n\r\f\v");
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end && set.find(text[begin]) != std::string::npos) ++begin;
  }
  if (right) {
    while (end > begin && set.find(text[end - 1]) != std::string::npos) --end;
  }
  return text.substr(begin, end - begin);
}

// Splits UTF-8 text into characters.
ValueList Characters(const std::string& text) {
  ValueList out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 1;
    const unsigned char lead = static_cast<unsigned char>(text[pos]);
    if ((lead & 0xE0) == 0xC0) length = 2;
    if ((lead & 0xF0) == 0xE0) length = 3;
    if ((lead & 0xF8) == 0xF0) length = 4;
    out.push_back(Value::String(text.substr(pos, length)));
    pos += length;
  }
  return out;
}

absl::StatusOr<int64_t> Length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kString:
      return static_cast<int64_t>(Characters(value.string_value()).size());
    case Value::Kind::kList:
      return static_cast<int64_t>(value.list().size());
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      return static_cast<int64_t>(value.dict().entries.size());
    case Value::Kind::kUndefined:
      return 0;
    default:
      return TypeError(
          absl::StrCat("object of type ", value.TypeName(), " has no len()"));
  }
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
          out += buffer;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

absl::Status AppendJson(const Value& value, int indent, int level,
                        std::string* out) {
  const std::string newline =
      indent >= 0 ? "\n" + std::string((level + 1) * indent, ' ') : "";
  const std::string closing =
      indent >= 0 ? "\n" + std::string(level * indent, ' ') : "";
  const char* item_separator = indent >= 0 ? "," : ", ";
  switch (value.kind()) {
    case Value::Kind::kNone:
      *out += "null";
      return absl::OkStatus();
    case Value::Kind::kBool:
      *out += value.bool_value() ? "true" : "false";
      return absl::OkStatus();
    case Value::Kind::kInt:
      absl::StrAppend(out, value.int_value());
      return absl::OkStatus();
    case Value::Kind::kFloat: {
      const double f = value.float_value();
      *out += std::isnan(f)   ? "NaN"
              : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity")
                              : FormatFloat(f);
      return absl::OkStatus();
    }
    case Value::Kind::kString:
      *out += JsonString(value.string_value());
      return absl::OkStatus();
    case Value::Kind::kList: {
      if (value.list().empty()) {
        *out += "[]";
        return absl::OkStatus();
      }
      *out += "[";
      for (size_t i = 0; i < value.list().size(); ++i) {
        if (i > 0) *out += item_separator;
        *out += newline;
        absl::Status status =
            AppendJson(value.list()[i], indent, level + 1, out);
        if (!status.ok()) return status;
      }
      *out += closing + "]";
      return absl::OkStatus();
    }
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      const auto& entries = value.dict().entries;
      if (entries.empty()) {
        *out += "{}";
        return absl::OkStatus();
      }
      *out += "{";
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) *out += item_separator;
        *out += newline + JsonString(entries[i].first) + ": ";
        absl::Status status =
            AppendJson(entries[i].second, indent, level + 1, out);
        if (!status.ok()) return status;
      }
      *out += closing + "}";
      return absl::OkStatus();
    }
    default:
      return TypeError(absl::StrCat("Object of type ", value.TypeName(),
                                    " is not JSON serializable"));
  }
}

const Value* Kwarg(const KeywordArgs& kwargs, const char* name) {
  for (const auto& [key, value] : kwargs) {
    if (key == name) return &value;
  }
  return nullptr;
}

// Positional argument `index`, else keyword `name`, else undefined.
Value Argument(const ValueList& args, const KeywordArgs& kwargs, size_t index,
               const char* name) {
  if (index < args.size()) return args[index];
  if (const Value* value = Kwarg(kwargs, name)) return *value;
  return Value();
}

// value[name] for dicts, value.name for namespaces; undefined otherwise.
Value AttributeOf(const Value& value, const std::string& name) {
  if (value.is_mapping()) {
    if (const Value* found = value.dict().Find(name)) return *found;
  }
  return Value();
}

// Python's sort order for the values templates sort.
bool Less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.float_value() < b.float_value();
  if (a.is_string() && b.is_string())
    return a.string_value() < b.string_value();
  return a.ToString() < b.ToString();
}

absl::StatusOr<std::string> Replace(const std::string& text,
                                    const std::string& old,
                                    const std::string& replacement,
                                    int64_t count) {
  if (old.empty()) return text;
  std::string out;
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(old, pos);
    if (found == std::string::npos) break;
    out.append(text, pos, found - pos);
    out += replacement;
    pos = found + old.size();
    ++done;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string Capitalize(const std::string& text) {
  std::string out = absl::AsciiStrToLower(text);
  if (!out.empty()) out[0] = absl::ascii_toupper(out[0]);
  return out;
}

std::string Title(const std::string& text) {
  std::string out = text;
  bool start = true;
  for (char& c : out) {
    if (absl::ascii_isalpha(c)) {
      c = start ? absl::ascii_toupper(c) : absl::ascii_tolower(c);
      start = false;
    } else {
      start = true;
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ValueList> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kList:
      return value.list();
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: {
      ValueList keys;
      for (const auto& [key, item] : value.dict().entries) {
        keys.push_back(Value::String(key));
      }
      return keys;
    }
    case Value::Kind::kString:
      return Characters(value.string_value());
    case Value::Kind::kUndefined:
      return ValueList();
    default:
      return TypeError(
          absl::StrCat("'", value.TypeName(), "' object is not iterable"));
  }
}

absl::StatusOr<std::string> ToJsonText(const Value& value, int indent) {
  std::string out;
  absl::Status status = AppendJson(value, indent, 0, &out);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& value,
                               const ValueList& args) {
  const Value arg = args.empty() ? Value() : args[0];
  using Kind = Value::Kind;
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.is_none();
  if (name == "boolean") return value.kind() == Kind::kBool;
  if (name == "true") return value.kind() == Kind::kBool && value.bool_value();
  if (name == "false")
    return value.kind() == Kind::kBool && !value.bool_value();
  if (name == "string") return value.is_string();
  if (name == "number") return value.is_number();
  if (name == "integer") return value.kind() == Kind::kInt;
  if (name == "float") return value.kind() == Kind::kFloat;
  if (name == "mapping") return value.is_mapping();
  if (name == "sequence") {
    return value.is_list() || value.is_string() || value.is_mapping();
  }
  if (name == "iterable") {
    return value.is_list() || value.is_string() || value.is_mapping();
  }
  if (name == "callable") return value.kind() == Kind::kCallable;
  if (name == "even" || name == "odd" || name == "divisibleby") {
    if (value.kind() != Kind::kInt) {
      return TypeError(absl::StrCat("test '", name, "' needs an integer"));
    }
    if (name == "divisibleby") {
      if (arg.kind() != Kind::kInt || arg.int_value() == 0) {
        return TypeError("divisibleby needs a non-zero integer");
      }
      return value.int_value() % arg.int_value() == 0;
    }
    return (value.int_value() % 2 == 0) == (name == "even");
  }
  if (name == "eq" || name == "equalto" || name == "==")
    return value.Equals(arg);
  if (name == "ne" || name == "!=") return !value.Equals(arg);
  if (name == "lt" || name == "<") return Less(value, arg);
  if (name == "gt" || name == ">") return Less(arg, value);
  if (name == "le" || name == "<=") return !Less(arg, value);
  if (name == "ge" || name == ">=") return !Less(value, arg);
  if (name == "sameas") {
    return value.kind() == arg.kind() && value.Equals(arg) &&
           (value.kind() == Kind::kNone || value.kind() == Kind::kBool);
  }
  if (name == "in") {
    if (arg.is_string() && value.is_string()) {
      return arg.string_value().find(value.string_value()) != std::string::npos;
    }
    if (arg.is_mapping()) {
      return value.is_string() && arg.dict().Find(value.string_value());
    }
    if (arg.is_list()) {
      for (const Value& item : arg.list()) {
        if (item.Equals(value)) return true;
      }
      return false;
    }
    return TypeError("'in' needs a string, list or dict on the right");
  }
  if (name == "lower" || name == "upper") {
    if (!value.is_string()) return false;
    const std::string& text = value.string_value();
    return name == "lower" ? text == absl::AsciiStrToLower(text)
                           : text == absl::AsciiStrToUpper(text);
  }
  return absl::NotFoundError(absl::StrCat("unknown test '", name, "'"));
}

absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& value,
                                  const ValueList& args,
                                  const KeywordArgs& kwargs) {
  if (name == "tojson") {
    const Value indent = Argument(args, kwargs, 0, "indent");
    absl::StatusOr<std::string> text =
        ToJsonText(value, indent.kind() == Value::Kind::kInt
                              ? static_cast<int>(indent.int_value())
                              : -1);
    if (!text.ok()) return text.status();
    return Value::String(*std::move(text));
  }
  if (name == "trim") {
    return Value::String(Strip(value.ToString(),
                               Argument(args, kwargs, 0, "chars"), true, true));
  }
  if (name == "length" || name == "count") {
    absl::StatusOr<int64_t> length = Length(value);
    if (!length.ok()) return length.status();
    return Value::Int(*length);
  }
  if (name == "upper")
    return Value::String(absl::AsciiStrToUpper(value.ToString()));
  if (name == "lower")
    return Value::String(absl::AsciiStrToLower(value.ToString()));
  if (name == "capitalize") return Value::String(Capitalize(value.ToString()));
  if (name == "title") return Value::String(Title(value.ToString()));
  if (name == "string") return Value::String(value.ToString());
  if (name == "safe" || name == "escape" || name == "e") {
    if (name == "safe") return value;
    std::string out;
    for (char c : value.ToString()) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&#34;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += c;
      }
    }
    return Value::String(out);
  }
  if (name == "default" || name == "d") {
    const Value fallback = Argument(args, kwargs, 0, "default_value");
    const bool boolean = Argument(args, kwargs, 1, "boolean").Truthy();
    if (value.is_undefined() || (boolean && !value.Truthy())) {
      return fallback.is_undefined() ? Value::String("") : fallback;
    }
    return value;
  }
  if (name == "first" || name == "last") {
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    if (items->empty()) return Value();
    return name == "first" ? items->front() : items->back();
  }
  if (name == "list") {
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    return Value::List(*std::move(items));
  }
  if (name == "reverse") {
    if (value.is_string()) {
      ValueList chars = Characters(value.string_value());
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it)
        out += it->string_value();
      return Value::String(out);
    }
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    std::reverse(items->begin(), items->end());
    return Value::List(*std::move(items));
  }
  if (name == "join") {
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    const Value separator = Argument(args, kwargs, 0, "d");
    const Value attribute = Argument(args, kwargs, 1, "attribute");
    std::vector<std::string> parts;
    for (const Value& item : *items) {
      parts.push_back(
          attribute.is_string()
              ? AttributeOf(item, attribute.string_value()).ToString()
              : item.ToString());
    }
    return Value::String(absl::StrJoin(
        parts, separator.is_string() ? separator.string_value() : ""));
  }
  if (name == "int") {
    if (value.kind() == Value::Kind::kInt) return value;
    if (value.kind() == Value::Kind::kFloat)
      return Value::Int(static_cast<int64_t>(value.float_value()));
    if (value.kind() == Value::Kind::kBool)
      return Value::Int(value.bool_value());
    if (value.is_string()) {
      int64_t parsed = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(value.string_value()),
                           &parsed)) {
        return Value::Int(parsed);
      }
    }
    const Value fallback = Argument(args, kwargs, 0, "default");
    return fallback.is_undefined() ? Value::Int(0) : fallback;
  }
  if (name == "float") {
    if (value.is_number()) return Value::Float(value.float_value());
    double parsed = 0;
    if (value.is_string() &&
        absl::SimpleAtod(absl::StripAsciiWhitespace(value.string_value()),
                         &parsed)) {
      return Value::Float(parsed);
    }
    return Value::Float(0);
  }
  if (name == "abs") {
    if (value.kind() == Value::Kind::kInt)
      return Value::Int(std::llabs(value.int_value()));
    if (value.is_number()) return Value::Float(std::fabs(value.float_value()));
    return TypeError("abs needs a number");
  }
  if (name == "round") {
    if (!value.is_number()) return TypeError("round needs a number");
    const Value precision = Argument(args, kwargs, 0, "precision");
    const double scale = std::pow(10.0, precision.kind() == Value::Kind::kInt
                                            ? precision.int_value()
                                            : 0);
    return Value::Float(std::nearbyint(value.float_value() * scale) / scale);
  }
  if (name == "replace") {
    const Value old = Argument(args, kwargs, 0, "old");
    const Value replacement = Argument(args, kwargs, 1, "new");
    const Value count = Argument(args, kwargs, 2, "count");
    absl::StatusOr<std::string> out =
        Replace(value.ToString(), old.ToString(), replacement.ToString(),
                count.kind() == Value::Kind::kInt ? count.int_value() : -1);
    if (!out.ok()) return out.status();
    return Value::String(*std::move(out));
  }
  if (name == "indent") {
    const Value width = Argument(args, kwargs, 0, "width");
    const bool first = Argument(args, kwargs, 1, "first").Truthy();
    const std::string pad =
        width.is_string()
            ? width.string_value()
            : std::string(
                  width.kind() == Value::Kind::kInt ? width.int_value() : 4,
                  ' ');
    std::vector<std::string> lines = absl::StrSplit(value.ToString(), '\n');
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n";
      if ((i > 0 || first) && !lines[i].empty()) out += pad;
      out += lines[i];
    }
    return Value::String(out);
  }
  if (name == "items" || name == "dictsort") {
    if (!value.is_mapping()) return TypeError(name + " needs a dict");
    ValueList pairs;
    for (const auto& [key, item] : value.dict().entries) {
      pairs.push_back(Value::List({Value::String(key), item}));
    }
    if (name == "dictsort") {
      std::stable_sort(
          pairs.begin(), pairs.end(), [](const Value& a, const Value& b) {
            return a.list()[0].string_value() < b.list()[0].string_value();
          });
    }
    return Value::List(std::move(pairs));
  }
  if (name == "unique" || name == "sort" || name == "min" || name == "max" ||
      name == "sum") {
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    const Value attribute =
        Argument(args, kwargs, name == "sort" ? 2 : 0, "attribute");
    auto key = [&](const Value& item) {
      return attribute.is_string() ? AttributeOf(item, attribute.string_value())
                                   : item;
    };
    if (name == "unique") {
      ValueList out;
      for (const Value& item : *items) {
        if (std::none_of(out.begin(), out.end(), [&](const Value& seen) {
              return seen.Equals(item);
            })) {
          out.push_back(item);
        }
      }
      return Value::List(std::move(out));
    }
    if (name == "sum") {
      double total = 0;
      bool all_int = true;
      for (const Value& item : *items) {
        const Value k = key(item);
        if (!k.is_number()) return TypeError("sum needs numbers");
        all_int &= k.kind() == Value::Kind::kInt;
        total += k.float_value();
      }
      return all_int ? Value::Int(static_cast<int64_t>(total))
                     : Value::Float(total);
    }
    std::stable_sort(
        items->begin(), items->end(),
        [&](const Value& a, const Value& b) { return Less(key(a), key(b)); });
    if (name == "sort") {
      if (Argument(args, kwargs, 0, "reverse").Truthy()) {
        std::reverse(items->begin(), items->end());
      }
      return Value::List(*std::move(items));
    }
    if (items->empty()) return Value();
    return name == "min" ? items->front() : items->back();
  }
  if (name == "map") {
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    ValueList out;
    if (const Value* attribute = Kwarg(kwargs, "attribute")) {
      const Value* fallback = Kwarg(kwargs, "default");
      for (const Value& item : *items) {
        Value mapped = AttributeOf(item, attribute->ToString());
        out.push_back(mapped.is_undefined() && fallback ? *fallback : mapped);
      }
      return Value::List(std::move(out));
    }
    if (args.empty() || !args[0].is_string()) {
      return TypeError("map needs a filter name or attribute=");
    }
    const ValueList rest(args.begin() + 1, args.end());
    for (const Value& item : *items) {
      absl::StatusOr<Value> mapped =
          ApplyFilter(args[0].string_value(), item, rest, {});
      if (!mapped.ok()) return mapped.status();
      out.push_back(*std::move(mapped));
    }
    return Value::List(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" ||
      name == "rejectattr") {
    absl::StatusOr<ValueList> items = Iterate(value);
    if (!items.ok()) return items.status();
    const bool by_attribute = name == "selectattr" || name == "rejectattr";
    const bool keep_when = name == "select" || name == "selectattr";
    const size_t test_index = by_attribute ? 1 : 0;
    ValueList out;
    for (const Value& item : *items) {
      const Value subject = by_attribute && !args.empty()
                                ? AttributeOf(item, args[0].ToString())
                                : item;
      bool passes = subject.Truthy();
      if (args.size() > test_index) {
        const ValueList test_args(args.begin() + test_index + 1, args.end());
        absl::StatusOr<bool> result =
            ApplyTest(args[test_index].ToString(), subject, test_args);
        if (!result.ok()) return result.status();
        passes = *result;
      }
      if (passes == keep_when) out.push_back(item);
    }
    return Value::List(std::move(out));
  }
  if (name == "wordcount") {
    std::vector<absl::string_view> words = absl::StrSplit(
        value.ToString(), absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
    return Value::Int(static_cast<int64_t>(words.size()));
  }
  return absl::NotFoundError(absl::StrCat("unknown filter '", name, "'"));
}

Value Method(const Value& value, const std::string& name) {
  const Value self = value;
  auto bind = [&](Function function) {
    return Value::Callable(name, std::move(function));
  };
  if (value.is_string()) {
    const std::string text = value.string_value();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      return bind([text, name](const ValueList& args,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
        const Value chars = args.empty() ? Value() : args[0];
        return Value::String(
            Strip(text, chars, name != "rstrip", name != "lstrip"));
      });
    }
    if (name == "split" || name == "rsplit") {
      return bind([text](const ValueList& args,
                         const KeywordArgs& kwargs) -> absl::StatusOr<Value> {
        const Value separator = Argument(args, kwargs, 0, "sep");
        const Value limit = Argument(args, kwargs, 1, "maxsplit");
        const int64_t max_split =
            limit.kind() == Value::Kind::kInt ? limit.int_value() : -1;
        ValueList parts;
        if (!separator.is_string()) {
          for (absl::string_view part : absl::StrSplit(
                   text, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty())) {
            parts.push_back(Value::String(std::string(part)));
          }
          return Value::List(std::move(parts));
        }
        const std::string& sep = separator.string_value();
        if (sep.empty()) return TypeError("empty separator");
        size_t pos = 0;
        int64_t done = 0;
        while (max_split < 0 || done < max_split) {
          const size_t found = text.find(sep, pos);
          if (found == std::string::npos) break;
          parts.push_back(Value::String(text.substr(pos, found - pos)));
          pos = found + sep.size();
          ++done;
        }
        parts.push_back(Value::String(text.substr(pos)));
        return Value::List(std::move(parts));
      });
    }
    if (name == "startswith" || name == "endswith") {
      return bind([text, name](const ValueList& args,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
        if (args.empty()) return TypeError(name + " needs an argument");
        ValueList options =
            args[0].is_list() ? args[0].list() : ValueList{args[0]};
        for (const Value& option : options) {
          const std::string affix = option.ToString();
          const bool match = name == "startswith"
                                 ? text.compare(0, affix.size(), affix) == 0
                                 : text.size() >= affix.size() &&
                                       text.compare(text.size() - affix.size(),
                                                    affix.size(), affix) == 0;
          if (match) return Value::Bool(true);
        }
        return Value::Bool(false);
      });
    }
    if (name == "upper" || name == "lower" || name == "title" ||
        name == "capitalize") {
      return bind([text, name](const ValueList&,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
        if (name == "upper") return Value::String(absl::AsciiStrToUpper(text));
        if (name == "lower") return Value::String(absl::AsciiStrToLower(text));
        if (name == "title") return Value::String(Title(text));
        return Value::String(Capitalize(text));
      });
    }
    if (name == "replace") {
      return bind([text](const ValueList& args,
                         const KeywordArgs&) -> absl::StatusOr<Value> {
        if (args.size() < 2) return TypeError("replace needs old and new");
        absl::StatusOr<std::string> out =
            Replace(text, args[0].ToString(), args[1].ToString(),
                    args.size() > 2 && args[2].kind() == Value::Kind::kInt
                        ? args[2].int_value()
                        : -1);
        if (!out.ok()) return out.status();
        return Value::String(*std::move(out));
      });
    }
    if (name == "find" || name == "count") {
      return bind([text, name](const ValueList& args,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
        if (args.empty()) return TypeError(name + " needs an argument");
        const std::string needle = args[0].ToString();
        if (name == "find") {
          const size_t found = text.find(needle);
          return Value::Int(
              found == std::string::npos ? -1 : static_cast<int64_t>(found));
        }
        int64_t count = 0;
        for (size_t pos = text.find(needle);
             !needle.empty() && pos != std::string::npos;
             pos = text.find(needle, pos + needle.size())) {
          ++count;
        }
        return Value::Int(count);
      });
    }
    if (name == "join") {
      return bind([text](const ValueList& args,
                         const KeywordArgs&) -> absl::StatusOr<Value> {
        if (args.empty()) return TypeError("join needs an iterable");
        absl::StatusOr<ValueList> items = Iterate(args[0]);
        if (!items.ok()) return items.status();
        std::vector<std::string> parts;
        for (const Value& item : *items) parts.push_back(item.ToString());
        return Value::String(absl::StrJoin(parts, text));
      });
    }
    if (name == "isdigit" || name == "isspace" || name == "isalpha") {
      return bind([text, name](const ValueList&,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
        if (text.empty()) return Value::Bool(false);
        for (char c : text) {
          const bool ok = name == "isdigit"   ? absl::ascii_isdigit(c)
                          : name == "isspace" ? absl::ascii_isspace(c)
                                              : absl::ascii_isalpha(c);
          if (!ok) return Value::Bool(false);
        }
        return Value::Bool(true);
      });
    }
  }
  if (value.is_dict()) {
    if (name == "items" || name == "keys" || name == "values") {
      return bind([self, name](const ValueList&,
                               const KeywordArgs&) -> absl::StatusOr<Value> {
        ValueList out;
        for (const auto& [key, item] : self.dict().entries) {
          if (name == "items") {
            out.push_back(Value::List({Value::String(key), item}));
          } else {
            out.push_back(name == "keys" ? Value::String(key) : item);
          }
        }
        return Value::List(std::move(out));
      });
    }
    if (name == "get") {
      return bind([self](const ValueList& args,
                         const KeywordArgs&) -> absl::StatusOr<Value> {
        if (args.empty()) return TypeError("get needs a key");
        if (const Value* found = self.dict().Find(args[0].ToString()))
          return *found;
        return args.size() > 1 ? args[1] : Value::None();
      });
    }
  }
  return Value();
}

Value GlobalFunction(const std::string& name) {
  if (name == "range") {
    return Value::Callable(
        name,
        [](const ValueList& args, const KeywordArgs&) -> absl::StatusOr<Value> {
          int64_t start = 0, stop = 0, step = 1;
          for (const Value& arg : args) {
            if (arg.kind() != Value::Kind::kInt)
              return TypeError("range needs integers");
          }
          if (args.size() == 1) {
            stop = args[0].int_value();
          } else if (args.size() >= 2) {
            start = args[0].int_value();
            stop = args[1].int_value();
            if (args.size() > 2) step = args[2].int_value();
          } else {
            return TypeError("range needs 1 to 3 arguments");
          }
          if (step == 0) return TypeError("range step must not be zero");
          ValueList out;
          for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (out.size() >= 1'000'000) return TypeError("range too large");
            out.push_back(Value::Int(i));
          }
          return Value::List(std::move(out));
        });
  }
  if (name == "namespace" || name == "dict") {
    const bool is_namespace = name == "namespace";
    return Value::Callable(
        name,
        [is_namespace](const ValueList& args,
                       const KeywordArgs& kwargs) -> absl::StatusOr<Value> {
          ValueDict dict;
          for (const Value& arg : args) {
            if (!arg.is_mapping()) return TypeError("expected a dict argument");
            for (const auto& [key, item] : arg.dict().entries)
              dict.Set(key, item);
          }
          for (const auto& [key, item] : kwargs) dict.Set(key, item);
          return is_namespace ? Value::Namespace(std::move(dict))
                              : Value::Dict(std::move(dict));
        });
  }
  if (name == "raise_exception") {
    return Value::Callable(
        name,
        [](const ValueList& args, const KeywordArgs&) -> absl::StatusOr<Value> {
          return absl::FailedPreconditionError(absl::StrCat(
              "the template raised: ", args.empty() ? "" : args[0].ToString()));
        });
  }
  return Value();
}

}  // namespace openforce::jinja::internal
