// UTF-8 helpers for the tokenizer.json pipeline: decoding code points,
// Unicode normalization forms and character properties from utf8proc (no
// tables typed in here), and Rust's char predicates that Hugging Face's
// tokenizers relies on (is_whitespace, is_alphanumeric, to_lowercase).
#ifndef OPENFORCE_LORA_INTERNAL_UNICODE_TEXT_H_
#define OPENFORCE_LORA_INTERNAL_UNICODE_TEXT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce::lora::internal {

// The code point starting at text[*pos], advancing *pos past it. Invalid
// bytes decode as U+FFFD, one byte at a time.
char32_t NextCodePoint(absl::string_view text, size_t* pos);
// Length in bytes of the UTF-8 sequence starting with `lead` (1 for invalid).
size_t Utf8SequenceLength(unsigned char lead);
void AppendUtf8(char32_t code_point, std::string* out);

// True when every byte is ASCII (no normalization can change the text).
bool IsAscii(absl::string_view text);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// InvalidArgument when `text` is not valid UTF-8.
[[nodiscard]] absl::StatusOr<std::string> Normalize(absl::string_view text,
                                                    NormalForm form);

// Rust's char::to_lowercase applied to every character.
std::string Lowercase(absl::string_view text);

// Rust's char::is_whitespace (the White_Space property).
bool IsWhitespace(char32_t c);
// Rust's char::is_alphanumeric (letters and numbers).
bool IsAlphanumeric(char32_t c);
// Unicode punctuation (general category P*), or ASCII punctuation.
bool IsPunctuation(char32_t c);

// Lossy UTF-8 decoding as Rust's String::from_utf8_lossy: each maximal invalid
// subsequence becomes U+FFFD.
std::string ToValidUtf8(absl::string_view bytes);
bool IsValidUtf8(absl::string_view bytes);

}  // namespace openforce::lora::internal

#endif  // OPENFORCE_LORA_INTERNAL_UNICODE_TEXT_H_
