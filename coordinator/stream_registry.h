// The coordinator's open streaming calls (delta uploads and blob fetches),
// which run on gRPC's callback API and so hold no thread while they wait. The
// registry bounds how many may be open at once and cancels the ones that made
// no progress for too long, so stalled or abandoned streams cannot pile up.
#ifndef OPENFORCE_COORDINATOR_STREAM_REGISTRY_H_
#define OPENFORCE_COORDINATOR_STREAM_REGISTRY_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class CallbackServerContext;
}  // namespace grpc

namespace openforce::coordinator {

struct StreamLimits {
  size_t max_open_streams = 1024;
  int64_t idle_timeout_ms = 60'000;
  std::function<int64_t()> now_ms;  // defaults to a monotonic clock
};

class StreamRegistry {
 public:
  explicit StreamRegistry(StreamLimits limits);

  // Registers a stream; false when the cap is reached (the caller refuses it).
  [[nodiscard]] bool Add(grpc::CallbackServerContext* context);
  // The stream made progress (a chunk arrived or was sent).
  void Touch(grpc::CallbackServerContext* context);
  // The stream is done; after this the registry never touches `context`.
  void Remove(grpc::CallbackServerContext* context);
  // Cancels streams idle longer than the timeout; how many.
  size_t CancelIdle();
  size_t open() const;

 private:
  int64_t Now() const;

  const StreamLimits limits_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<grpc::CallbackServerContext*, int64_t> last_activity_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_STREAM_REGISTRY_H_
