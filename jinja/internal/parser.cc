// Jinja parser; see parser.h. One method per precedence level, as Jinja2's
// own parser (parse_condexpr down to parse_primary).
#include "jinja/internal/parser.h"

#include <cstdlib>
#include <set>

#include "absl/strings/str_cat.h"

namespace openforce::jinja::internal {
namespace {

// Each parse call returns false and records the first error.
class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<NodeList> ParseTemplate() {
    NodeList nodes;
    std::string end;
    if (!ParseBody(&nodes, {}, &end)) return error_;
    return nodes;
  }

 private:
  const Token& Peek(size_t ahead = 0) const {
    const size_t index = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[index];
  }
  bool IsOperator(const char* op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOperator && Peek(ahead).text == op;
  }
  bool IsName(const char* name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).text == name;
  }
  bool Fail(int line, const std::string& what) {
    if (error_.ok()) {
      error_ = absl::InvalidArgumentError(
          absl::StrCat("template line ", line, ": ", what));
    }
    return false;
  }
  bool Expect(const char* op) {
    if (!IsOperator(op)) {
      return Fail(Peek().line, absl::StrCat("expected '", op, "', found '",
                                            Describe(Peek()), "'"));
    }
    ++pos_;
    return true;
  }
  bool ExpectBlockEnd() {
    if (Peek().kind != TokenKind::kBlockEnd) {
      return Fail(Peek().line,
                  absl::StrCat("expected the end of the tag, found '",
                               Describe(Peek()), "'"));
    }
    ++pos_;
    return true;
  }
  static std::string Describe(const Token& token) {
    switch (token.kind) {
      case TokenKind::kBlockEnd:
        return "%}";
      case TokenKind::kOutputEnd:
        return "}}";
      case TokenKind::kEnd:
        return "end of template";
      default:
        return token.text;
    }
  }

  // Nodes until a {% keyword %} in `ends` (consumed up to the keyword).
  bool ParseBody(NodeList* out, std::set<std::string> ends, std::string* end) {
    while (true) {
      const Token& token = Peek();
      switch (token.kind) {
        case TokenKind::kEnd:
          if (!ends.empty()) {
            return Fail(token.line,
                        absl::StrCat("missing {% ", *ends.rbegin(), " %}"));
          }
          return true;
        case TokenKind::kText: {
          auto node = std::make_unique<Node>();
          node->kind = Node::Kind::kText;
          node->text = token.text;
          node->line = token.line;
          out->push_back(std::move(node));
          ++pos_;
          break;
        }
        case TokenKind::kOutputBegin: {
          ++pos_;
          auto node = std::make_unique<Node>();
          node->kind = Node::Kind::kOutput;
          node->line = token.line;
          if (!ParseExpression(&node->expr)) return false;
          if (Peek().kind != TokenKind::kOutputEnd) {
            return Fail(Peek().line, absl::StrCat("expected '}}', found '",
                                                  Describe(Peek()), "'"));
          }
          ++pos_;
          out->push_back(std::move(node));
          break;
        }
        case TokenKind::kBlockBegin: {
          const Token& keyword = Peek(1);
          if (keyword.kind != TokenKind::kName) {
            return Fail(keyword.line, "expected a statement name after {%");
          }
          if (ends.count(keyword.text)) {
            pos_ += 2;
            *end = keyword.text;
            return true;
          }
          pos_ += 2;
          std::unique_ptr<Node> node;
          if (!ParseStatement(keyword, &node)) return false;
          out->push_back(std::move(node));
          break;
        }
        default:
          return Fail(token.line,
                      absl::StrCat("unexpected '", Describe(token), "'"));
      }
    }
  }

