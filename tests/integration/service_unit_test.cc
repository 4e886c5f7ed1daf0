// scripts/openforce-worker.service: systemd accepts it, and it runs the
// worker as an unprivileged user at the lowest CPU and IO priority, stopped
// with SIGTERM so the worker checkpoints and gives its lease back.
#include <fstream>
#include <sstream>

#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;

std::string Unit() {
  auto text = ReadFileToString(std::string(OPENFORCE_SOURCE_DIR) +
                               "/scripts/openforce-worker.service");
  EXPECT_OK(text);
  return text.ok() ? *text : "";
}

TEST(ServiceUnitTest, RunsUnprivilegedAtIdlePriorityAndStopsWithSigterm) {
  const std::string unit = Unit();
  for (const char* line :
       {"User=openforce", "Nice=19", "CPUSchedulingPolicy=idle",
        "IOSchedulingClass=idle", "KillSignal=SIGTERM", "NoNewPrivileges=yes",
        "StateDirectoryMode=0700",
        "ExecStart=/usr/local/bin/openforce-worker run --config "
        "/etc/openforce/worker.json --data /var/lib/openforce-worker"}) {
    EXPECT_THAT(unit, HasSubstr(std::string("\n") + line + "\n")) << line;
  }
}

TEST(ServiceUnitTest, SystemdVerifiesIt) {
  TempDir dir;
  // Point ExecStart at the built binary, which verify checks exists.
  const std::string unit = absl::StrReplaceAll(
      Unit(), {{"/usr/local/bin/openforce-worker", OPENFORCE_WORKER_PATH}});
  const std::string path = dir.path() + "/openforce-worker.service";
  ASSERT_OK(WriteFileAtomically(path, unit));
  ProcessResult verify =
      RunProcess({"/usr/bin/systemd-analyze", "verify", path});
  EXPECT_EQ(verify.exit_code, 0) << verify.stderr_text;
  EXPECT_EQ(verify.stderr_text, "");
}

}  // namespace
}  // namespace openforce::testing
