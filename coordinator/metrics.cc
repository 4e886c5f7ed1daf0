// Prometheus families of the coordinator; see metrics.h.
#include "coordinator/metrics.h"

#include <vector>

#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace openforce::coordinator {
namespace {

// Unary calls answer in well under a millisecond when nothing waits and in
// seconds when the disk stalls; uploads and fetches take longer.
const prometheus::Histogram::BucketBoundaries& RpcBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
          0.1,     0.25,   0.5,   1,      2.5,   5,    10,    30};
  return *kBuckets;
}

// From a minute-long demo round to a day-long community one.
const prometheus::Histogram::BucketBoundaries& RoundBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400};
  return *kBuckets;
}

const prometheus::Histogram::BucketBoundaries& AggregationBuckets() {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
  return *kBuckets;
}

prometheus::ClientMetric Gauge(
    double value, std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  return metric;
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

}  // namespace

struct CoordinatorMetrics::Families {
  explicit Families(prometheus::Registry& registry)
      : rpcs(prometheus::BuildCounter()
                 .Name("openforce_rpcs_total")
                 .Help("RPCs finished, by full method name and status code")
                 .Register(registry)),
        rpc_seconds(prometheus::BuildHistogram()
                        .Name("openforce_rpc_duration_seconds")
                        .Help("Time from an RPC's arrival to its status")
                        .Register(registry)),
        leases(prometheus::BuildCounter()
                   .Name("openforce_leases_total")
                   .Help("Units leased to workers, by kind")
                   .Register(registry)),
        no_work(prometheus::BuildCounter()
                    .Name("openforce_lease_no_work_total")
                    .Help("Lease calls that found no unit for the worker")
                    .Register(registry)
                    .Add({})),
        uploads(prometheus::BuildCounter()
                    .Name("openforce_uploads_total")
                    .Help("Delta uploads finished, by outcome and reason")
                    .Register(registry)),
        round_seconds(
            prometheus::BuildHistogram()
                .Name("openforce_round_duration_seconds")
                .Help("Time from a round's opening to its publication")
                .Register(registry)
                .Add({}, RoundBuckets())),
        aggregation_seconds(
            prometheus::BuildHistogram()
                .Name("openforce_aggregation_duration_seconds")
                .Help("Time to aggregate a round's deltas under one rule")
                .Register(registry)
                .Add({}, AggregationBuckets())),
        liveness_batches(prometheus::BuildCounter()
                             .Name("openforce_liveness_batches_total")
                             .Help("Batched writes of heartbeat liveness")
                             .Register(registry)
                             .Add({})),
        liveness_heartbeats(
            prometheus::BuildCounter()
                .Name("openforce_liveness_persisted_total")
                .Help("Worker liveness records written in batches")
                .Register(registry)
                .Add({})),
        snapshot_failures(prometheus::BuildCounter()
                              .Name("openforce_metrics_snapshot_failures_total")
                              .Help("Scrapes whose levels could not be read")
                              .Register(registry)
                              .Add({})) {}

  prometheus::Family<prometheus::Counter>& rpcs;
  prometheus::Family<prometheus::Histogram>& rpc_seconds;
  prometheus::Family<prometheus::Counter>& leases;
  prometheus::Counter& no_work;
  prometheus::Family<prometheus::Counter>& uploads;
  prometheus::Histogram& round_seconds;
  prometheus::Histogram& aggregation_seconds;
  prometheus::Counter& liveness_batches;
  prometheus::Counter& liveness_heartbeats;
  prometheus::Counter& snapshot_failures;
};

