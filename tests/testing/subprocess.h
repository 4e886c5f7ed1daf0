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

// A program running in the background, its stdout and stderr going to a log
// file; killed with SIGKILL when the handle is destroyed while it still runs.
class ChildProcess {
 public:
  // Starts `argv` (argv[0] is the program path); throws when it cannot.
  ChildProcess(const std::vector<std::string>& argv,
               const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  int pid() const { return pid_; }
  void Signal(int signal) const;
  // Waits for the exit; the exit code, or 128 + signal number. -1 on timeout.
  int Wait(double timeout_seconds = 60);
  bool running();
  const std::string& log_path() const { return log_path_; }
  std::string Log() const;

 private:
  int pid_ = -1;
  int exit_code_ = -1;
  bool exited_ = false;
  std::string log_path_;
};

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_TESTING_SUBPROCESS_H_
