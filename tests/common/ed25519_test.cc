// Ed25519 against RFC 8032 section 7.1, and the key-file rules: PEM round
// trips, private keys written 0600, and a private key readable by others
// refused.
#include "common/ed25519.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "absl/strings/escaping.h"
#include "common/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

struct Rfc8032Vector {
  const char* name;
  const char* secret_key;
  const char* public_key;
  const char* message;
  const char* signature;
};

// RFC 8032, section 7.1: TEST 1, TEST 2, TEST 3 and TEST SHA(abc).
const Rfc8032Vector kVectors[] = {
    {"TEST 1",
     "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"TEST 2",
     "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"TEST 3",
     "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    {"TEST SHA(abc)",
     "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"},
};

std::string Unhex(const char* hex) { return absl::HexStringToBytes(hex); }

class Rfc8032Test : public ::testing::TestWithParam<Rfc8032Vector> {};

TEST_P(Rfc8032Test, DerivesPublicKeySignsAndVerifies) {
  const Rfc8032Vector& v = GetParam();
  absl::StatusOr<Ed25519PrivateKey> key =
      Ed25519PrivateKey::FromSeed(Unhex(v.secret_key));
  ASSERT_OK(key);
  EXPECT_EQ(absl::BytesToHexString(key->PublicKey().Raw()), v.public_key);

  absl::StatusOr<std::string> signature = key->Sign(Unhex(v.message));
  ASSERT_OK(signature);
  EXPECT_EQ(absl::BytesToHexString(*signature), v.signature);

  absl::StatusOr<Ed25519PublicKey> public_key =
      Ed25519PublicKey::FromRaw(Unhex(v.public_key));
  ASSERT_OK(public_key);
  EXPECT_OK(public_key->Verify(Unhex(v.message), Unhex(v.signature)));
}

TEST_P(Rfc8032Test, RejectsAlteredMessageAndSignature) {
  const Rfc8032Vector& v = GetParam();
  absl::StatusOr<Ed25519PublicKey> public_key =
      Ed25519PublicKey::FromRaw(Unhex(v.public_key));
  ASSERT_OK(public_key);
  std::string message = Unhex(v.message) + "x";
  EXPECT_THAT(public_key->Verify(message, Unhex(v.signature)),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("does not verify")));
  std::string signature = Unhex(v.signature);
  signature[10] ^= 0x01;
  EXPECT_THAT(public_key->Verify(Unhex(v.message), signature),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("does not verify")));
}

INSTANTIATE_TEST_SUITE_P(
    Rfc8032Section71, Rfc8032Test, ::testing::ValuesIn(kVectors),
    [](const ::testing::TestParamInfo<Rfc8032Vector>& info) {
      return std::to_string(info.index);
    });

TEST(Ed25519Test, RejectsMalformedKeysAndSignatures) {
  EXPECT_THAT(Ed25519PrivateKey::FromSeed("short"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("32 bytes, got 5")));
  EXPECT_THAT(Ed25519PublicKey::FromRaw(std::string(31, 'k')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("32 bytes, got 31")));
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::Generate();
  ASSERT_OK(key);
  EXPECT_THAT(key->PublicKey().Verify("m", std::string(63, 's')),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("64 bytes, got 63")));
  EXPECT_THAT(Ed25519PublicKey::FromPem("not a pem"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a PEM public key")));
}

TEST(Ed25519Test, GeneratedKeysDifferAndVerifyOnlyTheirOwnSignatures) {
  absl::StatusOr<Ed25519PrivateKey> a = Ed25519PrivateKey::Generate();
  absl::StatusOr<Ed25519PrivateKey> b = Ed25519PrivateKey::Generate();
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NE(a->PublicKey().Raw(), b->PublicKey().Raw());
  absl::StatusOr<std::string> signature = a->Sign("delta");
  ASSERT_OK(signature);
  EXPECT_OK(a->PublicKey().Verify("delta", *signature));
  EXPECT_THAT(b->PublicKey().Verify("delta", *signature),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("does not verify")));
}

TEST(Ed25519Test, KeyFilesRoundTripWithPrivateMode) {
  testing::TempDir dir;
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::Generate();
  ASSERT_OK(key);
  const std::string private_path = dir.Join("worker.key");
  const std::string public_path = dir.Join("worker.pub");
  ASSERT_OK(key->SavePemFile(private_path));
  ASSERT_OK(key->PublicKey().SavePemFile(public_path));

  struct stat info;
  ASSERT_EQ(::stat(private_path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);

  absl::StatusOr<Ed25519PrivateKey> loaded =
      Ed25519PrivateKey::LoadPemFile(private_path);
  ASSERT_OK(loaded);
  EXPECT_EQ(loaded->PublicKey().Raw(), key->PublicKey().Raw());
  absl::StatusOr<Ed25519PublicKey> loaded_public =
      Ed25519PublicKey::LoadPemFile(public_path);
  ASSERT_OK(loaded_public);
  EXPECT_EQ(loaded_public->Raw(), key->PublicKey().Raw());
  EXPECT_EQ(loaded_public->Fingerprint(), Sha256Hex(key->PublicKey().Raw()));

  absl::StatusOr<std::string> signature = loaded->Sign("payload");
  ASSERT_OK(signature);
  EXPECT_OK(loaded_public->Verify("payload", *signature));
}

TEST(Ed25519Test, RefusesPrivateKeyReadableByOthers) {
  testing::TempDir dir;
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::Generate();
  ASSERT_OK(key);
  const std::string path = dir.Join("leaky.key");
  ASSERT_OK(key->SavePemFile(path));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(path),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       ::testing::AllOf(HasSubstr(path), HasSubstr("0644"),
                                        HasSubstr("chmod 600"))));
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(path),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("0640")));
}

TEST(Ed25519Test, RejectsWrongKeyFiles) {
  testing::TempDir dir;
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::Generate();
  ASSERT_OK(key);
  // A public key where a private key is expected.
  const std::string public_path = dir.Join("key.pub");
  ASSERT_OK(key->PublicKey().SavePemFile(public_path));
  ASSERT_EQ(::chmod(public_path.c_str(), 0600), 0);
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(public_path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr(public_path),
                                        HasSubstr("not a PEM private key"))));
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(dir.Join("absent.key")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent.key")));
  EXPECT_THAT(Ed25519PrivateKey::LoadPemFile(dir.path()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a regular file")));
}

TEST(Ed25519Test, LoadOrCreateKeepsTheSameIdentity) {
  testing::TempDir dir;
  const std::string path = dir.Join("identity.key");
  absl::StatusOr<Ed25519PrivateKey> first =
      Ed25519PrivateKey::LoadOrCreate(path);
  ASSERT_OK(first);
  absl::StatusOr<Ed25519PrivateKey> second =
      Ed25519PrivateKey::LoadOrCreate(path);
  ASSERT_OK(second);
  EXPECT_EQ(first->PublicKey().Raw(), second->PublicKey().Raw());
}

}  // namespace
}  // namespace openforce
