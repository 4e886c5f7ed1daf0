// Naming and sizing the base-weight formats: what job specs, the memory
// estimator and the command lines share.
#include "common/weight_format.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(WeightFormatTest, ParsesNamesAndAliases) {
  for (WeightFormat format : {WeightFormat::kNone, WeightFormat::kQ8,
                              WeightFormat::kQ4, WeightFormat::kNf4}) {
    EXPECT_EQ(ParseWeightFormat(WeightFormatName(format)).value(), format);
  }
  EXPECT_EQ(ParseWeightFormat("NF4").value(), WeightFormat::kNf4);
  EXPECT_EQ(ParseWeightFormat("q8_0").value(), WeightFormat::kQ8);
  EXPECT_EQ(ParseWeightFormat("").value(), WeightFormat::kNone);
  EXPECT_EQ(ParseWeightFormat("bf16").value(), WeightFormat::kNone);
  EXPECT_THAT(ParseWeightFormat("int3"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'int3' is not one of none, q8, q4, nf4")));
}

TEST(WeightFormatTest, SizesCountCodesScalesAndPadding) {
  // 4096 x 4096: q8 8.5 bits, q4 4.5 bits, nf4 4 + 8/64 + 32/16384 bits per
  // weight (plus the 4-byte mean).
  const int64_t n = 4096;
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kNone, n, n, 2), n * n * 2);
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kQ8, n, n, 2), n * n / 32 * 34);
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kQ4, n, n, 2), n * n / 32 * 18);
  const int64_t blocks = n * n / 64;
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kNf4, n, n, 2),
            blocks * 33 + blocks / 256 * 4 + 4);
  // A 45-column row pads to two blocks of 32 (one of 64 for nf4).
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kQ8, 3, 45, 2), 3 * 2 * 34);
  EXPECT_EQ(QuantizedMatrixBytes(WeightFormat::kNf4, 3, 45, 2), 3 * 33 + 4 + 4);
}

}  // namespace
}  // namespace openforce
