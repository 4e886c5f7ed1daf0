// JSON config files applied to Abseil flags; see config_file.h.
#include "common/config_file.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace openforce {
namespace {

// The flag text for one JSON value: strings as they are, numbers and booleans
// in JSON notation, arrays of scalars comma-joined (Abseil's list flag syntax).
absl::StatusOr<std::string> ValueToFlagText(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::string:
      return value.get<std::string>();
    case nlohmann::json::value_t::boolean:
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float:
      return value.dump();
    case nlohmann::json::value_t::array: {
      std::vector<std::string> parts;
      for (const nlohmann::json& element : value) {
        if (element.is_array() || element.is_object() || element.is_null()) {
          return absl::InvalidArgumentError(
              "lists may only hold strings and numbers");
        }
        ASSIGN_OR_RETURN(std::string part, ValueToFlagText(element));
        parts.push_back(std::move(part));
      }
      return absl::StrJoin(parts, ",");
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("a ", value.type_name(), " is not a valid value"));
  }
}

}  // namespace

std::set<std::string> FlagsNamedOnCommandLine(int argc, char** argv) {
  std::set<std::string> named;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    absl::string_view name = arg.substr(0, arg.find('='));
    if (absl::FindCommandLineFlag(name) != nullptr) {
      named.emplace(name);
    } else if (absl::ConsumePrefix(&name, "no") &&
               absl::FindCommandLineFlag(name) != nullptr) {
      named.emplace(name);
    }
  }
  return named;
}

absl::Status ApplyConfigJson(absl::string_view json_text,
                             absl::string_view source,
                             const std::vector<std::string>& allowed_keys,
                             const std::set<std::string>& set_on_command_line) {
  nlohmann::json root = nlohmann::json::parse(
      json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false,
      /*ignore_comments=*/true);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", source, " is not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", source, " must hold a JSON object, not a ",
                     root.type_name()));
  }
  // Validate every key before changing any flag, so a bad file changes nothing.
  std::vector<std::pair<absl::CommandLineFlag*, std::string>> updates;
  for (const auto& [key, value] : root.items()) {
    if (std::find(allowed_keys.begin(), allowed_keys.end(), key) ==
        allowed_keys.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config file ", source, ": unknown key '", key,
          "' (known keys: ", absl::StrJoin(allowed_keys, ", "), ")"));
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(key);
    if (flag == nullptr) {
      return absl::InternalError(
          absl::StrCat("config key '", key, "' has no flag in this binary"));
    }
    absl::StatusOr<std::string> text = ValueToFlagText(value);
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", source, ": key '", key,
                       "': ", text.status().message()));
    }
    if (set_on_command_line.count(key) == 0)
      updates.emplace_back(flag, *std::move(text));
  }
  // Parse into the flags only when all values parse: try each, then restore on
  // failure.
  std::vector<std::pair<absl::CommandLineFlag*, std::string>> previous;
  for (auto& [flag, text] : updates) {
    std::string old_value = flag->CurrentValue();
    std::string error;
    if (!flag->ParseFrom(text, &error)) {
      for (auto& [done_flag, done_value] : previous) {
        std::string ignored;
        done_flag->ParseFrom(done_value, &ignored);
      }
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", source, ": key '", flag->Name(),
                       "': bad value '", text, "': ", error));
    }
    previous.emplace_back(flag, std::move(old_value));
  }
  return absl::OkStatus();
}

absl::Status ApplyConfigFile(const std::string& path,
                             const std::vector<std::string>& allowed_keys,
                             const std::set<std::string>& set_on_command_line) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("config file: ", text.status().message()));
  }
  return ApplyConfigJson(*text, path, allowed_keys, set_on_command_line);
}

}  // namespace openforce
