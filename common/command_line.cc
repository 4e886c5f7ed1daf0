// Flag-name normalisation; see command_line.h.
#include "common/command_line.h"

namespace openforce {

std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> out;
  bool flags_done = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && !flags_done) {
      if (arg == "--") {
        flags_done = true;
      } else if (arg.size() > 1 && arg[0] == '-') {
        const size_t name_start = arg.find_first_not_of('-');
        const size_t name_end = std::min(arg.find('='), arg.size());
        for (size_t j = name_start; j < name_end && j != std::string::npos;
             ++j) {
          if (arg[j] == '-') arg[j] = '_';
        }
      }
    }
    out.push_back(std::move(arg));
  }
  return out;
}

ArgvBuffer::ArgvBuffer(std::vector<std::string> args) : args_(std::move(args)) {
  for (std::string& arg : args_) pointers_.push_back(arg.data());
  pointers_.push_back(nullptr);
}

}  // namespace openforce
