// Ed25519 through OpenSSL EVP; see ed25519.h.
#include "common/ed25519.h"

#include <openssl/pem.h>
#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace openforce {
namespace {

using internal::BioPtr;
using internal::EvpMdCtxPtr;
using internal::EvpPkeyPtr;
using internal::OpenSslError;

absl::Status CheckIsEd25519(EVP_PKEY* key, absl::string_view source) {
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, " holds a key that is not Ed25519 (",
                     OBJ_nid2sn(EVP_PKEY_get_id(key)), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  if (length < 0 || data == nullptr) return OpenSslError("read memory BIO");
  return std::string(data, static_cast<size_t>(length));
}

}  // namespace

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromRaw(
    absl::string_view raw) {
  if (raw.size() != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Ed25519 public key must be %d bytes, got %d",
                        kEd25519PublicKeySize, raw.size()));
  }
  EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr,
      reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
  if (key == nullptr) {
    internal::DrainOpenSslErrors();
    return absl::InvalidArgumentError("not a valid Ed25519 public key");
  }
  return Ed25519PublicKey(std::move(key));
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPem(
    absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return OpenSslError("allocate BIO");
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM public key: ", internal::DrainOpenSslErrors()));
  }
  RETURN_IF_ERROR(CheckIsEd25519(key.get(), "PEM public key"));
  return Ed25519PublicKey(std::move(key));
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::LoadPemFile(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadFileToString(path));
  absl::StatusOr<Ed25519PublicKey> key = FromPem(pem);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat(path, ": ", key.status().message()));
  }
  return key;
}

std::string Ed25519PublicKey::Raw() const {
  std::string raw(kEd25519PublicKeySize, '\0');
  size_t length = raw.size();
  if (EVP_PKEY_get_raw_public_key(key_.get(),
                                  reinterpret_cast<unsigned char*>(raw.data()),
                                  &length) != 1 ||
      length != kEd25519PublicKeySize) {
    internal::DrainOpenSslErrors();
    return std::string();
  }
  return raw;
}

absl::StatusOr<std::string> Ed25519PublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) {
    return OpenSslError("encode public key as PEM");
  }
  return BioContents(bio.get());
}

std::string Ed25519PublicKey::Fingerprint() const { return Sha256Hex(Raw()); }

absl::Status Ed25519PublicKey::SavePemFile(const std::string& path) const {
  ASSIGN_OR_RETURN(std::string pem, ToPem());
  return WriteFileAtomically(path, pem, 0644);
}

absl::Status Ed25519PublicKey::Verify(absl::string_view message,
                                      absl::string_view signature) const {
  if (signature.size() != kEd25519SignatureSize) {
    return absl::UnauthenticatedError(
        absl::StrFormat("Ed25519 signature must be %d bytes, got %d",
                        kEd25519SignatureSize, signature.size()));
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr,
                                             nullptr, key_.get()) != 1) {
    return OpenSslError("initialise Ed25519 verification");
  }
  int result = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
      signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
      message.size());
  if (result != 1) {
    internal::DrainOpenSslErrors();
    return absl::UnauthenticatedError("Ed25519 signature does not verify");
  }
  return absl::OkStatus();
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::Generate() {
  EVP_PKEY* raw_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw_key == nullptr) return OpenSslError("generate Ed25519 key");
  return Ed25519PrivateKey(EvpPkeyPtr(raw_key));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromSeed(
    absl::string_view seed) {
  if (seed.size() != kEd25519SeedSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Ed25519 seed must be %d bytes, got %d",
                        kEd25519SeedSize, seed.size()));
  }
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr,
      reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  if (key == nullptr) return OpenSslError("import Ed25519 seed");
  return Ed25519PrivateKey(std::move(key));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPem(
    absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return OpenSslError("allocate BIO");
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a PEM private key: ", internal::DrainOpenSslErrors()));
  }
  RETURN_IF_ERROR(CheckIsEd25519(key.get(), "PEM private key"));
  return Ed25519PrivateKey(std::move(key));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::LoadPemFile(
    const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("private key ", path));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("private key ", path, " is not a regular file"));
  }
  if ((info.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "private key %s is accessible by group or others (mode %04o); "
        "run 'chmod 600 %s'",
        path, info.st_mode & 07777, path));
  }
  ASSIGN_OR_RETURN(std::string pem, ReadFileToString(path));
  absl::StatusOr<Ed25519PrivateKey> key = FromPem(pem);
  if (!key.ok()) {
    return absl::Status(key.status().code(),
                        absl::StrCat(path, ": ", key.status().message()));
  }
  return key;
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::LoadOrCreate(
    const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) == 0) return LoadPemFile(path);
  if (errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("private key ", path));
  }
  ASSIGN_OR_RETURN(Ed25519PrivateKey key, Generate());
  RETURN_IF_ERROR(key.SavePemFile(path));
  return key;
}

Ed25519PublicKey Ed25519PrivateKey::PublicKey() const {
  // An Ed25519 EVP_PKEY always carries its public half; re-import it alone so
  // that the public object can never be used to sign.
  unsigned char raw[kEd25519PublicKeySize];
  size_t length = sizeof(raw);
  EVP_PKEY_get_raw_public_key(key_.get(), raw, &length);
  return Ed25519PublicKey(EvpPkeyPtr(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw, length)));
}

absl::StatusOr<std::string> Ed25519PrivateKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0,
                               nullptr, nullptr) != 1) {
    return OpenSslError("encode private key as PEM");
  }
  return BioContents(bio.get());
}

absl::Status Ed25519PrivateKey::SavePemFile(const std::string& path) const {
  ASSIGN_OR_RETURN(std::string pem, ToPem());
  return WriteFileAtomically(path, pem, 0600);
}

absl::StatusOr<std::string> Ed25519PrivateKey::Sign(
    absl::string_view message) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr,
                                           key_.get()) != 1) {
    return OpenSslError("initialise Ed25519 signing");
  }
  std::string signature(kEd25519SignatureSize, '\0');
  size_t length = signature.size();
  if (EVP_DigestSign(
          ctx.get(), reinterpret_cast<unsigned char*>(signature.data()),
          &length, reinterpret_cast<const unsigned char*>(message.data()),
          message.size()) != 1 ||
      length != kEd25519SignatureSize) {
    return OpenSslError("Ed25519 sign");
  }
  return signature;
}

}  // namespace openforce
