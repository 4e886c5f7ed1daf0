// Coordinator replicas sharing one PostgreSQL database (a throwaway server
// from Debian's package) and one data directory: a unit leased through one
// replica is delivered through the other, rounds that both replicas see
// complete close once, and a replica killed with SIGKILL mid-round loses
// nothing it acknowledged.
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "proto/channel.h"
#include "tests/integration/federation.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

// A second coordinator process on the federation's data directory and
// database.
class Replica {
 public:
  Replica(Federation& federation, const std::string& state_uri) {
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{OPENFORCE_COORDINATOR_PATH, "serve", "--data",
                                 federation.data_dir(), "--listen",
                                 "127.0.0.1:0", "--heartbeat-interval-ms",
                                 "300", "--lease-retry-ms", "200",
                                 "--open-enrollment", "--state", state_uri},
        federation.root() + "/replica-b.log");
    static const std::regex kListening("listening on (127\\.0\\.0\\.1:[0-9]+)");
    for (int i = 0; i < 300 && address_.empty(); ++i) {
      std::smatch match;
      const std::string log = process_->Log();
      if (std::regex_search(log, match, kListening)) address_ = match[1];
      if (!process_->running()) break;
      usleep(50 * 1000);
    }
    if (address_.empty())
      throw std::runtime_error("replica did not start: " + process_->Log());
    auto channel = MakeChannel(address_, {});
    if (!channel.ok()) throw std::runtime_error(channel.status().ToString());
    stub_ = v1::WorkerService::NewStub(*channel);
    auto token = ReadFileToString(federation.data_dir() + "/admin.token");
    if (!token.ok()) throw std::runtime_error("no admin token");
    auto admin = coordinator::AdminClient::Connect(
        address_, {}, token->substr(0, token->find('\n')));
    if (!admin.ok()) throw std::runtime_error(admin.status().ToString());
    admin_ = *std::move(admin);
  }

  v1::WorkerService::Stub* stub() { return stub_.get(); }
  coordinator::AdminClient& admin() { return *admin_; }
  ChildProcess& process() { return *process_; }

 private:
  std::unique_ptr<ChildProcess> process_;
  std::string address_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::unique_ptr<coordinator::AdminClient> admin_;
};

class ReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = PostgresServer::Start();
    ASSERT_OK(server);
    server_ = *std::move(server);
    auto uri = server_->CreateDatabase("replicas");
    ASSERT_OK(uri);
    uri_ = *uri;
    federation_.StartCoordinator({"--open-enrollment", "--state", uri_});
    stub_a_ = federation_.WorkerStub();
    replica_b_ = std::make_unique<Replica>(federation_, uri_);
    good_ = MakeDeltaBytes(dir_.path(), 8, 0.001f);
  }

  // Worker `seed` leases through `lease_at`, registers with `deliver_at`
  // (another replica keeps its own sessions) and delivers a good delta
  // there; the unit id.
  std::string LeaseAndDeliver(uint64_t seed, v1::WorkerService::Stub* lease_at,
                              v1::WorkerService::Stub* deliver_at) {
    ScriptedWorker leaser(lease_at, seed);
    EXPECT_TRUE(leaser.Register().ok());
    const v1::WorkUnit unit = leaser.Lease();
    EXPECT_FALSE(unit.unit_id().empty()) << "worker " << seed << " got no unit";
    ScriptedWorker deliverer(deliver_at, seed);
    EXPECT_TRUE(deliverer.Register().ok());
    EXPECT_EQ(deliverer.id(), leaser.id());
    ScriptedWorker::UploadResult result =
        deliverer.Upload(deliverer.MakeHeader(unit, good_), good_);
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_TRUE(result.response.accepted()) << result.response.message();
    return unit.unit_id();
  }

  TempDir dir_;
  Federation federation_{dir_.path()};
  std::unique_ptr<PostgresServer> server_;
  std::string uri_;
  std::unique_ptr<v1::WorkerService::Stub> stub_a_;
  std::unique_ptr<Replica> replica_b_;
  std::string good_;
};

TEST_F(ReplicasTest, LeasesCrossReplicasAndEachRoundClosesOnce) {
  const std::string job = federation_.Submit(federation_.DemoSpec(2, 4, 10));
  for (uint64_t round = 1; round <= 2; ++round) {
    std::set<std::string> units;
    // Two workers lease through each replica and deliver through the other;
    // both replicas tick and see the round complete at once.
    for (uint64_t worker = 1; worker <= 4; ++worker) {
      const bool at_a = worker % 2 == 1;
      units.insert(LeaseAndDeliver(worker,
                                   at_a ? stub_a_.get() : replica_b_->stub(),
                                   at_a ? replica_b_->stub() : stub_a_.get()));
    }
    EXPECT_EQ(units.size(), 4u) << "a unit was handed out twice";
    const v1::JobStatus status = federation_.WaitForJob(
        job,
        [round](const v1::JobStatus& s) {
          return s.latest_adapter_version() >= round ||
                 s.state() != v1::JOB_RUNNING;
        },
        60);
    ASSERT_EQ(status.latest_adapter_version(), round) << status.DebugString();
  }
  const v1::JobStatus status = federation_.WaitForJob(
      job, [](const v1::JobStatus& s) { return s.state() != v1::JOB_RUNNING; },
      30);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << status.DebugString();
  ASSERT_EQ(status.rounds_size(), 2);
  for (const v1::RoundStatus& round : status.rounds()) {
    EXPECT_EQ(round.units_accepted(), 4u);
    EXPECT_EQ(round.adapter_version(), round.round());
  }
  // Both replicas serve the one adapter each round published.
  auto from_b = replica_b_->admin().GetJob(job);
  ASSERT_OK(from_b);
  EXPECT_EQ(from_b->latest_adapter_version(), 2u);
  EXPECT_EQ(from_b->state(), v1::JOB_SUCCEEDED);
  // Credit was given once per round: two accepted units per worker.
  auto workers = replica_b_->admin().ListWorkers(/*include_inactive=*/true);
  ASSERT_OK(workers);
  ASSERT_EQ(workers->size(), 4u);
  for (const v1::WorkerStatus& worker : *workers) {
    EXPECT_EQ(worker.units_accepted(), 2u) << worker.worker_id();
    EXPECT_EQ(worker.units_rejected(), 0u) << worker.worker_id();
    EXPECT_GT(worker.credit_flop(), 0) << worker.worker_id();
  }
}

TEST_F(ReplicasTest, AReplicaKilledMidRoundLosesNothingAcknowledged) {
  const std::string job = federation_.Submit(federation_.DemoSpec(1, 3, 10));
  // Two deltas acknowledged by replica A, which then dies.
  LeaseAndDeliver(1, stub_a_.get(), stub_a_.get());
  LeaseAndDeliver(2, stub_a_.get(), stub_a_.get());
  federation_.coordinator().Signal(SIGKILL);
  federation_.coordinator().Wait();
  // The last shard goes through B, which closes the round with all three.
  LeaseAndDeliver(3, replica_b_->stub(), replica_b_->stub());
  v1::JobStatus status;
  for (int i = 0; i < 300; ++i) {
    auto polled = replica_b_->admin().GetJob(job);
    ASSERT_OK(polled);
    status = *polled;
    if (status.state() != v1::JOB_RUNNING) break;
    usleep(200 * 1000);
  }
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << status.DebugString();
  ASSERT_EQ(status.rounds_size(), 1);
  EXPECT_EQ(status.rounds(0).units_accepted(), 3u);
  EXPECT_EQ(status.latest_adapter_version(), 1u);
}

}  // namespace
}  // namespace openforce::testing
