// The Prometheus HTTP endpoint; see metrics_exporter.h.
#include "coordinator/metrics_exporter.h"

#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"

namespace openforce::coordinator {
namespace {

// Scrapes are rare and small; two threads keep one slow scraper from
// blocking the next without costing the coordinator cores.
constexpr size_t kExposerThreads = 2;

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsExporter>> MetricsExporter::Start(
    const std::string& listen_address, const CoordinatorMetrics& metrics) {
  const size_t colon = listen_address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen_address.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen must be host:port (such as "
                     "127.0.0.1:9464), not \"",
                     listen_address, "\""));
  }
  std::unique_ptr<MetricsExporter> exporter(new MetricsExporter());
  try {
    exporter->exposer_ =
        std::make_unique<prometheus::Exposer>(listen_address, kExposerThreads);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", listen_address, ": ", e.what()));
  }
  const std::vector<int> ports = exporter->exposer_->GetListeningPorts();
  if (ports.empty() || ports.front() <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen_address));
  }
  exporter->collectables_ = metrics.collectables();
  for (const auto& collectable : exporter->collectables_) {
    exporter->exposer_->RegisterCollectable(collectable);
  }
  exporter->address_ =
      absl::StrCat(listen_address.substr(0, colon), ":", ports.front());
  return exporter;
}

MetricsExporter::~MetricsExporter() = default;

}  // namespace openforce::coordinator
