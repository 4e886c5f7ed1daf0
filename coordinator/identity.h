// The coordinator's Ed25519 identity under its data directory: the private key
// that signs published adapters (coordinator.key, mode 0600) and its public
// half (coordinator.pub), which workers and people pulling adapters pin by
// fingerprint.
#ifndef OPENFORCE_COORDINATOR_IDENTITY_H_
#define OPENFORCE_COORDINATOR_IDENTITY_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/ed25519.h"

namespace openforce::coordinator {

std::string PrivateKeyPath(const std::string& data_dir);
std::string PublicKeyPath(const std::string& data_dir);

// Creates the data directory if needed and a new identity in it. AlreadyExists
// when a private key is already there: replacing it would orphan every adapter
// signed so far.
[[nodiscard]] absl::StatusOr<Ed25519PublicKey> CreateIdentity(
    const std::string& data_dir);

// Loads the identity created by CreateIdentity().
[[nodiscard]] absl::StatusOr<Ed25519PrivateKey> LoadIdentity(
    const std::string& data_dir);

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_IDENTITY_H_
