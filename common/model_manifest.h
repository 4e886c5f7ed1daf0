// Names for the content the federation moves around: the hash that
// identifies a base model (over its files' names and hashes, so the same
// checkpoint has the same identity wherever it is uploaded from), the content
// hash of a published adapter (over its two files), and which file names a
// model directory may carry, so that no name received over the network can
// escape the directory it is written into.
#ifndef OPENFORCE_COMMON_MODEL_MANIFEST_H_
#define OPENFORCE_COMMON_MODEL_MANIFEST_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openforce {

struct ManifestFile {
  std::string name;    // file name inside the model directory
  std::string sha256;  // hex SHA-256 of its bytes
};

// OK for a plain file name: 1-255 characters of [A-Za-z0-9._-], not "." or
// "..", no leading dot. InvalidArgument naming it otherwise.
[[nodiscard]] absl::Status CheckPortableFileName(absl::string_view name);

// SHA-256 over "openforce/model/v1\n" then "<name>\t<sha256>\n" for each file
// in name order. InvalidArgument for an empty list, a bad name or hash, or a
// duplicate name.
[[nodiscard]] absl::StatusOr<std::string> ModelContentHash(
    std::vector<ManifestFile> files);

// The files of a model directory that belong to the model: config.json,
// *.safetensors (+ index), tokenizer, chat template and generation files.
// Sorted by name. NotFound when there is no config.json.
[[nodiscard]] absl::StatusOr<std::vector<std::string>> ListModelFiles(
    const std::string& dir);

// ModelContentHash() of the files ListModelFiles() finds in `dir`: the
// identity the coordinator gives a model uploaded from there.
[[nodiscard]] absl::StatusOr<std::string> ModelDirectoryHash(
    const std::string& dir);

// SHA-256 of adapter_model_sha256 || adapter_config_sha256 (hex strings), the
// content hash a published adapter's signature covers.
std::string AdapterContentHash(absl::string_view adapter_model_sha256,
                               absl::string_view adapter_config_sha256);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_MODEL_MANIFEST_H_
