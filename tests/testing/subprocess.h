// Runs a program to completion and captures its exit code, stdout and stderr,
// for integration tests that drive the real binaries.
#ifndef OPENFORCE_TESTS_TESTING_SUBPROCESS_H_
#define OPENFORCE_TESTS_TESTING_SUBPROCESS_H_

#include <string>
#include <vector>

namespace openforce::testing {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal number when killed by a signal
  std::string stdout_text;
  std::string stderr_text;
};

// Runs `argv` (argv[0] is the program path) with this process's environment
// plus `extra_env` ("NAME=value" entries) and stdin from /dev/null.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::vector<std::string>& extra_env = {});

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_SUBPROCESS_H_
