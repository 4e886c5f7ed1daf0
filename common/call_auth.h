// What a worker signs to prove that a call comes from the holder of its
// registered key, and the replay window the coordinator keeps per session.
// The signed bytes bind the method, the worker, the session, a counter that
// is accepted once, and the digest of the request itself, so a captured call
// can be neither replayed nor turned into another call.
#ifndef OPENFORCE_COMMON_CALL_AUTH_H_
#define OPENFORCE_COMMON_CALL_AUTH_H_

#include <bitset>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace openforce {

// Session ids are this many random bytes.
inline constexpr size_t kSessionIdBytes = 16;

// "openforce/call/v1\0" || method || "\0" || worker_id || "\0" || session_id
// || counter (8 bytes big-endian) || request_digest (32 raw bytes).
std::string CallAuthMessage(absl::string_view method,
                            absl::string_view worker_id,
                            absl::string_view session_id, uint64_t counter,
                            absl::string_view request_digest);

// Accepts each counter of a session at most once. Counters may arrive out of
// order (a worker's heartbeat and lease threads call concurrently) as long as
// they are within kWindow of the highest seen; older ones are refused, so the
// memory per session is fixed.
class ReplayWindow {
 public:
  static constexpr uint64_t kWindow = 1024;

  // True (and remembered) when `counter` is new; false for 0, a counter seen
  // before, or one older than the window.
  bool Accept(uint64_t counter);
  uint64_t highest() const { return highest_; }

 private:
  uint64_t highest_ = 0;
  std::bitset<kWindow>
      seen_;  // bit c % kWindow for c in (highest-kWindow, highest]
};

}  // namespace openforce

#endif  // OPENFORCE_COMMON_CALL_AUTH_H_
