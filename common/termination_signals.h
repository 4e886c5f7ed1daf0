// SIGINT and SIGTERM as events a thread waits for, not asynchronous handlers:
// blocked in the calling thread before any other thread starts (threads
// inherit the mask, so none of libtorch's, OpenMP's or gRPC's threads ever
// receives them), then collected with WaitForTerminationSignal().
#ifndef OPENFORCE_COMMON_TERMINATION_SIGNALS_H_
#define OPENFORCE_COMMON_TERMINATION_SIGNALS_H_

#include <pthread.h>
#include <signal.h>

namespace openforce {

// Blocks SIGINT and SIGTERM in the calling thread; returns the set.
sigset_t BlockTerminationSignals();

// Waits for one of `signals` (as returned above); the signal number.
int WaitForTerminationSignal(const sigset_t& signals);

}  // namespace openforce

#endif  // OPENFORCE_COMMON_TERMINATION_SIGNALS_H_
