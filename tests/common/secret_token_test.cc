// Bearer tokens and their files.
#include "common/secret_token.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/file_util.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(SecretTokenTest, RandomHexHasTheLengthAndDiffers) {
  const std::string a = RandomHex(32), b = RandomHex(32);
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(SecretTokenTest, ComparisonNeedsEqualNonEmptyTokens) {
  EXPECT_TRUE(TokensEqual("abc", "abc"));
  EXPECT_FALSE(TokensEqual("abc", "abd"));
  EXPECT_FALSE(TokensEqual("abc", "abcd"));
  EXPECT_FALSE(TokensEqual("", ""));
}

TEST(SecretTokenTest, CreatesAPrivateFileOnceAndReadsItBack) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/admin.token";
  auto created = LoadOrCreateTokenFile(path);
  ASSERT_OK(created);
  struct stat info;
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  auto again = LoadOrCreateTokenFile(path);
  ASSERT_OK(again);
  EXPECT_EQ(*again, *created);
}

TEST(SecretTokenTest, RefusesReadableAndEmptyFiles) {
  testing::TempDir dir;
  ASSERT_OK(WriteFileAtomically(dir.path() + "/open", "tok\n", 0644));
  EXPECT_THAT(
      ReadTokenFile(dir.path() + "/open"),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("chmod 600")));
  ASSERT_OK(WriteFileAtomically(dir.path() + "/empty", " \n", 0600));
  EXPECT_THAT(ReadTokenFile(dir.path() + "/empty"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  ASSERT_OK(WriteFileAtomically(dir.path() + "/ok", "  tok  \nrest", 0600));
  auto token = ReadTokenFile(dir.path() + "/ok");
  ASSERT_OK(token);
  EXPECT_EQ(*token, "tok");
  EXPECT_THAT(ReadTokenFile(dir.path() + "/none"),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

}  // namespace
}  // namespace openforce
