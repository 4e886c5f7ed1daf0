// Model and adapter identities; see model_manifest.h.
#include "common/model_manifest.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace openforce {

absl::Status CheckPortableFileName(absl::string_view name) {
  const bool valid_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
  if (name.empty() || name.size() > 255 || !valid_chars || name[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat(
        "file name '", name,
        "' is not a plain file name (1-255 of [A-Za-z0-9._-], no leading "
        "dot)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModelContentHash(std::vector<ManifestFile> files) {
  if (files.empty())
    return absl::InvalidArgumentError("a model needs at least one file");
  std::sort(files.begin(), files.end(),
            [](const ManifestFile& a, const ManifestFile& b) {
              return a.name < b.name;
            });
  Sha256 hasher;
  hasher.Update("openforce/model/v1\n");
  for (size_t i = 0; i < files.size(); ++i) {
    if (absl::Status name = CheckPortableFileName(files[i].name); !name.ok())
      return name;
    if (!IsSha256Hex(files[i].sha256)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model file '", files[i].name, "' has hash '",
                       files[i].sha256, "', not 64 lowercase hex digits"));
    }
    if (i > 0 && files[i].name == files[i - 1].name) {
      return absl::InvalidArgumentError(
          absl::StrCat("model file '", files[i].name, "' is listed twice"));
    }
    hasher.Update(absl::StrCat(files[i].name, "\t", files[i].sha256, "\n"));
  }
  return DigestToHex(hasher.Finish());
}

absl::StatusOr<std::vector<std::string>> ListModelFiles(
    const std::string& dir) {
  std::error_code error;
  if (!std::filesystem::exists(dir + "/config.json", error)) {
    return absl::NotFoundError(
        absl::StrCat(dir, " is not a model directory: it has no config.json"));
  }
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    const bool wanted =
        name == "config.json" || name == "generation_config.json" ||
        absl::EndsWith(name, ".safetensors") ||
        name == "model.safetensors.index.json" ||
        absl::StartsWith(name, "tokenizer") || name == "chat_template.jinja" ||
        name == "special_tokens_map.json" || name == "openforce_tokenizer.json";
    if (wanted && CheckPortableFileName(name).ok()) names.push_back(name);
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", error.message()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<std::string> ModelDirectoryHash(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = ListModelFiles(dir);
  if (!names.ok()) return names.status();
  std::vector<ManifestFile> files;
  for (const std::string& name : *names) {
    absl::StatusOr<std::string> sha = Sha256FileHex(dir + "/" + name);
    if (!sha.ok()) return sha.status();
    files.push_back({name, *sha});
  }
  return ModelContentHash(std::move(files));
}

std::string AdapterContentHash(absl::string_view adapter_model_sha256,
                               absl::string_view adapter_config_sha256) {
  return Sha256Hex(absl::StrCat(adapter_model_sha256, adapter_config_sha256));
}

}  // namespace openforce
