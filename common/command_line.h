// Command-line spelling: people type `--max-new-tokens`, Abseil flags are named
// `max_new_tokens`. NormalizeFlagNames rewrites dashes in flag names (not in
// values) to underscores before Abseil parses the arguments, so both spellings
// work.
#ifndef OPENFORCE_COMMON_COMMAND_LINE_H_
#define OPENFORCE_COMMON_COMMAND_LINE_H_

#include <string>
#include <vector>

namespace openforce {

// A copy of argv with "--a-b=c" as "--a_b=c" and "--a-b" as "--a_b". Arguments
// after "--" and values are left alone.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

// Owns argument strings and exposes them as a mutable argv for Abseil.
class ArgvBuffer {
 public:
  explicit ArgvBuffer(std::vector<std::string> args);
  int argc() const { return static_cast<int>(pointers_.size()) - 1; }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> pointers_;
};

}  // namespace openforce

#endif  // OPENFORCE_COMMON_COMMAND_LINE_H_
