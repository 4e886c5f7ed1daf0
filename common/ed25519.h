// Ed25519 identities (RFC 8032) through OpenSSL 3 EVP: key generation, signing,
// verification, and PEM key files. Coordinator and workers each hold one
// private key; a private key file must be private to its owner (mode 0600) or
// it is refused.
#ifndef OPENFORCE_COMMON_ED25519_H_
#define OPENFORCE_COMMON_ED25519_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/internal/openssl_handles.h"

namespace openforce {

inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SeedSize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;

class Ed25519PublicKey {
 public:
  // From the 32-byte raw encoding (as on the wire and in RFC 8032).
  [[nodiscard]] static absl::StatusOr<Ed25519PublicKey> FromRaw(
      absl::string_view raw);
  [[nodiscard]] static absl::StatusOr<Ed25519PublicKey> FromPem(
      absl::string_view pem);
  [[nodiscard]] static absl::StatusOr<Ed25519PublicKey> LoadPemFile(
      const std::string& path);

  Ed25519PublicKey(Ed25519PublicKey&&) = default;
  Ed25519PublicKey& operator=(Ed25519PublicKey&&) = default;

  // The 32-byte raw key.
  std::string Raw() const;
  // SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
  absl::StatusOr<std::string> ToPem() const;
  // Lowercase hex SHA-256 of the raw key: what operators compare and pin.
  std::string Fingerprint() const;
  [[nodiscard]] absl::Status SavePemFile(const std::string& path) const;

  // OK when `signature` is a valid signature of `message`; Unauthenticated
  // otherwise.
  [[nodiscard]] absl::Status Verify(absl::string_view message,
                                    absl::string_view signature) const;

 private:
  friend class Ed25519PrivateKey;
  explicit Ed25519PublicKey(internal::EvpPkeyPtr key) : key_(std::move(key)) {}
  internal::EvpPkeyPtr key_;
};

class Ed25519PrivateKey {
 public:
  // A fresh key from OpenSSL's CSPRNG.
  [[nodiscard]] static absl::StatusOr<Ed25519PrivateKey> Generate();
  // From the 32-byte seed ("secret key" in RFC 8032).
  [[nodiscard]] static absl::StatusOr<Ed25519PrivateKey> FromSeed(
      absl::string_view seed);
  [[nodiscard]] static absl::StatusOr<Ed25519PrivateKey> FromPem(
      absl::string_view pem);
  // Refuses a file that is not a regular file or that group or others may
  // access.
  [[nodiscard]] static absl::StatusOr<Ed25519PrivateKey> LoadPemFile(
      const std::string& path);
  // Loads `path` when it exists, otherwise generates a key and saves it there.
  [[nodiscard]] static absl::StatusOr<Ed25519PrivateKey> LoadOrCreate(
      const std::string& path);

  Ed25519PrivateKey(Ed25519PrivateKey&&) = default;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&&) = default;

  Ed25519PublicKey PublicKey() const;
  // PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), unencrypted.
  absl::StatusOr<std::string> ToPem() const;
  // Writes the PEM with mode 0600, atomically.
  [[nodiscard]] absl::Status SavePemFile(const std::string& path) const;

  // The 64-byte signature of `message`.
  absl::StatusOr<std::string> Sign(absl::string_view message) const;

 private:
  explicit Ed25519PrivateKey(internal::EvpPkeyPtr key) : key_(std::move(key)) {}
  internal::EvpPkeyPtr key_;
};

}  // namespace openforce

#endif  // OPENFORCE_COMMON_ED25519_H_
