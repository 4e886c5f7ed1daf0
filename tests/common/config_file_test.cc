// Config files applied to real Abseil flags defined in this test binary.
#include "common/config_file.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/byte_size.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

ABSL_FLAG(std::string, coordinator, "localhost:7443", "test flag");
ABSL_FLAG(int, threads, 0, "test flag");
ABSL_FLAG(bool, verbose, false, "test flag");
ABSL_FLAG(openforce::ByteSize, headroom,
          openforce::ByteSize{4 * openforce::kGiB}, "test flag");
ABSL_FLAG(std::vector<std::string>, targets, {}, "test flag");

namespace openforce {
namespace {

using ::openforce::testing::StatusIs;
using ::testing::HasSubstr;

const std::vector<std::string> kKeys = {"coordinator", "threads", "verbose",
                                        "headroom", "targets"};

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_coordinator, "localhost:7443");
    absl::SetFlag(&FLAGS_threads, 0);
    absl::SetFlag(&FLAGS_verbose, false);
    absl::SetFlag(&FLAGS_headroom, ByteSize{4 * kGiB});
    absl::SetFlag(&FLAGS_targets, std::vector<std::string>{});
  }
  testing::TempDir dir_;
};

TEST_F(ConfigFileTest, AppliesEveryKindOfValue) {
  const std::string path = dir_.WriteFile("worker.json", R"({
    // comments are allowed
    "coordinator": "coord.example.org:7443",
    "threads": 6,
    "verbose": true,
    "headroom": "8GiB",
    "targets": ["q_proj", "v_proj"]
  })");
  ASSERT_OK(ApplyConfigFile(path, kKeys, {}));
  EXPECT_EQ(absl::GetFlag(FLAGS_coordinator), "coord.example.org:7443");
  EXPECT_EQ(absl::GetFlag(FLAGS_threads), 6);
  EXPECT_TRUE(absl::GetFlag(FLAGS_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_headroom).bytes, 8 * kGiB);
  EXPECT_EQ(absl::GetFlag(FLAGS_targets),
            (std::vector<std::string>{"q_proj", "v_proj"}));
}

TEST_F(ConfigFileTest, CommandLineWinsOverTheFile) {
  std::vector<std::string> storage = {
      "openforce-worker", "probe", "--threads=3",
      "--noverbose",      "--",    "--coordinator=ignored"};
  std::vector<char*> argv;
  for (std::string& arg : storage) argv.push_back(arg.data());
  const std::set<std::string> named =
      FlagsNamedOnCommandLine(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(named, (std::set<std::string>{"threads", "verbose"}));

  absl::SetFlag(&FLAGS_threads, 3);  // as the command line set it
  ASSERT_OK(ApplyConfigJson(
      R"({"threads": 6, "verbose": true, "coordinator": "a:1"})", "inline",
      kKeys, named));
  EXPECT_EQ(absl::GetFlag(FLAGS_threads), 3);
  EXPECT_FALSE(absl::GetFlag(FLAGS_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_coordinator), "a:1");
}

TEST_F(ConfigFileTest, UnknownKeyIsAnErrorNamingIt) {
  const std::string path = dir_.WriteFile("typo.json", R"({"threds": 2})");
  EXPECT_THAT(ApplyConfigFile(path, kKeys, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr(path),
                                        HasSubstr("unknown key 'threds'"),
                                        HasSubstr("threads"))));
}

TEST_F(ConfigFileTest, KeyThatIsAFlagButNotAConfigKeyIsUnknown) {
  EXPECT_THAT(
      ApplyConfigJson(R"({"verbose": true})", "f.json", {"threads"}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unknown key 'verbose'")));
}

TEST_F(ConfigFileTest, BadValueIsAnErrorAndChangesNothing) {
  EXPECT_THAT(
      ApplyConfigJson(R"({"coordinator": "changed:1", "headroom": "lots"})",
                      "w.json", kKeys, {}),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          ::testing::AllOf(HasSubstr("w.json"), HasSubstr("key 'headroom'"),
                           HasSubstr("'lots'"))));
  EXPECT_EQ(absl::GetFlag(FLAGS_coordinator), "localhost:7443");

  EXPECT_THAT(
      ApplyConfigJson(R"({"threads": "many"})", "w.json", kKeys, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'threads'")));
  EXPECT_THAT(
      ApplyConfigJson(R"({"threads": 2.5})", "w.json", kKeys, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key 'threads'")));
  EXPECT_THAT(
      ApplyConfigJson(R"({"coordinator": {"host": "x"}})", "w.json", kKeys, {}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("key 'coordinator': a object is not a valid value")));
  EXPECT_EQ(absl::GetFlag(FLAGS_threads), 0);
}

TEST_F(ConfigFileTest, MalformedFilesAreRejected) {
  EXPECT_THAT(ApplyConfigJson("{not json", "broken.json", kKeys, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("broken.json is not valid JSON")));
  EXPECT_THAT(
      ApplyConfigJson("[1, 2]", "list.json", kKeys, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON object")));
  EXPECT_THAT(ApplyConfigFile(dir_.Join("absent.json"), kKeys, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("absent.json")));
}

}  // namespace
}  // namespace openforce
