// UTF-8 helpers; see unicode_text.h.
#include "lora/internal/unicode_text.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"

namespace openforce::lora::internal {

size_t Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

char32_t NextCodePoint(absl::string_view text, size_t* pos) {
  utf8proc_int32_t code_point = 0;
  const utf8proc_ssize_t length = utf8proc_iterate(
      reinterpret_cast<const utf8proc_uint8_t*>(text.data() + *pos),
      static_cast<utf8proc_ssize_t>(text.size() - *pos), &code_point);
  if (length <= 0) {
    *pos += 1;
    return 0xFFFD;
  }
  *pos += static_cast<size_t>(length);
  return static_cast<char32_t>(code_point);
}

void AppendUtf8(char32_t code_point, std::string* out) {
  utf8proc_uint8_t buffer[4];
  const utf8proc_ssize_t length =
      utf8proc_encode_char(static_cast<utf8proc_int32_t>(code_point), buffer);
  out->append(reinterpret_cast<const char*>(buffer),
              static_cast<size_t>(length));
}

bool IsAscii(absl::string_view text) {
  for (unsigned char c : text) {
    if (c >= 0x80) return false;
  }
  return true;
}

namespace {

// Bytes of the valid UTF-8 sequence at bytes[pos]; 0 when it is invalid.
size_t ValidSequenceAt(absl::string_view bytes, size_t pos) {
  if (static_cast<unsigned char>(bytes[pos]) < 0x80) return 1;
  utf8proc_int32_t code_point = 0;
  const utf8proc_ssize_t length = utf8proc_iterate(
      reinterpret_cast<const utf8proc_uint8_t*>(bytes.data() + pos),
      static_cast<utf8proc_ssize_t>(bytes.size() - pos), &code_point);
  return length > 0 ? static_cast<size_t>(length) : 0;
}

}  // namespace

bool IsValidUtf8(absl::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t length = ValidSequenceAt(bytes, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::string ToValidUtf8(absl::string_view bytes) {
  if (IsValidUtf8(bytes)) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() + 8);
  size_t pos = 0;
  while (pos < bytes.size()) {
    const unsigned char lead = static_cast<unsigned char>(bytes[pos]);
    if (const size_t length = ValidSequenceAt(bytes, pos); length > 0) {
      out.append(bytes.data() + pos, length);
      pos += length;
      continue;
    }
    // A maximal prefix of a valid sequence counts as one invalid unit, as
    // Rust's from_utf8_lossy (and the WHATWG decoder) replace it.
    size_t need = Utf8SequenceLength(lead);
    size_t consumed = 1;
    if (need > 1) {
      unsigned char low = 0x80, high = 0xBF;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
      if (lead < 0xC2 || lead > 0xF4) need = 1;
      while (consumed < need && pos + consumed < bytes.size()) {
        const unsigned char next =
            static_cast<unsigned char>(bytes[pos + consumed]);
        const unsigned char lo = consumed == 1 ? low : 0x80;
        const unsigned char hi = consumed == 1 ? high : 0xBF;
        if (next < lo || next > hi) break;
        ++consumed;
      }
    }
    out.append("\xEF\xBF\xBD");
    pos += consumed;
  }
  return out;
}

absl::StatusOr<std::string> Normalize(absl::string_view text, NormalForm form) {
  if (IsAscii(text)) return std::string(text);
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNfc:
      options |= UTF8PROC_COMPOSE;
      break;
    case NormalForm::kNfd:
      options |= UTF8PROC_DECOMPOSE;
      break;
    case NormalForm::kNfkc:
      options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
      break;
    case NormalForm::kNfkd:
      options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
      break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t length =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &result,
                   static_cast<utf8proc_option_t>(options));
  if (length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot normalize text: ",
                     utf8proc_errmsg(static_cast<utf8proc_ssize_t>(length))));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result,
                                                                &std::free);
  return std::string(reinterpret_cast<const char*>(result),
                     static_cast<size_t>(length));
}

std::string Lowercase(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[pos]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
      ++pos;
      continue;
    }
    const char32_t code_point = NextCodePoint(text, &pos);
    // The one unconditional multi-character lowercase mapping in
    // SpecialCasing.txt: U+0130 -> "i" + U+0307.
    if (code_point == 0x130) {
      out.append("i\xCC\x87");
      continue;
    }
    AppendUtf8(static_cast<char32_t>(
                   utf8proc_tolower(static_cast<utf8proc_int32_t>(code_point))),
               &out);
  }
  return out;
}

bool IsWhitespace(char32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85) return true;
  if (c < 0x80) return false;
  const utf8proc_category_t category =
      utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_ZS || category == UTF8PROC_CATEGORY_ZL ||
         category == UTF8PROC_CATEGORY_ZP;
}

bool IsAlphanumeric(char32_t c) {
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
  }
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

bool IsPunctuation(char32_t c) {
  if (c < 0x80) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
           (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  }
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

}  // namespace openforce::lora::internal
