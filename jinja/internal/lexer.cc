// Jinja lexer; see lexer.h.
#include "jinja/internal/lexer.h"

#include <cctype>

#include "absl/strings/str_cat.h"

namespace openforce::jinja::internal {
namespace {

bool IsSpaceOrTab(char c) { return c == ' ' || c == '\t'; }
bool IsWhitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

absl::Status Error(int line, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("template line ", line, ": ", what));
}

int CountLines(absl::string_view text) {
  int lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

// Tokens inside {{ }} or {% %}, up to the closing delimiter.
absl::Status LexExpression(absl::string_view source, size_t* pos, int* line,
                           const std::string& close, std::vector<Token>* out) {
  static const char* const kOperators[] = {
      "==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "|",
      ".",  ",",  ":",  "(",  ")",  "[",  "]", "{", "}", "<", ">", "="};
  while (true) {
    while (*pos < source.size() && IsWhitespace(source[*pos])) {
      *line += source[*pos] == '\n';
      ++*pos;
    }
    if (*pos >= source.size()) return Error(*line, "unclosed tag");
    // The closing delimiter, possibly with a whitespace-control marker.
    for (const char* marker : {"-", "+", ""}) {
      const std::string ending = marker + close;
      if (source.compare(*pos, ending.size(), ending) == 0)
        return absl::OkStatus();
    }
    const char c = source[*pos];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = *pos;
      while (*pos < source.size() &&
             (std::isalnum(static_cast<unsigned char>(source[*pos])) ||
              source[*pos] == '_')) {
        ++*pos;
      }
      out->push_back({TokenKind::kName,
                      std::string(source.substr(start, *pos - start)), *line});
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      const size_t start = *pos;
      bool is_float = false;
      while (*pos < source.size() &&
             (std::isdigit(static_cast<unsigned char>(source[*pos])) ||
              source[*pos] == '_' ||
              (source[*pos] == '.' && !is_float && *pos + 1 < source.size() &&
               std::isdigit(static_cast<unsigned char>(source[*pos + 1]))))) {
        is_float |= source[*pos] == '.';
        ++*pos;
      }
      // An exponent makes a float: 1e20, 2.5E-3.
      if (*pos < source.size() &&
          (source[*pos] == 'e' || source[*pos] == 'E')) {
        size_t next = *pos + 1;
        if (next < source.size() &&
            (source[next] == '+' || source[next] == '-'))
          ++next;
        if (next < source.size() &&
            std::isdigit(static_cast<unsigned char>(source[next]))) {
          is_float = true;
          *pos = next;
          while (*pos < source.size() &&
                 std::isdigit(static_cast<unsigned char>(source[*pos]))) {
            ++*pos;
          }
        }
      }
      std::string digits;
      for (char d : source.substr(start, *pos - start)) {
        if (d != '_') digits += d;
      }
      out->push_back(
          {is_float ? TokenKind::kFloat : TokenKind::kInt, digits, *line});
      continue;
    }
    if (c == '\'' || c == '"') {
      const int start_line = *line;
      std::string value;
      ++*pos;
      while (true) {
        if (*pos >= source.size()) return Error(start_line, "unclosed string");
        const char d = source[*pos];
        if (d == c) {
          ++*pos;
          break;
        }
        if (d == '\\' && *pos + 1 < source.size()) {
          const char e = source[*pos + 1];
          *pos += 2;
          switch (e) {
            case 'n':
              value += '\n';
              break;
            case 't':
              value += '\t';
              break;
            case 'r':
              value += '\r';
              break;
            case '\\':
            case '\'':
            case '"':
              value += e;
              break;
            default:
              value += '\\';
              value += e;
          }
          continue;
        }
        *line += d == '\n';
        value += d;
        ++*pos;
      }
      out->push_back({TokenKind::kString, value, start_line});
      continue;
    }
    bool matched = false;
    for (const char* op : kOperators) {
      const size_t length = std::char_traits<char>::length(op);
      if (source.compare(*pos, length, op) == 0) {
        out->push_back({TokenKind::kOperator, op, *line});
        *pos += length;
        matched = true;
        break;
      }
    }
    if (!matched) {
      return Error(*line, absl::StrCat("unexpected character '",
                                       std::string(1, c), "'"));
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source) {
  // keep_trailing_newline=False: one trailing newline goes.
  if (!source.empty() && source.back() == '\n') {
    source.remove_suffix(1);
    if (!source.empty() && source.back() == '\r') source.remove_suffix(1);
  }
  std::vector<Token> tokens;
  size_t pos = 0;
  int line = 1;
  bool trim_next = false;    // "-" on the previous tag's end
  bool after_block = false;  // the previous tag was {% %} or {# #}
  while (pos <= source.size()) {
    size_t open = source.find('{', pos);
    while (open != absl::string_view::npos && open + 1 < source.size() &&
           source[open + 1] != '{' && source[open + 1] != '%' &&
           source[open + 1] != '#') {
      open = source.find('{', open + 1);
    }
    if (open != absl::string_view::npos && open + 1 >= source.size()) {
      open = absl::string_view::npos;
    }
    std::string text(source.substr(pos, open == absl::string_view::npos
                                            ? absl::string_view::npos
                                            : open - pos));
    const int text_line = line;
    line += CountLines(text);
    if (trim_next) {
      size_t first = 0;
      while (first < text.size() && IsWhitespace(text[first])) ++first;
      text.erase(0, first);
    } else if (after_block && !text.empty()) {
      // trim_blocks: the newline right after a block tag goes.
      if (text[0] == '\n') {
        text.erase(0, 1);
      } else if (text.compare(0, 2, "\r\n") == 0) {
        text.erase(0, 2);
      }
    }
    if (open == absl::string_view::npos) {
      if (!text.empty()) tokens.push_back({TokenKind::kText, text, text_line});
      break;
    }
    const char type = source[open + 1];
    const char marker = open + 2 < source.size() ? source[open + 2] : '\0';
    if (marker == '-') {
      while (!text.empty() && IsWhitespace(text.back())) text.pop_back();
    } else if ((type == '%' || type == '#') && marker != '+') {
      // lstrip_blocks: spaces and tabs between a line start and a block tag.
      size_t begin = open;
      while (begin > 0 && IsSpaceOrTab(source[begin - 1])) --begin;
      if (begin == 0 || source[begin - 1] == '\n') {
        text.erase(text.size() - std::min(text.size(), open - begin));
      }
    }
    if (!text.empty()) tokens.push_back({TokenKind::kText, text, text_line});
    pos = open + 2 + ((marker == '-' || marker == '+') ? 1 : 0);
    if (type == '#') {
      const size_t close = source.find("#}", pos);
      if (close == absl::string_view::npos)
        return Error(line, "unclosed comment");
      line += CountLines(source.substr(pos, close - pos));
      trim_next = close > pos && source[close - 1] == '-';
      after_block = true;
      pos = close + 2;
      continue;
    }
    const bool block = type == '%';
    tokens.push_back(
        {block ? TokenKind::kBlockBegin : TokenKind::kOutputBegin, "", line});
    const std::string close = block ? "%}" : "}}";
    absl::Status lexed = LexExpression(source, &pos, &line, close, &tokens);
    if (!lexed.ok()) return lexed;
    trim_next = source[pos] == '-';
    const bool plus = source[pos] == '+';
    pos += (trim_next || plus ? 1 : 0) + 2;
    tokens.push_back(
        {block ? TokenKind::kBlockEnd : TokenKind::kOutputEnd, "", line});
    after_block = block && !plus;
  }
  tokens.push_back({TokenKind::kEnd, "", line});
  return tokens;
}

}  // namespace openforce::jinja::internal