class CoordinatorMetrics::SnapshotCollector final
    : public prometheus::Collectable {
 public:
  explicit SnapshotCollector(prometheus::Counter* failures)
      : failures_(failures) {}

  void SetSource(std::function<absl::StatusOr<MetricsSnapshot>()> source) {
    absl::MutexLock lock(&mu_);
    source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::function<absl::StatusOr<MetricsSnapshot>()> source;
    {
      absl::MutexLock lock(&mu_);
      source = source_;
    }
    if (!source) return {};
    absl::StatusOr<MetricsSnapshot> snapshot = source();
    if (!snapshot.ok()) {
      failures_->Increment();
      return {};
    }
    std::vector<prometheus::MetricFamily> families;
    prometheus::MetricFamily units = GaugeFamily(
        "openforce_units", "Units of the open rounds of running jobs");
    for (const auto& [key, count] : snapshot->units) {
      units.metric.push_back(
          Gauge(count, {{"kind", key.first}, {"state", key.second}}));
    }
    families.push_back(std::move(units));
    prometheus::MetricFamily workers = GaugeFamily(
        "openforce_workers",
        "Registered workers by tier and state (silent: past the timeout)");
    for (const auto& [key, count] : snapshot->workers) {
      workers.metric.push_back(
          Gauge(count, {{"tier", key.first}, {"state", key.second}}));
    }
    families.push_back(std::move(workers));
    prometheus::MetricFamily jobs =
        GaugeFamily("openforce_jobs", "Jobs by state");
    for (const auto& [state, count] : snapshot->jobs) {
      jobs.metric.push_back(Gauge(count, {{"state", state}}));
    }
    families.push_back(std::move(jobs));
    prometheus::MetricFamily blob_bytes = GaugeFamily(
        "openforce_blob_store_bytes", "Bytes of complete blobs in the store");
    blob_bytes.metric.push_back(Gauge(snapshot->blob_bytes, {}));
    families.push_back(std::move(blob_bytes));
    prometheus::MetricFamily blob_count = GaugeFamily(
        "openforce_blob_store_blobs", "Complete blobs in the store");
    blob_count.metric.push_back(Gauge(snapshot->blob_count, {}));
    families.push_back(std::move(blob_count));
    prometheus::MetricFamily partial =
        GaugeFamily("openforce_blob_store_partial_upload_bytes",
                    "Bytes of uploads in progress");
    partial.metric.push_back(Gauge(snapshot->partial_upload_bytes, {}));
    families.push_back(std::move(partial));
    return families;
  }

 private:
  prometheus::Counter* const failures_;
  mutable absl::Mutex mu_;
  std::function<absl::StatusOr<MetricsSnapshot>()> source_ ABSL_GUARDED_BY(mu_);
};

CoordinatorMetrics::CoordinatorMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)),
      snapshot_(
          std::make_shared<SnapshotCollector>(&families_->snapshot_failures)) {}

CoordinatorMetrics::~CoordinatorMetrics() = default;

void CoordinatorMetrics::RecordRpc(absl::string_view method,
                                   absl::string_view code, double seconds) {
  families_->rpcs
      .Add({{"method", std::string(method)}, {"code", std::string(code)}})
      .Increment();
  families_->rpc_seconds.Add({{"method", std::string(method)}}, RpcBuckets())
      .Observe(seconds);
}

void CoordinatorMetrics::RecordLease(absl::string_view kind) {
  families_->leases.Add({{"kind", std::string(kind)}}).Increment();
}

void CoordinatorMetrics::RecordNoWork() { families_->no_work.Increment(); }

void CoordinatorMetrics::RecordUploadAccepted() {
  families_->uploads.Add({{"outcome", "accepted"}, {"reason", ""}}).Increment();
}

void CoordinatorMetrics::RecordUploadRejected(absl::string_view reason) {
  families_->uploads
      .Add({{"outcome", "rejected"}, {"reason", std::string(reason)}})
      .Increment();
}

void CoordinatorMetrics::RecordRoundPublished(double seconds) {
  families_->round_seconds.Observe(seconds);
}

void CoordinatorMetrics::RecordAggregation(double seconds) {
  families_->aggregation_seconds.Observe(seconds);
}

void CoordinatorMetrics::RecordLivenessBatch(uint64_t heartbeats) {
  families_->liveness_batches.Increment();
  families_->liveness_heartbeats.Increment(static_cast<double>(heartbeats));
}

void CoordinatorMetrics::SetSnapshotSource(
    std::function<absl::StatusOr<MetricsSnapshot>()> source) {
  snapshot_->SetSource(std::move(source));
}

std::vector<std::shared_ptr<prometheus::Collectable>>
CoordinatorMetrics::collectables() const {
  return {registry_, snapshot_};
}

}  // namespace openforce::coordinator
