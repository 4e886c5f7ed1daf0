// gRPC server assembly and the round ticker; see server.h.
#include "coordinator/server.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "coordinator/rpc_metrics.h"
#include "coordinator/service.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace openforce::coordinator {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    std::unique_ptr<Coordinator> coordinator, const ServerOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(options.listen_address, options.transport);
  if (!credentials.ok()) return credentials.status();
  if (options.admin_token.empty())
    return absl::InvalidArgumentError("an admin token is required");
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  server->coordinator_ = std::move(coordinator);
  server->streams_ = std::make_unique<StreamRegistry>(options.streams);
  server->executor_ = std::make_unique<CallExecutor>(options.call_threads,
                                                     options.max_queued_calls);
  server->worker_service_ = std::make_unique<WorkerServiceImpl>(
      server->coordinator_.get(), server->streams_.get(),
      server->executor_.get());
  server->admin_service_ = std::make_unique<AdminServiceImpl>(
      server->coordinator_.get(), options.admin_token, server->streams_.get(),
      server->executor_.get());

  if (!options.metrics_listen.empty()) {
    Coordinator* const source = server->coordinator_.get();
    source->metrics().SetSnapshotSource(
        [source] { return source->CollectMetricsSnapshot(); });
    ASSIGN_OR_RETURN(
        server->metrics_exporter_,
        MetricsExporter::Start(options.metrics_listen, source->metrics()));
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, *credentials, &port);
  builder.RegisterService(server->worker_service_.get());
  builder.RegisterService(server->admin_service_.get());
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<RpcMetricsInterceptorFactory>(
      &server->coordinator_->metrics()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // One chunk plus its header per message; anything bigger is refused by
  // gRPC before it reaches a handler.
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // The services are callback-based; what remains synchronous (server
  // reflection) runs on a small bounded pool.
  grpc::ResourceQuota quota("openforce-coordinator");
  quota.SetMaxThreads(8);
  builder.SetResourceQuota(quota);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address));
  }
  const std::string& listen = options.listen_address;
  const size_t colon = listen.rfind(':');
  server->address_ = absl::StrCat(listen.substr(0, colon), ":", port);
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  server->ticker_ = std::thread(&CoordinatorServer::TickLoop, server.get(),
                                options.tick_interval_ms);
  return server;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

std::string CoordinatorServer::metrics_address() const {
  return metrics_exporter_ == nullptr ? "" : metrics_exporter_->address();
}

void CoordinatorServer::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (ticker_.joinable()) ticker_.join();
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(5));
    server_.reset();
  }
  metrics_exporter_.reset();
}

void CoordinatorServer::TickLoop(uint32_t interval_ms) {
  std::string last_error;
  while (
      !stop_.WaitForNotificationWithTimeout(absl::Milliseconds(interval_ms))) {
    absl::Status ticked = coordinator_->Tick();
    const size_t cancelled = streams_->CancelIdle();
    if (cancelled > 0) {
      std::cerr << "openforce-coordinator: cancelled " << cancelled
                << " stalled stream(s)\n";
    }
    // Report each distinct problem once instead of four times a second.
    const std::string error = ticked.ok() ? "" : ticked.ToString();
    if (!error.empty() && error != last_error)
      std::cerr << "openforce-coordinator: " << error << "\n";
    last_error = error;
  }
}

}  // namespace openforce::coordinator