  bool ParseStatement(const Token& keyword, std::unique_ptr<Node>* out) {
    auto node = std::make_unique<Node>();
    node->line = keyword.line;
    const std::string& name = keyword.text;
    std::string end;
    if (name == "if") {
      node->kind = Node::Kind::kIf;
      while (true) {
        ExprPtr condition;
        if (!ParseExpression(&condition) || !ExpectBlockEnd()) return false;
        NodeList body;
        if (!ParseBody(&body, {"elif", "else", "endif"}, &end)) return false;
        node->branches.emplace_back(std::move(condition), std::move(body));
        if (end == "elif") continue;
        if (end == "else") {
          if (!ExpectBlockEnd() ||
              !ParseBody(&node->else_body, {"endif"}, &end)) {
            return false;
          }
        }
        break;
      }
    } else if (name == "for") {
      node->kind = Node::Kind::kFor;
      do {
        if (Peek().kind != TokenKind::kName) {
          return Fail(Peek().line, "expected a loop variable name");
        }
        node->targets.push_back(Peek().text);
        ++pos_;
      } while (IsOperator(",") && ++pos_);
      if (!IsName("in")) return Fail(Peek().line, "expected 'in' in for");
      ++pos_;
      if (!ParseExpression(&node->expr, /*allow_conditional=*/false)) {
        return false;
      }
      if (IsName("if")) {
        ++pos_;
        if (!ParseExpression(&node->filter, false)) return false;
      }
      if (IsName("recursive")) {
        return Fail(Peek().line, "recursive loops are not supported");
      }
      if (!ExpectBlockEnd() ||
          !ParseBody(&node->body, {"else", "endfor"}, &end)) {
        return false;
      }
      if (end == "else" && (!ExpectBlockEnd() ||
                            !ParseBody(&node->else_body, {"endfor"}, &end))) {
        return false;
      }
    } else if (name == "set") {
      if (Peek().kind != TokenKind::kName) {
        return Fail(Peek().line, "expected a name after set");
      }
      node->targets.push_back(Peek().text);
      ++pos_;
      if (IsOperator(".")) {
        ++pos_;
        if (Peek().kind != TokenKind::kName) {
          return Fail(Peek().line, "expected an attribute name");
        }
        node->targets.push_back(Peek().text);
        node->attribute_target = true;
        ++pos_;
      } else {
        while (IsOperator(",")) {
          ++pos_;
          if (Peek().kind != TokenKind::kName) {
            return Fail(Peek().line, "expected a name in set");
          }
          node->targets.push_back(Peek().text);
          ++pos_;
        }
      }
      if (Peek().kind == TokenKind::kBlockEnd && !node->attribute_target &&
          node->targets.size() == 1) {
        node->kind = Node::Kind::kSetBlock;
        ++pos_;
        return ParseBody(&node->body, {"endset"}, &end) && ExpectBlockEnd() &&
               (*out = std::move(node), true);
      }
      node->kind = Node::Kind::kSet;
      if (!Expect("=") || !ParseTupleOrExpression(&node->expr)) return false;
    } else if (name == "macro") {
      node->kind = Node::Kind::kMacro;
      if (Peek().kind != TokenKind::kName) {
        return Fail(Peek().line, "expected a macro name");
      }
      node->text = Peek().text;
      ++pos_;
      if (!Expect("(")) return false;
      while (!IsOperator(")")) {
        if (Peek().kind != TokenKind::kName) {
          return Fail(Peek().line, "expected a parameter name");
        }
        std::string param = Peek().text;
        ++pos_;
        ExprPtr fallback;
        if (IsOperator("=")) {
          ++pos_;
          if (!ParseExpression(&fallback)) return false;
        }
        node->params.emplace_back(std::move(param), std::move(fallback));
        if (IsOperator(",")) ++pos_;
      }
      ++pos_;
      if (!ExpectBlockEnd() || !ParseBody(&node->body, {"endmacro"}, &end)) {
        return false;
      }
    } else if (name == "call") {
      node->kind = Node::Kind::kCall;
      if (IsOperator("(")) {
        return Fail(Peek().line,
                    "call blocks with caller arguments are not "
                    "supported");
      }
      if (!ParseExpression(&node->expr) || !ExpectBlockEnd() ||
          !ParseBody(&node->body, {"endcall"}, &end)) {
        return false;
      }
    } else if (name == "filter") {
      node->kind = Node::Kind::kFilterBlock;
      // The filter applies to a placeholder: the body's text.
      auto placeholder = std::make_unique<Expr>();
      placeholder->kind = Expr::Kind::kName;
      placeholder->name = " body";
      ExprPtr filtered = std::move(placeholder);
      if (!ParseFilterChain(&filtered, /*first=*/true)) return false;
      node->filter = std::move(filtered);
      if (!ExpectBlockEnd() || !ParseBody(&node->body, {"endfilter"}, &end)) {
        return false;
      }
    } else if (name == "break" || name == "continue") {
      node->kind = name == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
    } else if (name == "generation") {
      node->kind = Node::Kind::kGeneration;
      if (!ExpectBlockEnd() ||
          !ParseBody(&node->body, {"endgeneration"}, &end)) {
        return false;
      }
    } else {
      return Fail(keyword.line,
                  absl::StrCat("unsupported statement '", name,
                               "' (if, for, set, macro, call, filter, break, "
                               "continue, generation are supported)"));
    }
    if (!ExpectBlockEnd()) return false;
    *out = std::move(node);
    return true;
  }

