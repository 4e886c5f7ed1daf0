// Serves CoordinatorMetrics as Prometheus text on http://<address>/metrics,
// on its own port so that scrapers never share the gRPC port's limits.
#ifndef OPENFORCE_COORDINATOR_METRICS_EXPORTER_H_
#define OPENFORCE_COORDINATOR_METRICS_EXPORTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/metrics.h"

namespace prometheus {
class Exposer;
}

namespace openforce::coordinator {

class MetricsExporter {
 public:
  // Listens on `listen_address` ("host:port"; port 0 picks a free one).
  // InvalidArgument for a malformed address, Unavailable when it cannot be
  // bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsExporter>> Start(
      const std::string& listen_address, const CoordinatorMetrics& metrics);
  ~MetricsExporter();

  // host:port actually bound.
  const std::string& address() const { return address_; }

 private:
  MetricsExporter() = default;

  // The exposer holds weak pointers; these keep the collectables alive
  // while it serves them.
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string address_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_METRICS_EXPORTER_H_
