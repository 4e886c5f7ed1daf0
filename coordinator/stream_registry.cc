// Open stream bookkeeping; see stream_registry.h.
#include "coordinator/stream_registry.h"

#include <chrono>

#include "grpcpp/server_context.h"

namespace openforce::coordinator {

StreamRegistry::StreamRegistry(StreamLimits limits)
    : limits_(std::move(limits)) {}

int64_t StreamRegistry::Now() const {
  if (limits_.now_ms) return limits_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool StreamRegistry::Add(grpc::CallbackServerContext* context) {
  absl::MutexLock lock(&mu_);
  if (last_activity_.size() >= limits_.max_open_streams) return false;
  last_activity_[context] = Now();
  return true;
}

void StreamRegistry::Touch(grpc::CallbackServerContext* context) {
  absl::MutexLock lock(&mu_);
  auto it = last_activity_.find(context);
  if (it != last_activity_.end()) it->second = Now();
}

void StreamRegistry::Remove(grpc::CallbackServerContext* context) {
  absl::MutexLock lock(&mu_);
  last_activity_.erase(context);
}

size_t StreamRegistry::CancelIdle() {
  absl::MutexLock lock(&mu_);
  const int64_t cutoff = Now() - limits_.idle_timeout_ms;
  size_t cancelled = 0;
  for (auto& [context, last] : last_activity_) {
    if (last >= cutoff) continue;
    // Under mu_, so the call cannot finish and free its context meanwhile
    // (Remove() waits for the lock). The stream ends with CANCELLED.
    context->TryCancel();
    last = Now();  // cancel once, not every sweep
    ++cancelled;
  }
  return cancelled;
}

size_t StreamRegistry::open() const {
  absl::MutexLock lock(&mu_);
  return last_activity_.size();
}

}  // namespace openforce::coordinator
