// Transport security policy shared by every openforce client and the server:
// TLS whenever a certificate is configured; plaintext only to or on a
// loopback address, or when the operator says --insecure out loud. The gRPC
// message size limits are set here too, deliberately, on both sides.
#ifndef OPENFORCE_PROTO_CHANNEL_H_
#define OPENFORCE_PROTO_CHANNEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace openforce {

// Largest data field in one upload or fetch message; messages carry one chunk
// plus a small header, so the gRPC limit is this plus kMessageOverheadBytes.
inline constexpr uint32_t kMaxChunkBytes = 1u << 20;
inline constexpr uint32_t kMessageOverheadBytes = 64u << 10;
inline constexpr int kMaxMessageBytes =
    static_cast<int>(kMaxChunkBytes + kMessageOverheadBytes);

// True for 127.0.0.0/8, ::1 and "localhost", with or without a port.
bool IsLoopbackAddress(absl::string_view address);

struct TransportOptions {
  std::string tls_cert_file;  // server: PEM certificate chain
  std::string tls_key_file;   // server: PEM private key
  std::string tls_ca_file;    // client: PEM roots that sign the server's cert
  bool insecure = false;      // allow plaintext off loopback
};

// Server credentials for `listen_address`: TLS with the given certificate and
// key, or plaintext when both are empty and the address is loopback (or
// `insecure`). InvalidArgument names what is missing or unsafe.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>>
MakeServerCredentials(absl::string_view listen_address,
                      const TransportOptions& options);

// A channel to `target` with TLS when a CA file is given, plaintext to
// loopback (or with `insecure`), and the message size limits above.
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    absl::string_view target, const TransportOptions& options);

}  // namespace openforce

#endif  // OPENFORCE_PROTO_CHANNEL_H_