  static ExprPtr Make(Expr::Kind kind, int line) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->line = line;
    return expr;
  }

  // `a, b` without brackets makes a tuple (set x = a, b).
  bool ParseTupleOrExpression(ExprPtr* out) {
    const int line = Peek().line;
    ExprPtr first;
    if (!ParseExpression(&first)) return false;
    if (!IsOperator(",")) {
      *out = std::move(first);
      return true;
    }
    ExprPtr tuple = Make(Expr::Kind::kTuple, line);
    tuple->items.push_back(std::move(first));
    while (IsOperator(",")) {
      ++pos_;
      ExprPtr item;
      if (!ParseExpression(&item)) return false;
      tuple->items.push_back(std::move(item));
    }
    *out = std::move(tuple);
    return true;
  }

  bool ParseExpression(ExprPtr* out, bool allow_conditional = true) {
    if (++depth_ > 200)
      return Fail(Peek().line, "expression nested too deeply");
    const bool ok = ParseConditional(out, allow_conditional);
    --depth_;
    return ok;
  }

  bool ParseConditional(ExprPtr* out, bool allow_conditional) {
    if (!ParseOr(out)) return false;
    while (allow_conditional && IsName("if")) {
      const int line = Peek().line;
      ++pos_;
      ExprPtr condition, otherwise;
      if (!ParseOr(&condition)) return false;
      if (IsName("else")) {
        ++pos_;
        if (!ParseConditional(&otherwise, true)) return false;
      }
      ExprPtr node = Make(Expr::Kind::kConditional, line);
      node->items.push_back(std::move(*out));
      node->items.push_back(std::move(condition));
      if (otherwise) node->items.push_back(std::move(otherwise));
      *out = std::move(node);
    }
    return true;
  }

  bool ParseOr(ExprPtr* out) {
    if (!ParseAnd(out)) return false;
    while (IsName("or")) {
      const int line = Peek().line;
      ++pos_;
      ExprPtr right;
      if (!ParseAnd(&right)) return false;
      ExprPtr node = Make(Expr::Kind::kOr, line);
      node->items.push_back(std::move(*out));
      node->items.push_back(std::move(right));
      *out = std::move(node);
    }
    return true;
  }

  bool ParseAnd(ExprPtr* out) {
    if (!ParseNot(out)) return false;
    while (IsName("and")) {
      const int line = Peek().line;
      ++pos_;
      ExprPtr right;
      if (!ParseNot(&right)) return false;
      ExprPtr node = Make(Expr::Kind::kAnd, line);
      node->items.push_back(std::move(*out));
      node->items.push_back(std::move(right));
      *out = std::move(node);
    }
    return true;
  }

  bool ParseNot(ExprPtr* out) {
    if (IsName("not")) {
      const int line = Peek().line;
      ++pos_;
      ExprPtr operand;
      if (!ParseNot(&operand)) return false;
      ExprPtr node = Make(Expr::Kind::kUnary, line);
      node->name = "not";
      node->items.push_back(std::move(operand));
      *out = std::move(node);
      return true;
    }
    return ParseCompare(out);
  }

  bool ParseCompare(ExprPtr* out) {
    if (!ParseMath1(out)) return false;
    while (true) {
      std::string op;
      if (Peek().kind == TokenKind::kOperator &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" ||
           Peek().text == "<=" || Peek().text == ">" || Peek().text == ">=")) {
        op = Peek().text;
        ++pos_;
      } else if (IsName("in")) {
        op = "in";
        ++pos_;
      } else if (IsName("not") && IsName("in", 1)) {
        op = "not in";
        pos_ += 2;
      } else {
        return true;
      }
      const int line = Peek().line;
      ExprPtr right;
      if (!ParseMath1(&right)) return false;
      ExprPtr node = Make(Expr::Kind::kBinary, line);
      node->name = op;
      node->items.push_back(std::move(*out));
      node->items.push_back(std::move(right));
      *out = std::move(node);
    }
  }

  bool ParseBinaryLevel(ExprPtr* out, std::initializer_list<const char*> ops,
                        bool (Parser::*next)(ExprPtr*)) {
    if (!(this->*next)(out)) return false;
    while (true) {
      const char* matched = nullptr;
      for (const char* op : ops) {
        if (IsOperator(op)) matched = op;
      }
      if (matched == nullptr) return true;
      const int line = Peek().line;
      ++pos_;
      ExprPtr right;
      if (!(this->*next)(&right)) return false;
      ExprPtr node = Make(Expr::Kind::kBinary, line);
      node->name = matched;
      node->items.push_back(std::move(*out));
      node->items.push_back(std::move(right));
      *out = std::move(node);
    }
  }
  bool ParseMath1(ExprPtr* out) {
    return ParseBinaryLevel(out, {"+", "-"}, &Parser::ParseConcat);
  }
  bool ParseConcat(ExprPtr* out) {
    return ParseBinaryLevel(out, {"~"}, &Parser::ParseMath2);
  }
  bool ParseMath2(ExprPtr* out) {
    return ParseBinaryLevel(out, {"*", "/", "//", "%"}, &Parser::ParsePow);
  }
  bool ParsePow(ExprPtr* out) {
    return ParseBinaryLevel(out, {"**"}, &Parser::ParseUnaryWithFilters);
  }
  bool ParseUnaryWithFilters(ExprPtr* out) { return ParseUnary(out, true); }

  bool ParseUnary(ExprPtr* out, bool with_filters) {
    if (IsOperator("-") || IsOperator("+")) {
      const int line = Peek().line;
      const std::string op = Peek().text;
      ++pos_;
      ExprPtr operand;
      if (!ParseUnary(&operand, false)) return false;
      ExprPtr node = Make(Expr::Kind::kUnary, line);
      node->name = op;
      node->items.push_back(std::move(operand));
      *out = std::move(node);
    } else if (!ParsePrimary(out)) {
      return false;
    }
    if (!ParsePostfix(out)) return false;
    return !with_filters || ParseFilterChain(out, /*first=*/false);
  }

  bool ParseArguments(Expr* call) {
    if (!Expect("(")) return false;
    while (!IsOperator(")")) {
      if (Peek().kind == TokenKind::kName && IsOperator("=", 1)) {
        std::string name = Peek().text;
        pos_ += 2;
        ExprPtr value;
        if (!ParseExpression(&value)) return false;
        call->kwargs.emplace_back(std::move(name), std::move(value));
      } else {
        if (IsOperator("*")) {
          return Fail(Peek().line, "*args and **kwargs are not supported");
        }
        ExprPtr value;
        if (!ParseExpression(&value)) return false;
        call->items.push_back(std::move(value));
      }
      if (!IsOperator(",")) break;
      ++pos_;
    }
    return Expect(")");
  }

  // `| filter(args)` and `is [not] test args`, repeatedly. With `first`, the
  // chain starts with a filter name and no pipe (filter blocks).
  bool ParseFilterChain(ExprPtr* out, bool first) {
    while (true) {
      if (first || IsOperator("|")) {
        if (!first) ++pos_;
        first = false;
        if (Peek().kind != TokenKind::kName) {
          return Fail(Peek().line, "expected a filter name");
        }
        ExprPtr node = Make(Expr::Kind::kFilter, Peek().line);
        node->name = Peek().text;
        ++pos_;
        while (IsOperator(".")) {  // dotted filter names are not Jinja's
          return Fail(Peek().line, "unexpected '.' after a filter name");
        }
        node->items.push_back(std::move(*out));
        if (IsOperator("(") && !ParseArguments(node.get())) return false;
        *out = std::move(node);
      } else if (IsName("is")) {
        ++pos_;
        ExprPtr node = Make(Expr::Kind::kTest, Peek().line);
        if (IsName("not")) {
          node->negated = true;
          ++pos_;
        }
        if (Peek().kind != TokenKind::kName) {
          return Fail(Peek().line, "expected a test name after 'is'");
        }
        node->name = Peek().text;
        ++pos_;
        node->items.push_back(std::move(*out));
        if (IsOperator("(")) {
          if (!ParseArguments(node.get())) return false;
        } else if ((Peek().kind == TokenKind::kString ||
                    Peek().kind == TokenKind::kInt ||
                    Peek().kind == TokenKind::kFloat ||
                    (Peek().kind == TokenKind::kName && !IsName("else") &&
                     !IsName("or") && !IsName("and") && !IsName("is") &&
                     !IsName("if") && !IsName("in") && !IsName("not"))) ||
                   IsOperator("[") || IsOperator("{")) {
          ExprPtr argument;
          if (!ParsePrimary(&argument) || !ParsePostfix(&argument)) {
            return false;
          }
          node->items.push_back(std::move(argument));
        }
        *out = std::move(node);
      } else if (IsOperator("(")) {
        ExprPtr node = Make(Expr::Kind::kCall, Peek().line);
        node->items.push_back(std::move(*out));
        if (!ParseArguments(node.get())) return false;
        *out = std::move(node);
      } else {
        return true;
      }
    }
  }

  bool ParsePostfix(ExprPtr* out) {
    while (true) {
      const int line = Peek().line;
      if (IsOperator(".")) {
        ++pos_;
        if (Peek().kind != TokenKind::kName && Peek().kind != TokenKind::kInt) {
          return Fail(line, "expected an attribute name after '.'");
        }
        ExprPtr node = Make(Expr::Kind::kAttribute, line);
        node->name = Peek().text;
        ++pos_;
        node->items.push_back(std::move(*out));
        *out = std::move(node);
      } else if (IsOperator("[")) {
        ++pos_;
        ExprPtr parts[3];
        int part = 0;
        bool slice = false;
        while (true) {
          if (IsOperator(":")) {
            slice = true;
            if (++part > 2) return Fail(line, "too many ':' in a slice");
            ++pos_;
            continue;
          }
          if (IsOperator("]")) break;
          if (parts[part] != nullptr) return Fail(line, "expected ']'");
          if (!ParseExpression(&parts[part])) return false;
        }
        ++pos_;
        ExprPtr node =
            Make(slice ? Expr::Kind::kSlice : Expr::Kind::kSubscript, line);
        node->items.push_back(std::move(*out));
        if (!slice && parts[0] == nullptr) return Fail(line, "empty subscript");
        for (int i = 0; i < (slice ? 3 : 1); ++i) {
          node->items.push_back(std::move(parts[i]));
        }
        *out = std::move(node);
      } else if (IsOperator("(")) {
        ExprPtr node = Make(Expr::Kind::kCall, line);
        node->items.push_back(std::move(*out));
        if (!ParseArguments(node.get())) return false;
        *out = std::move(node);
      } else {
        return true;
      }
    }
  }

  bool ParsePrimary(ExprPtr* out) {
    const Token& token = Peek();
    const int line = token.line;
    switch (token.kind) {
      case TokenKind::kName: {
        ++pos_;
        const std::string& name = token.text;
        if (name == "true" || name == "True" || name == "false" ||
            name == "False") {
          *out = Make(Expr::Kind::kLiteral, line);
          (*out)->value = Value::Bool(name[0] == 't' || name[0] == 'T');
        } else if (name == "none" || name == "None") {
          *out = Make(Expr::Kind::kLiteral, line);
          (*out)->value = Value::None();
        } else {
          *out = Make(Expr::Kind::kName, line);
          (*out)->name = name;
        }
        return true;
      }
      case TokenKind::kString: {
        std::string text;
        while (Peek().kind == TokenKind::kString) {  // "a" "b" concatenates
          text += Peek().text;
          ++pos_;
        }
        *out = Make(Expr::Kind::kLiteral, line);
        (*out)->value = Value::String(std::move(text));
        return true;
      }
      case TokenKind::kInt:
        ++pos_;
        *out = Make(Expr::Kind::kLiteral, line);
        (*out)->value =
            Value::Int(std::strtoll(token.text.c_str(), nullptr, 10));
        return true;
      case TokenKind::kFloat:
        ++pos_;
        *out = Make(Expr::Kind::kLiteral, line);
        (*out)->value = Value::Float(std::strtod(token.text.c_str(), nullptr));
        return true;
      case TokenKind::kOperator:
        if (token.text == "(") {
          ++pos_;
          if (IsOperator(")")) {
            ++pos_;
            *out = Make(Expr::Kind::kTuple, line);
            return true;
          }
          ExprPtr first;
          if (!ParseExpression(&first)) return false;
          if (IsOperator(",")) {
            ExprPtr tuple = Make(Expr::Kind::kTuple, line);
            tuple->items.push_back(std::move(first));
            while (IsOperator(",")) {
              ++pos_;
              if (IsOperator(")")) break;
              ExprPtr item;
              if (!ParseExpression(&item)) return false;
              tuple->items.push_back(std::move(item));
            }
            first = std::move(tuple);
          }
          *out = std::move(first);
          return Expect(")");
        }
        if (token.text == "[") {
          ++pos_;
          ExprPtr list = Make(Expr::Kind::kList, line);
          while (!IsOperator("]")) {
            ExprPtr item;
            if (!ParseExpression(&item)) return false;
            list->items.push_back(std::move(item));
            if (!IsOperator(",")) break;
            ++pos_;
          }
          *out = std::move(list);
          return Expect("]");
        }
        if (token.text == "{") {
          ++pos_;
          ExprPtr dict = Make(Expr::Kind::kDict, line);
          while (!IsOperator("}")) {
            ExprPtr key, value;
            if (!ParseExpression(&key) || !Expect(":") ||
                !ParseExpression(&value)) {
              return false;
            }
            dict->items.push_back(std::move(key));
            dict->items.push_back(std::move(value));
            if (!IsOperator(",")) break;
            ++pos_;
          }
          *out = std::move(dict);
          return Expect("}");
        }
        break;
      default:
        break;
    }
    return Fail(line, absl::StrCat("unexpected '", Describe(token), "'"));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  absl::Status error_;
};

}  // namespace

absl::StatusOr<NodeList> Parse(std::vector<Token> tokens) {
  Parser parser(std::move(tokens));
  return parser.ParseTemplate();
}

}  // namespace openforce::jinja::internal
