// Authentication of worker calls after Register: each registration opens a
// session (random id, held in memory only), and every later call carries a
// signature by the worker's registered key over the method, worker id,
// session, a counter and the request's digest (common/call_auth.h). A
// counter is accepted once, so a captured call cannot be replayed; a
// coordinator restart forgets sessions, and workers register again.
#ifndef OPENFORCE_COORDINATOR_WORKER_SESSIONS_H_
#define OPENFORCE_COORDINATOR_WORKER_SESSIONS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/call_auth.h"
#include "common/ed25519.h"

namespace openforce::coordinator {

struct CallCredentials {
  std::string session_id;
  uint64_t counter = 0;
  std::string signature;
};

class WorkerSessions {
 public:
  // A fresh session for `worker_id`, whose registered key is `public_key`
  // (raw Ed25519, already checked by Register), replacing any earlier one;
  // its id.
  [[nodiscard]] absl::StatusOr<std::string> Open(const std::string& worker_id,
                                                 const std::string& public_key);

  // OK when `credentials` prove that the holder of `public_key` (raw
  // Ed25519) made this call now. Unauthenticated with REJECT_UNKNOWN_SESSION
  // when the session is not the worker's current one (register again), and
  // with REJECT_BAD_CALL_AUTH for a missing or wrong signature or a counter
  // already used.
  [[nodiscard]] absl::Status Verify(absl::string_view method,
                                    const std::string& worker_id,
                                    const std::string& public_key,
                                    const CallCredentials& credentials,
                                    absl::string_view request_digest);
  // As Verify, with the key the worker's session here was opened with, so
  // that frequent calls (heartbeats) need not read the worker from the
  // store. False when this coordinator holds no session for `worker_id`:
  // the caller then checks the call the long way, which says why.
  [[nodiscard]] absl::StatusOr<bool> VerifyWithSessionKey(
      absl::string_view method, const std::string& worker_id,
      const CallCredentials& credentials, absl::string_view request_digest);

 private:
  struct Session {
    std::string id;
    ReplayWindow window;
    // Parsed once; EVP keys may be used by several threads at once.
    std::shared_ptr<const Ed25519PublicKey> key;
  };
  // The signature with `key`, then the session and its replay window.
  absl::Status CheckCall(absl::string_view method, const std::string& worker_id,
                         const Ed25519PublicKey& key,
                         const CallCredentials& credentials,
                         absl::string_view request_digest);
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_WORKER_SESSIONS_H_
