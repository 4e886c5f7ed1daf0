// RPC counts and latencies; see rpc_metrics.h.
#include "coordinator/rpc_metrics.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "proto/openforce.pb.h"

namespace openforce::coordinator {
namespace {

using grpc::experimental::InterceptionHookPoints;

absl::flat_hash_set<std::string> KnownMethods() {
  absl::flat_hash_set<std::string> methods = {
      "/grpc.health.v1.Health/Check",
      "/grpc.health.v1.Health/Watch",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  };
  const google::protobuf::FileDescriptor* file =
      v1::RegisterRequest::descriptor()->file();
  for (int s = 0; s < file->service_count(); ++s) {
    const google::protobuf::ServiceDescriptor* service = file->service(s);
    for (int m = 0; m < service->method_count(); ++m) {
      methods.insert(absl::StrCat("/", service->full_name(), "/",
                                  service->method(m)->name()));
    }
  }
  return methods;
}

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(CoordinatorMetrics* metrics, std::string method)
      : metrics_(metrics),
        method_(std::move(method)),
        start_(std::chrono::steady_clock::now()) {}

  // A call cancelled before its status (the client went away) is counted
  // when gRPC lets go of it.
  ~RpcMetricsInterceptor() override {
    if (!recorded_) Record("CANCELLED");
  }

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      // gRPC's codes are numerically absl's.
      Record(absl::StatusCodeToString(static_cast<absl::StatusCode>(
          methods->GetSendStatus().error_code())));
    }
    methods->Proceed();
  }

 private:
  void Record(const std::string& code) {
    recorded_ = true;
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start_;
    metrics_->RecordRpc(method_, code, elapsed.count());
  }

  CoordinatorMetrics* const metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;
};

}  // namespace

RpcMetricsInterceptorFactory::RpcMetricsInterceptorFactory(
    CoordinatorMetrics* metrics)
    : metrics_(metrics), known_methods_(KnownMethods()) {}

grpc::experimental::Interceptor*
RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  const char* method = info->method();
  std::string name = method == nullptr ? "" : method;
  if (!known_methods_.contains(name)) name = "unknown";
  return new RpcMetricsInterceptor(metrics_, std::move(name));
}

}  // namespace openforce::coordinator
