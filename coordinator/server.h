// The running coordinator: a gRPC server (WorkerService, AdminService, the
// standard health service and server reflection) with deliberate message size
// limits, plus the background ticker that expires leases and closes rounds.
#ifndef OPENFORCE_COORDINATOR_SERVER_H_
#define OPENFORCE_COORDINATOR_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "coordinator/call_executor.h"
#include "coordinator/coordinator.h"
#include "coordinator/metrics_exporter.h"
#include "coordinator/stream_registry.h"
#include "proto/channel.h"

namespace grpc {
class Server;
}

namespace openforce::coordinator {

class WorkerServiceImpl;
class AdminServiceImpl;

struct ServerOptions {
  std::string listen_address = "127.0.0.1:7443";  // port 0 picks a free port
  TransportOptions transport;
  std::string admin_token;
  uint32_t tick_interval_ms = 250;
  // Streaming calls (uploads, fetches) open at once, and how long one may
  // make no progress before it is cancelled.
  StreamLimits streams;
  // Threads that run unary calls' work (they mostly wait on a shared fsync)
  // and how many calls may wait for one; beyond that a call is refused with
  // RESOURCE_EXHAUSTED instead of queueing without limit.
  int call_threads = 32;
  size_t max_queued_calls = 4096;
  // Prometheus metrics over HTTP on this host:port (port 0 picks one);
  // empty: not served (they are still counted).
  std::string metrics_listen;
};

class CoordinatorServer {
 public:
  // Binds and starts serving; InvalidArgument for an unsafe transport,
  // Unavailable when the address cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      std::unique_ptr<Coordinator> coordinator, const ServerOptions& options);
  ~CoordinatorServer();

  // host:port actually bound.
  const std::string& address() const { return address_; }
  // host:port of the metrics endpoint; empty when not served.
  std::string metrics_address() const;
  // Stops accepting calls, lets running ones finish, stops the ticker.
  void Shutdown();

 private:
  CoordinatorServer() = default;
  void TickLoop(uint32_t interval_ms);

  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<StreamRegistry> streams_;
  // Outlives the services and the server, which finish calls on it.
  std::unique_ptr<CallExecutor> executor_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<grpc::Server> server_;
  // Scrapes read the coordinator; stopped before it goes.
  std::unique_ptr<MetricsExporter> metrics_exporter_;
  std::string address_;
  absl::Notification stop_;
  std::thread ticker_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_SERVER_H_
