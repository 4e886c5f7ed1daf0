// Serves CoordinatorMetrics as Prometheus text on http://<address>/metrics,
// on its own port so that scrapers never share the gRPC port's limits.
// cpp-httplib serves it (prometheus-cpp's CivetWeb exposer would not start
// inside the coordinator); prometheus-cpp renders the text format.
#ifndef OPENFORCE_COORDINATOR_METRICS_EXPORTER_H_
#define OPENFORCE_COORDINATOR_METRICS_EXPORTER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/metrics.h"

namespace httplib {
class Server;
}

namespace openforce::coordinator {

class MetricsExporter {
 public:
  // Listens on `listen_address` ("host:port"; port 0 picks a free one).
  // InvalidArgument for a malformed address, Unavailable when it cannot be
  // bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsExporter>> Start(
      const std::string& listen_address, const CoordinatorMetrics& metrics);
  // Stops serving; a scrape in progress finishes first.
  ~MetricsExporter();

  // host:port actually bound.
  const std::string& address() const { return address_; }

 private:
  MetricsExporter() = default;

  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
  std::string address_;
};

}  // namespace openforce::coordinator

#endif  // OPENFORCE_COORDINATOR_METRICS_EXPORTER_H_
