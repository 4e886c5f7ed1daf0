// Model identity and portable file names.
#include "common/model_manifest.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ModelManifestTest, HashIsOrderIndependentAndBindsNamesAndContents) {
  const std::string a = Sha256Hex("a"), b = Sha256Hex("b");
  auto one = ModelContentHash({{"config.json", a}, {"model.safetensors", b}});
  auto two = ModelContentHash({{"model.safetensors", b}, {"config.json", a}});
  ASSERT_OK(one);
  ASSERT_OK(two);
  EXPECT_EQ(*one, *two);
  auto swapped =
      ModelContentHash({{"config.json", b}, {"model.safetensors", a}});
  ASSERT_OK(swapped);
  EXPECT_NE(*one, *swapped);
  auto renamed =
      ModelContentHash({{"config2.json", a}, {"model.safetensors", b}});
  ASSERT_OK(renamed);
  EXPECT_NE(*one, *renamed);
}

TEST(ModelManifestTest, RefusesBadNamesHashesAndDuplicates) {
  const std::string a = Sha256Hex("a");
  EXPECT_THAT(ModelContentHash({}), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("at least")));
  EXPECT_THAT(ModelContentHash({{"../etc/passwd", a}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a plain file name")));
  EXPECT_THAT(ModelContentHash({{"config.json", "xyz"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("xyz")));
  EXPECT_THAT(ModelContentHash({{"config.json", a}, {"config.json", a}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  for (const char* bad : {"", ".", "..", ".hidden", "a/b", "a b", "a\\b"}) {
    EXPECT_FALSE(CheckPortableFileName(bad).ok()) << bad;
  }
  EXPECT_OK(CheckPortableFileName("model-00001-of-00002.safetensors"));
}

TEST(ModelManifestTest, ListsTheFilesThatMakeAModel) {
  testing::TempDir dir;
  for (const char* name :
       {"config.json", "model.safetensors", "tokenizer.model", "README.md",
        "openforce_tokenizer.json", "generation_config.json", "notes.txt"}) {
    ASSERT_OK(WriteFileAtomically(dir.path() + "/" + name, "x"));
  }
  auto files = ListModelFiles(dir.path());
  ASSERT_OK(files);
  EXPECT_EQ(*files,
            (std::vector<std::string>{
                "config.json", "generation_config.json", "model.safetensors",
                "openforce_tokenizer.json", "tokenizer.model"}));
  EXPECT_THAT(ListModelFiles(dir.path() + "/none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("config.json")));
}

TEST(ModelManifestTest, AdapterContentHashCoversBothFilesInOrder) {
  EXPECT_EQ(AdapterContentHash("aa", "bb"), Sha256Hex("aabb"));
  EXPECT_NE(AdapterContentHash("aa", "bb"), AdapterContentHash("bb", "aa"));
}

}  // namespace
}  // namespace openforce
