// The coordinator identity on a real data directory.
#include "coordinator/identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::coordinator {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(IdentityTest, CreatesAPrivateKeyAndPublishesItsPublicHalf) {
  testing::TempDir dir;
  const std::string data = dir.Join("coordinator-data");
  absl::StatusOr<Ed25519PublicKey> created = CreateIdentity(data);
  ASSERT_OK(created);
  struct stat info;
  ASSERT_EQ(::stat(PrivateKeyPath(data).c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);
  absl::StatusOr<Ed25519PublicKey> published =
      Ed25519PublicKey::LoadPemFile(PublicKeyPath(data));
  ASSERT_OK(published);
  EXPECT_EQ(published->Fingerprint(), created->Fingerprint());

  absl::StatusOr<Ed25519PrivateKey> loaded = LoadIdentity(data);
  ASSERT_OK(loaded);
  absl::StatusOr<std::string> signature = loaded->Sign("adapter v1");
  ASSERT_OK(signature);
  EXPECT_OK(published->Verify("adapter v1", *signature));
}

TEST(IdentityTest, RefusesToReplaceAnExistingKey) {
  testing::TempDir dir;
  absl::StatusOr<Ed25519PublicKey> first = CreateIdentity(dir.path());
  ASSERT_OK(first);
  EXPECT_THAT(
      CreateIdentity(dir.path()),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("coordinator.key")));
  absl::StatusOr<Ed25519PrivateKey> still = LoadIdentity(dir.path());
  ASSERT_OK(still);
  EXPECT_EQ(still->PublicKey().Fingerprint(), first->Fingerprint());
}

TEST(IdentityTest, RequiresADataDirectory) {
  EXPECT_THAT(CreateIdentity(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("--data")));
}

}  // namespace
}  // namespace openforce::coordinator
