// RAII owners for OpenSSL objects and a helper that turns OpenSSL's error queue
// into an absl::Status. Internal to common/: callers use sha256.h and
// ed25519.h.
#ifndef OPENFORCE_COMMON_INTERNAL_OPENSSL_HANDLES_H_
#define OPENFORCE_COMMON_INTERNAL_OPENSSL_HANDLES_H_

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace openforce::internal {

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free_all(bio); }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

// Drains OpenSSL's thread-local error queue into one message, so that a failure
// reports what OpenSSL said and later calls do not see stale errors.
inline std::string DrainOpenSslErrors() {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!out.empty()) out += "; ";
    out += buffer;
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

inline absl::Status OpenSslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", DrainOpenSslErrors()));
}

}  // namespace openforce::internal

#endif  // OPENFORCE_COMMON_INTERNAL_OPENSSL_HANDLES_H_
