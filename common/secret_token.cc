// Bearer tokens; see secret_token.h.
#include "common/secret_token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cerrno>
#include <stdexcept>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace openforce {

std::string RandomHex(size_t bytes) {
  std::string buffer(bytes, '\0');
  if (bytes > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(buffer.data()),
                              static_cast<int>(bytes)) != 1) {
    // Without randomness no identifier or token is safe to hand out.
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  return absl::BytesToHexString(buffer);
}

bool TokensEqual(absl::string_view a, absl::string_view b) {
  if (a.empty() || b.empty() || a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0)
    return ErrnoToStatus(errno, absl::StrCat("token file ", path));
  if ((info.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "token file %s has mode %04o: readable by others; run chmod 600 %s",
        path, info.st_mode & 07777, path));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::string token(
      absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))));
  if (token.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is empty"));
  return token;
}

absl::StatusOr<std::string> LoadOrCreateTokenFile(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) == 0) return ReadTokenFile(path);
  const std::string token = RandomHex(32);
  RETURN_IF_ERROR(WriteFileAtomically(path, token + "\n", 0600));
  return token;
}

}  // namespace openforce
