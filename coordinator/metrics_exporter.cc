// The Prometheus HTTP endpoint; see metrics_exporter.h.
#include "coordinator/metrics_exporter.h"

#include <httplib.h>
#include <sys/socket.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace openforce::coordinator {
namespace {

// Scrapes are rare and small; two threads keep one slow scraper from
// blocking the next without costing the coordinator cores.
constexpr size_t kScrapeThreads = 2;
// A scrape is a GET with no body; anything larger is not one.
constexpr size_t kMaxRequestBodyBytes = 1024;
constexpr time_t kIoTimeoutSeconds = 10;

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsExporter>> MetricsExporter::Start(
    const std::string& listen_address, const CoordinatorMetrics& metrics) {
  const size_t colon = listen_address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen_address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen must be host:port (such as "
                     "127.0.0.1:9464), not \"",
                     listen_address, "\""));
  }
  std::string host = listen_address.substr(0, colon);
  const std::string bind_host =
      host.size() >= 2 && host.front() == '[' && host.back() == ']'
          ? host.substr(1, host.size() - 2)
          : host;
  std::unique_ptr<MetricsExporter> exporter(new MetricsExporter());
  exporter->collectables_ = metrics.collectables();
  exporter->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *exporter->server_;
  server.new_task_queue = [] {
    return new httplib::ThreadPool(kScrapeThreads);
  };
  server.set_payload_max_length(kMaxRequestBodyBytes);
  // httplib's default also sets SO_REUSEPORT, which would let a second
  // coordinator bind the same port and take half the scrapes.
  server.set_socket_options([](socket_t socket) {
    int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_read_timeout(kIoTimeoutSeconds, 0);
  server.set_write_timeout(kIoTimeoutSeconds, 0);
  MetricsExporter* const self = exporter.get();
  server.Get("/metrics", [self](const httplib::Request&,
                                httplib::Response& response) {
    std::vector<prometheus::MetricFamily> families;
    for (const auto& collectable : self->collectables_) {
      std::vector<prometheus::MetricFamily> collected = collectable->Collect();
      families.insert(families.end(),
                      std::make_move_iterator(collected.begin()),
                      std::make_move_iterator(collected.end()));
    }
    response.set_content(prometheus::TextSerializer().Serialize(families),
                         "text/plain; version=0.0.4; charset=utf-8");
  });
  if (port == 0) {
    port = server.bind_to_any_port(bind_host);
    if (port <= 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve metrics on ", listen_address));
    }
  } else if (!server.bind_to_port(bind_host, port)) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen_address,
                     ": the address is in use or not this machine's"));
  }
  exporter->address_ = absl::StrCat(host, ":", port);
  exporter->listener_ =
      std::thread([self] { self->server_->listen_after_bind(); });
  return exporter;
}

MetricsExporter::~MetricsExporter() {
  if (server_ != nullptr) server_->stop();
  if (listener_.joinable()) listener_.join();
}

}  // namespace openforce::coordinator
