// Untrusted JSON: bounded depth, no exceptions, short quotes in messages.
#include "common/untrusted_json.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

TEST(UntrustedJsonTest, ParsesOrdinaryDocuments) {
  auto json = ParseUntrustedJson(R"({"a": [1, {"b": "[[[["}]})", "x.json");
  ASSERT_OK(json);
  EXPECT_EQ((*json)["a"][1]["b"], "[[[[");  // brackets in strings do not count
}

TEST(UntrustedJsonTest, RefusesDeepNestingWithoutRecursing) {
  const std::string deep =
      std::string(400'000, '[') + std::string(400'000, ']');
  EXPECT_THAT(ParseUntrustedJson(deep, "config.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("config.json: JSON nests deeper than 64")));
  EXPECT_OK(ParseUntrustedJson(std::string(64, '[') + std::string(64, ']'),
                               "ok.json"));
  EXPECT_THAT(ParseUntrustedJson("{\"a\": tru", "cut.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cut.json: not valid JSON")));
}

TEST(UntrustedJsonTest, PreviewsAreShort) {
  nlohmann::json big = std::string(10'000, 'x');
  const std::string preview = JsonPreview(big, 64);
  EXPECT_EQ(preview.size(), 67u);
  EXPECT_EQ(preview.substr(64), "...");
  EXPECT_EQ(JsonPreview(false), "false");
}

}  // namespace
}  // namespace openforce
