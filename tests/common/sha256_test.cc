// SHA-256 against the FIPS 180-2 example vectors, streaming and from files.
#include "common/sha256.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kAbcDigest[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char k448BitMessage[] =
    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
constexpr char k448BitDigest[] =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr char kMillionADigest[] =
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

TEST(Sha256Test, FipsExampleVectors) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), kAbcDigest);
  EXPECT_EQ(Sha256Hex(k448BitMessage), k448BitDigest);
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')), kMillionADigest);
}

TEST(Sha256Test, StreamingInUnevenPiecesMatchesOneShot) {
  Sha256 hasher;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 999; ++i) hasher.Update(chunk);
  hasher.Update(std::string(999, 'a'));
  hasher.Update("a");
  EXPECT_EQ(DigestToHex(hasher.Finish()), kMillionADigest);

  hasher.Reset();
  hasher.Update("ab");
  hasher.Update("");
  hasher.Update("c");
  EXPECT_EQ(DigestToHex(hasher.Finish()), kAbcDigest);
}

TEST(Sha256Test, HashesFiles) {
  testing::TempDir dir;
  const std::string path = dir.WriteFile("message", k448BitMessage);
  absl::StatusOr<std::string> digest = Sha256FileHex(path);
  ASSERT_OK(digest);
  EXPECT_EQ(*digest, k448BitDigest);
  EXPECT_THAT(Sha256FileHex(dir.Join("missing")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
}

TEST(Sha256Test, RecognisesHexDigests) {
  EXPECT_TRUE(IsSha256Hex(kAbcDigest));
  EXPECT_FALSE(IsSha256Hex(""));
  EXPECT_FALSE(IsSha256Hex(std::string(kAbcDigest).substr(1)));
  EXPECT_FALSE(IsSha256Hex(
      "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
  EXPECT_FALSE(IsSha256Hex(
      "../../etc/passwd0000000000000000000000000000000000000000000000000"));
}

}  // namespace
}  // namespace openforce
