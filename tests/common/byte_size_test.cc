// Byte sizes as people write them in flags and config files.
#include "common/byte_size.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ByteSizeTest, ParsesBinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseByteSize("4GiB"), 4 * kGiB);
  EXPECT_EQ(*ParseByteSize("4 gib"), 4 * kGiB);
  EXPECT_EQ(*ParseByteSize("4G"), 4 * kGiB);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512 * kMiB);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 3 * kGiB / 2);
  EXPECT_EQ(*ParseByteSize("8GB"), 8000000000u);
  EXPECT_EQ(*ParseByteSize("1048576"), kMiB);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
}

TEST(ByteSizeTest, RejectsWhatIsNotASize) {
  EXPECT_THAT(ParseByteSize("lots"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a byte size")));
  EXPECT_THAT(
      ParseByteSize("4 parsecs"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown unit")));
  EXPECT_THAT(ParseByteSize("-4GiB"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a byte size")));
  EXPECT_THAT(
      ParseByteSize("99999999999TiB"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
}

TEST(ByteSizeTest, FormatsForPeople) {
  EXPECT_EQ(FormatBytes(17), "17 B");
  EXPECT_EQ(FormatBytes(512 * kMiB), "512.0 MiB");
  EXPECT_EQ(FormatBytes(4 * kGiB + kGiB / 2), "4.5 GiB");
}

}  // namespace
}  // namespace openforce
