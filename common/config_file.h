// Config files for the binaries. A config file is a JSON object whose keys are
// the names of the binary's command-line flags, e.g. {"coordinator":
// "host:7443", "headroom": "4GiB", "threads": 2}. Precedence: a flag given on
// the command line wins over the file, which wins over the flag's default. An
// unknown key or a value the flag cannot parse is an error naming the file and
// the key. Flags stay defined only in each main.cc; this works on them through
// Abseil's flag reflection.
#ifndef OPENFORCE_COMMON_CONFIG_FILE_H_
#define OPENFORCE_COMMON_CONFIG_FILE_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace openforce {

// Names of the flags that `argv` sets explicitly (`--name`, `--name=v`, `--name
// v`,
// `--noname` for booleans), resolved against the registered flags. Stops at
// "--".
std::set<std::string> FlagsNamedOnCommandLine(int argc, char** argv);

// Applies `json_text` (the contents of the file at `source`, used in messages)
// to the flags in `allowed_keys`, skipping those in `set_on_command_line`.
[[nodiscard]] absl::Status ApplyConfigJson(
    absl::string_view json_text, absl::string_view source,
    const std::vector<std::string>& allowed_keys,
    const std::set<std::string>& set_on_command_line);

// Reads `path` and applies it as ApplyConfigJson() does.
[[nodiscard]] absl::Status ApplyConfigFile(
    const std::string& path, const std::vector<std::string>& allowed_keys,
    const std::set<std::string>& set_on_command_line);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_CONFIG_FILE_H_
