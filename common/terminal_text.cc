// Terminal escaping; see terminal_text.h.
#include "common/terminal_text.h"

#include <cstdint>

#include "absl/strings/str_format.h"

namespace openforce {
namespace {

// Length of the well-formed UTF-8 sequence at `text[i]` and its code point,
// or 0 when the bytes there are not one.
size_t DecodeUtf8(absl::string_view text, size_t i, uint32_t* code_point) {
  const auto byte = [&](size_t k) {
    return static_cast<unsigned char>(text[k]);
  };
  const unsigned char lead = byte(i);
  size_t length;
  uint32_t value;
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  } else if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    value = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    value = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    value = lead & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    value = (value << 6) | (byte(i + k) & 0x3f);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not well formed.
  if ((length == 3 && value < 0x800) || (length == 4 && value < 0x10000) ||
      (value >= 0xd800 && value <= 0xdfff) || value > 0x10ffff) {
    return 0;
  }
  *code_point = value;
  return length;
}

bool IsUnsafeCodePoint(uint32_t c) {
  return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) ||
         (c >= 0x200e && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
         (c >= 0x2066 && c <= 0x2069) || c == 0x061c;
}

}  // namespace

std::string EscapeForTerminal(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    uint32_t code_point = 0;
    const size_t length = DecodeUtf8(text, i, &code_point);
    if (length == 0) {
      absl::StrAppendFormat(&out, "\\x%02x",
                            static_cast<unsigned char>(text[i]));
      ++i;
      continue;
    }
    if (code_point == '\\') {
      out += "\\\\";
    } else if (code_point < 0x80 && IsUnsafeCodePoint(code_point)) {
      absl::StrAppendFormat(&out, "\\x%02x", code_point);
    } else if (IsUnsafeCodePoint(code_point)) {
      absl::StrAppendFormat(&out, "\\u%04x", code_point);
    } else {
      out.append(text.data() + i, length);
    }
    i += length;
  }
  return out;
}

bool IsTerminalSafe(absl::string_view text) {
  return EscapeForTerminal(text) == text;
}

}  // namespace openforce
