// Transport policy; see channel.h.
#include "proto/channel.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace openforce {

bool IsLoopbackAddress(absl::string_view address) {
  absl::ConsumePrefix(&address, "ipv4:");
  absl::ConsumePrefix(&address, "ipv6:");
  absl::ConsumePrefix(&address, "dns:");
  std::string host(address);
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) return false;
    host = std::string(address.substr(1, close - 1));
  } else if (const size_t colon = address.rfind(':');
             colon != absl::string_view::npos && address.find(':') == colon) {
    host = std::string(address.substr(0, colon));
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    absl::string_view listen_address, const TransportOptions& options) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate (--tls-cert) and its key (--tls-key)");
  }
  if (options.tls_cert_file.empty()) {
    if (!IsLoopbackAddress(listen_address) && !options.insecure) {
      return absl::InvalidArgumentError(absl::StrCat(
          "refusing to serve plaintext on ", listen_address,
          ", which is not loopback: give --tls-cert and --tls-key, or "
          "--insecure to accept that anyone on the network can read and "
          "alter the traffic"));
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  auto key = ReadFileToString(options.tls_key_file);
  if (!key.ok()) return key.status();
  auto cert = ReadFileToString(options.tls_cert_file);
  if (!cert.ok()) return cert.status();
  pair.private_key = *key;
  pair.cert_chain = *cert;
  ssl.pem_key_cert_pairs.push_back(pair);
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(
    absl::string_view target, const TransportOptions& options) {
  if (target.empty())
    return absl::InvalidArgumentError("no coordinator address given");
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (!options.tls_ca_file.empty()) {
    auto roots = ReadFileToString(options.tls_ca_file);
    if (!roots.ok()) return roots.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *roots;
    credentials = grpc::SslCredentials(ssl);
  } else if (IsLoopbackAddress(target) || options.insecure) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "refusing a plaintext connection to ", target,
        ", which is not loopback: give --tls-ca with the coordinator's CA "
        "certificate, or --insecure"));
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxMessageBytes);
  arguments.SetMaxSendMessageSize(kMaxMessageBytes);
  return grpc::CreateCustomChannel(std::string(target), credentials, arguments);
}

}  // namespace openforce
