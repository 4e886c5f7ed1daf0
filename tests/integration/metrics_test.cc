// The coordinator's Prometheus endpoint (--metrics-listen) scraped over real
// HTTP while a round runs: RPC counts by method and status, leases, units by
// state, uploads by outcome and reason, workers by tier, blob store bytes,
// round and aggregation durations, each moving as the round does.
#include <httplib.h>

#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

// One scrape: "name{label="value",...}" -> value.
class Scrape {
 public:
  explicit Scrape(const std::string& text) {
    static const std::regex kSample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ([^ ]+)( [0-9]+)?$)");
    static const std::regex kLabel(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)")re");
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      std::smatch match;
      if (line.empty() || line[0] == '#') continue;
      if (!std::regex_match(line, match, kSample)) {
        ADD_FAILURE() << "not a Prometheus sample line: " << line;
        continue;
      }
      Sample sample;
      sample.name = match[1];
      const std::string labels = match[3];
      for (std::sregex_iterator it(labels.begin(), labels.end(), kLabel), end;
           it != end; ++it) {
        sample.labels[(*it)[1]] = (*it)[2];
      }
      sample.value = std::stod(match[4]);
      samples_.push_back(std::move(sample));
    }
  }

  // The value of the sample `name` whose labels include `labels`; nullopt
  // when there is none.
  std::optional<double> Get(
      const std::string& name,
      const std::map<std::string, std::string>& labels = {}) const {
    for (const Sample& sample : samples_) {
      if (sample.name != name) continue;
      bool match = true;
      for (const auto& [key, value] : labels) {
        auto found = sample.labels.find(key);
        if (found == sample.labels.end() || found->second != value) {
          match = false;
          break;
        }
      }
      if (match) return sample.value;
    }
    return std::nullopt;
  }
  double Value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    return Get(name, labels).value_or(0);
  }

 private:
  struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
  };
  std::vector<Sample> samples_;
};

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    federation_.StartCoordinator(
        {"--open-enrollment", "--metrics-listen", "127.0.0.1:0"});
    absl::StatusOr<std::string> address =
        ReadFileToString(federation_.data_dir() + "/metrics.address");
    ASSERT_OK(address);
    const std::string host_port = address->substr(0, address->find('\n'));
    const size_t colon = host_port.rfind(':');
    host_ = host_port.substr(0, colon);
    port_ = std::stoi(host_port.substr(colon + 1));
    ASSERT_GT(port_, 0);
  }

  Scrape Get() {
    httplib::Client client(host_, port_);
    client.set_read_timeout(10, 0);
    httplib::Result result = client.Get("/metrics");
    if (!result) {
      ADD_FAILURE() << "scrape failed: " << httplib::to_string(result.error());
      return Scrape("");
    }
    EXPECT_EQ(result->status, 200);
    EXPECT_THAT(result->get_header_value("Content-Type"),
                ::testing::HasSubstr("text/plain"));
    return Scrape(result->body);
  }

  TempDir dir_;
  Federation federation_{dir_.path()};
  std::string host_;
  int port_ = 0;
};

constexpr char kLease[] = "/openforce.v1.WorkerService/LeaseWorkUnit";
constexpr char kRegister[] = "/openforce.v1.WorkerService/Register";
constexpr char kUpload[] = "/openforce.v1.WorkerService/UploadDelta";

