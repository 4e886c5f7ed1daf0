// Worker call authentication; see worker_sessions.h.
#include "coordinator/worker_sessions.h"

#include <openssl/rand.h>

#include "absl/strings/str_cat.h"
#include "common/ed25519.h"
#include "common/secret_token.h"
#include "common/status_macros.h"
#include "proto/openforce.pb.h"
#include "proto/status_convert.h"

namespace openforce::coordinator {

absl::StatusOr<std::string> WorkerSessions::Open(
    const std::string& worker_id, const std::string& public_key) {
  std::string id(kSessionIdBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(id.data()),
                 static_cast<int>(id.size())) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromRaw(public_key);
  if (!key.ok()) return key.status();
  auto shared_key = std::make_shared<const Ed25519PublicKey>(*std::move(key));
  absl::MutexLock lock(&mu_);
  Session& session = sessions_[worker_id];
  session.id = id;
  session.window = ReplayWindow();
  session.key = std::move(shared_key);
  return id;
}

absl::StatusOr<bool> WorkerSessions::VerifyWithSessionKey(
    absl::string_view method, const std::string& worker_id,
    const CallCredentials& credentials, absl::string_view request_digest) {
  std::shared_ptr<const Ed25519PublicKey> key;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(worker_id);
    if (it == sessions_.end() || it->second.key == nullptr) return false;
    key = it->second.key;
  }
  RETURN_IF_ERROR(
      CheckCall(method, worker_id, *key, credentials, request_digest));
  return true;
}

absl::Status WorkerSessions::Verify(absl::string_view method,
                                    const std::string& worker_id,
                                    const std::string& public_key,
                                    const CallCredentials& credentials,
                                    absl::string_view request_digest) {
  absl::StatusOr<Ed25519PublicKey> key = Ed25519PublicKey::FromRaw(public_key);
  if (!key.ok()) return key.status();
  return CheckCall(method, worker_id, *key, credentials, request_digest);
}

absl::Status WorkerSessions::CheckCall(absl::string_view method,
                                       const std::string& worker_id,
                                       const Ed25519PublicKey& key,
                                       const CallCredentials& credentials,
                                       absl::string_view request_digest) {
  if (credentials.session_id.empty() || credentials.signature.empty()) {
    return Rejection(absl::StatusCode::kUnauthenticated,
                     v1::REJECT_BAD_CALL_AUTH,
                     absl::StrCat(method,
                                  " needs a call signature (auth) by the "
                                  "worker's key; the worker id alone is not "
                                  "proof"));
  }
  // The signature is checked before the session table is touched, so
  // unsigned noise cannot advance anyone's counter.
  if (!key.Verify(CallAuthMessage(method, worker_id, credentials.session_id,
                                  credentials.counter, request_digest),
                  credentials.signature)
           .ok()) {
    return Rejection(absl::StatusCode::kUnauthenticated,
                     v1::REJECT_BAD_CALL_AUTH,
                     absl::StrCat(method,
                                  ": the call signature does not verify with "
                                  "the key registered for ",
                                  worker_id));
  }
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(worker_id);
  if (it == sessions_.end() ||
      !TokensEqual(it->second.id, credentials.session_id)) {
    return Rejection(absl::StatusCode::kUnauthenticated,
                     v1::REJECT_UNKNOWN_SESSION,
                     absl::StrCat(method, ": session unknown for ", worker_id,
                                  " (the coordinator restarted or the worker "
                                  "registered again); call Register"));
  }
  if (!it->second.window.Accept(credentials.counter)) {
    return Rejection(
        absl::StatusCode::kUnauthenticated, v1::REJECT_BAD_CALL_AUTH,
        absl::StrCat(method, ": call counter ", credentials.counter,
                     " was already used or is too old (highest ",
                     it->second.window.highest(), "): a replayed call"));
  }
  return absl::OkStatus();
}

}  // namespace openforce::coordinator
