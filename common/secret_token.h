// Bearer tokens (the admin token, enrollment tokens): random generation,
// constant-time comparison, and token files that, like private keys, must not
// be readable by group or others.
#ifndef OPENFORCE_COMMON_SECRET_TOKEN_H_
#define OPENFORCE_COMMON_SECRET_TOKEN_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce {

// `bytes` bytes from OpenSSL's CSPRNG as lowercase hex.
std::string RandomHex(size_t bytes);

// Constant-time equality, so a wrong token's timing tells nothing about the
// right one. False when either side is empty.
bool TokensEqual(absl::string_view a, absl::string_view b);

// Reads a token (the first line, surrounding whitespace removed) from `path`.
// PermissionDenied when the file is readable by group or others,
// InvalidArgument when it is empty.
[[nodiscard]] absl::StatusOr<std::string> ReadTokenFile(
    const std::string& path);

// Reads the token at `path`, or writes a new random one there (mode 0600)
// when the file does not exist.
[[nodiscard]] absl::StatusOr<std::string> LoadOrCreateTokenFile(
    const std::string& path);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_SECRET_TOKEN_H_