TEST_F(MetricsTest, ValuesMoveAsARoundRuns) {
  const Scrape idle = Get();
  EXPECT_EQ(idle.Value("openforce_leases_total"), 0);
  EXPECT_EQ(idle.Value("openforce_rpcs_total", {{"method", kRegister}}), 0);

  const std::string job = federation_.Submit(federation_.DemoSpec(1, 1, 10));
  const Scrape submitted = Get();
  EXPECT_EQ(submitted.Value("openforce_units",
                            {{"kind", "training"}, {"state", "pending"}}),
            1);
  EXPECT_EQ(submitted.Value("openforce_jobs", {{"state", "running"}}), 1);
  // The model, tokenizer and dataset the job needs.
  EXPECT_GT(submitted.Value("openforce_blob_store_bytes"), 0);
  EXPECT_GT(submitted.Value("openforce_rpcs_total",
                            {{"method", "/openforce.v1.AdminService/SubmitJob"},
                             {"code", "OK"}}),
            0);

  auto stub = federation_.WorkerStub();
  ScriptedWorker worker(stub.get(), 1);
  ASSERT_TRUE(worker.Register().ok());
  const v1::WorkUnit unit = worker.Lease();
  ASSERT_EQ(unit.job_id(), job);
  const Scrape leased = Get();
  EXPECT_EQ(leased.Value("openforce_leases_total", {{"kind", "training"}}), 1);
  EXPECT_EQ(leased.Value("openforce_units",
                         {{"kind", "training"}, {"state", "leased"}}),
            1);
  EXPECT_EQ(leased.Value("openforce_units",
                         {{"kind", "training"}, {"state", "pending"}}),
            0);
  EXPECT_EQ(leased.Value("openforce_rpcs_total",
                         {{"method", kRegister}, {"code", "OK"}}),
            1);
  EXPECT_GE(leased.Value("openforce_rpcs_total",
                         {{"method", kLease}, {"code", "OK"}}),
            1);
  EXPECT_GE(leased.Value("openforce_rpc_duration_seconds_count",
                         {{"method", kLease}}),
            1);
  // The scripted worker heartbeats before leasing: it is live, on CPU.
  EXPECT_EQ(leased.Value("openforce_workers", {{"tier", "cpu"}}), 1);
  EXPECT_EQ(leased.Value("openforce_workers", {{"state", "silent"}}), 0);

  // A forged delta is refused and counted by its reason.
  const std::string good = MakeDeltaBytes(dir_.path(), 8, 0.001f);
  ScriptedWorker forger(stub.get(), 2);
  ScriptedWorker::UploadResult forged =
      worker.Upload(worker.MakeHeader(unit, good, &forger.key()), good);
  ASSERT_EQ(forged.reason, v1::REJECT_BAD_SIGNATURE);
  const Scrape refused = Get();
  EXPECT_EQ(refused.Value(
                "openforce_uploads_total",
                {{"outcome", "rejected"}, {"reason", "REJECT_BAD_SIGNATURE"}}),
            1);
  EXPECT_EQ(refused.Value("openforce_rpcs_total",
                          {{"method", kUpload}, {"code", "UNAUTHENTICATED"}}),
            1);

  // The good one closes the round: one aggregation, one published round.
  ScriptedWorker::UploadResult accepted =
      worker.Upload(worker.MakeHeader(unit, good), good);
  ASSERT_TRUE(accepted.status.ok()) << accepted.status.error_message();
  ASSERT_TRUE(accepted.response.accepted());
  const v1::JobStatus status = federation_.WaitForJob(
      job, [](const v1::JobStatus& s) { return s.state() != v1::JOB_RUNNING; },
      60);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << status.DebugString();
  const Scrape done = Get();
  EXPECT_EQ(done.Value("openforce_uploads_total", {{"outcome", "accepted"}}),
            1);
  EXPECT_EQ(
      done.Value("openforce_rpcs_total", {{"method", kUpload}, {"code", "OK"}}),
      1);
  EXPECT_EQ(done.Value("openforce_round_duration_seconds_count"), 1);
  EXPECT_GT(done.Value("openforce_round_duration_seconds_sum"), 0);
  EXPECT_EQ(done.Value("openforce_aggregation_duration_seconds_count"), 1);
  EXPECT_EQ(done.Value("openforce_jobs", {{"state", "succeeded"}}), 1);
  EXPECT_EQ(done.Value("openforce_jobs", {{"state", "running"}}), 0);
  // The job is over: no open round reports units.
  EXPECT_FALSE(done.Get("openforce_units").has_value());
  // The delta and the published adapter joined the store.
  EXPECT_GT(done.Value("openforce_blob_store_bytes"),
            submitted.Value("openforce_blob_store_bytes") + good.size());
  EXPECT_EQ(done.Value("openforce_metrics_snapshot_failures_total"), 0);
}

TEST_F(MetricsTest, AnAddressInUseOrMalformedIsRefusedAtStart) {
  // The running coordinator holds port_; a second one may not take it.
  TempDir other_dir;
  Federation other(other_dir.path());
  const std::string taken = host_ + ":" + std::to_string(port_);
  EXPECT_THROW(other.StartCoordinator({"--metrics-listen", taken}),
               std::runtime_error);
  EXPECT_THAT(other.coordinator().Log(),
              ::testing::HasSubstr("cannot serve metrics on " + taken));
  EXPECT_THROW(other.StartCoordinator({"--metrics-listen", "localhost"}),
               std::runtime_error);
  EXPECT_THAT(other.coordinator().Log(),
              ::testing::HasSubstr("--metrics-listen must be host:port"));
}

}  // namespace
}  // namespace openforce::testing
