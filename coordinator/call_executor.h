// A fixed pool of threads for the work of unary calls. The gRPC services use
// the callback API: a call in flight holds a reactor, not a thread, and its
// work (store transactions, the shared fsync of a group commit) runs here,
// on a bounded number of threads with a bounded queue. When the queue is
// full a call is refused with RESOURCE_EXHAUSTED at once instead of growing
// threads or memory without limit.
#ifndef OPENFORCE_COORDINATOR_CALL_EXECUTOR_H_
#define OPENFORCE_COORDINATOR_CALL_EXECUTOR_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace openforce::coordinator {

class CallExecutor {
 public:
  // `threads` run tasks; at most `max_queued` wait for one.
  CallExecutor(int threads, size_t max_queued);
  // Runs what is queued, then joins the threads.
  ~CallExecutor();
  CallExecutor(const CallExecutor&) = delete;
  CallExecutor& operator=(const CallExecutor&) = delete;

  // Queues `task`; false (and `task` is not run) when the queue is full or
  // the executor is stopping.
  [[nodiscard]] bool Submit(std::function<void()> task);
  // Tasks waiting for a thread now.
  size_t queued();

 private:
  void Loop();

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_CALL_EXECUTOR_H_
