// Streaming SHA-256 through OpenSSL's EVP interface. Content hashes of blobs,
// models, shards and deltas are lowercase hex SHA-256 everywhere in openforce.
#ifndef OPENFORCE_COMMON_SHA256_H_
#define OPENFORCE_COMMON_SHA256_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/internal/openssl_handles.h"

namespace openforce {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental hasher: Update() any number of times, then Finish() once.
class Sha256 {
 public:
  Sha256();
  Sha256(Sha256&&) = default;
  Sha256& operator=(Sha256&&) = default;

  void Update(absl::string_view data);
  // Returns the digest; the hasher must not be used afterwards except via
  // Reset().
  Sha256Digest Finish();
  void Reset();

 private:
  internal::EvpMdCtxPtr ctx_;
};

std::string DigestToHex(const Sha256Digest& digest);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Lowercase hex SHA-256 of a file's contents, read in chunks.
[[nodiscard]] absl::StatusOr<std::string> Sha256FileHex(
    const std::string& path);

// True when `text` has the form of a hex SHA-256 (64 lowercase hex digits).
// Anything used as a file name in the blob store must pass this first.
bool IsSha256Hex(absl::string_view text);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_SHA256_H_
