// Signing and digesting worker calls (CallAuth in openforce.proto): the
// worker side fills a request's `auth`, the coordinator side recomputes the
// digest it must cover. Both use the request serialized deterministically
// with `auth` cleared, so the signature covers every other field.
#ifndef OPENFORCE_PROTO_CALL_SIGNING_H_
#define OPENFORCE_PROTO_CALL_SIGNING_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/call_auth.h"
#include "common/ed25519.h"
#include "google/protobuf/message_lite.h"
#include "proto/openforce.pb.h"

namespace openforce {

// Method names as they are signed; one per authenticated WorkerService call.
inline constexpr absl::string_view kHeartbeatMethod = "Heartbeat";
inline constexpr absl::string_view kLeaseMethod = "LeaseWorkUnit";
inline constexpr absl::string_view kReleaseMethod = "ReleaseWorkUnit";
inline constexpr absl::string_view kUploadOffsetMethod = "GetUploadOffset";
inline constexpr absl::string_view kUploadDeltaMethod = "UploadDelta";
inline constexpr absl::string_view kFetchBlobMethod = "FetchBlob";
inline constexpr absl::string_view kSubmitValidationMethod = "SubmitValidation";

// Raw SHA-256 of `message`'s deterministic serialization.
std::string DeterministicDigest(const google::protobuf::MessageLite& message);

// The digest a CallAuth of `request` covers: `request` without its auth.
template <typename Request>
std::string CallDigest(const Request& request) {
  Request copy = request;
  copy.clear_auth();
  return DeterministicDigest(copy);
}

// Sets `request->auth` for the worker `worker_id` in `session_id` with
// `counter`.
template <typename Request>
absl::Status SignCall(const Ed25519PrivateKey& key, absl::string_view method,
                      const std::string& worker_id,
                      const std::string& session_id, uint64_t counter,
                      Request* request) {
  request->clear_auth();
  absl::StatusOr<std::string> signature = key.Sign(CallAuthMessage(
      method, worker_id, session_id, counter, CallDigest(*request)));
  if (!signature.ok()) return signature.status();
  v1::CallAuth* auth = request->mutable_auth();
  auth->set_session_id(session_id);
  auth->set_counter(counter);
  auth->set_signature(*std::move(signature));
  return absl::OkStatus();
}

}  // namespace openforce

#endif  // OPENFORCE_PROTO_CALL_SIGNING_H_
