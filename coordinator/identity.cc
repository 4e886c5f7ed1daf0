// Coordinator identity files; see identity.h.
#include "coordinator/identity.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace openforce::coordinator {

std::string PrivateKeyPath(const std::string& data_dir) {
  return data_dir + "/coordinator.key";
}

std::string PublicKeyPath(const std::string& data_dir) {
  return data_dir + "/coordinator.pub";
}

absl::StatusOr<Ed25519PublicKey> CreateIdentity(const std::string& data_dir) {
  if (data_dir.empty()) {
    return absl::InvalidArgumentError("no data directory given (--data)");
  }
  RETURN_IF_ERROR(MakeDirectories(data_dir, 0700));
  const std::string key_path = PrivateKeyPath(data_dir);
  struct stat info;
  if (::stat(key_path.c_str(), &info) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        key_path,
        " already exists; refusing to replace the key that signed this "
        "coordinator's adapters"));
  }
  ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::Generate());
  RETURN_IF_ERROR(key.SavePemFile(key_path));
  Ed25519PublicKey public_key = key.PublicKey();
  RETURN_IF_ERROR(public_key.SavePemFile(PublicKeyPath(data_dir)));
  return public_key;
}

absl::StatusOr<Ed25519PrivateKey> LoadIdentity(const std::string& data_dir) {
  return Ed25519PrivateKey::LoadPemFile(PrivateKeyPath(data_dir));
}

}  // namespace openforce::coordinator
