// A gRPC server interceptor that counts every RPC (unary and streaming, ours
// and the health check) by method and status code and times it from arrival
// to status. Method names come from a fixed list of the services the server
// registers, so a client naming made-up methods cannot grow the label set.
#ifndef OPENFORCE_COORDINATOR_RPC_METRICS_H_
#define OPENFORCE_COORDINATOR_RPC_METRICS_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "coordinator/metrics.h"
#include "grpcpp/support/server_interceptor.h"

namespace openforce::coordinator {

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server.
  explicit RpcMetricsInterceptorFactory(CoordinatorMetrics* metrics);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  CoordinatorMetrics* const metrics_;
  // "/package.Service/Method" of every method the coordinator serves.
  const absl::flat_hash_set<std::string> known_methods_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_RPC_METRICS_H_
