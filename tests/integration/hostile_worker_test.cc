// A hostile volunteer against the real coordinator binary on loopback: 200
// upload streams opened and left stalled take no thread each, honest workers
// finish their round meanwhile (the hostile worker's own lease goes back when
// it stops heartbeating), and the stalled partial uploads are gone from disk
// once they expire. Also: the worker id alone opens nothing over the wire.
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "proto/signing_convert.h"
#include "tests/integration/federation.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;

int ThreadCount(int pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

size_t PartialUploads(const std::string& data_dir) {
  size_t count = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(
           data_dir + "/blobs/uploads", error)) {
    if (entry.path().extension() == ".part") ++count;
  }
  return count;
}

TEST(HostileWorkerTest, StalledStreamsTakeNoThreadsAndHonestWorkersFinish) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment", "--heartbeat-interval-ms",
                               "500", "--upload-expiry-s", "4",
                               "--lease-grace-ms", "1500",
                               "--stream-idle-timeout-s", "600"});
  const std::string job = federation.Submit(federation.DemoSpec(1, 2, 10));
  const int baseline = ThreadCount(federation.coordinator().pid());
  ASSERT_GT(baseline, 0);

  // The hostile worker leases a unit, then never heartbeats again.
  auto stub = federation.WorkerStub();
  ScriptedWorker hostile(stub.get(), 66);
  ASSERT_TRUE(hostile.Register().ok());
  const v1::WorkUnit unit = hostile.Lease();
  ASSERT_FALSE(unit.unit_id().empty());

  // 200 streams, each a different (signed) delta with a first chunk of data,
  // spread over four connections, all left open.
  constexpr int kStreams = 200;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::WorkerService::Stub>> stubs;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("openforce.test.connection", i);
    channels.push_back(grpc::CreateCustomChannel(
        federation.address(), grpc::InsecureChannelCredentials(), args));
    stubs.push_back(v1::WorkerService::NewStub(channels.back()));
  }
  struct Stalled {
    std::unique_ptr<grpc::ClientContext> context;
    v1::UploadDeltaResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::UploadDeltaChunk>> writer;
  };
  std::vector<std::unique_ptr<Stalled>> stalled;
  for (int i = 0; i < kStreams; ++i) {
    auto stream = std::make_unique<Stalled>();
    stream->context = std::make_unique<grpc::ClientContext>();
    const std::string bytes = absl::StrCat("delta-", i, std::string(4096, 'x'));
    v1::UploadDeltaChunk first;
    *first.mutable_header() = hostile.MakeHeader(unit, bytes);
    hostile.SignCall(kUploadDeltaMethod, &first);
    stream->writer = stubs[i % stubs.size()]->UploadDelta(stream->context.get(),
                                                          &stream->response);
    ASSERT_TRUE(stream->writer->Write(first));
    v1::UploadDeltaChunk data;
    data.set_data(bytes.substr(0, 1000));
    ASSERT_TRUE(stream->writer->Write(data));
    stalled.push_back(std::move(stream));
  }

  // The streams reached the coordinator: their data sits in a partial
  // upload (each new one replaces the worker's earlier one for the unit).
  const auto arrived =
      std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (PartialUploads(federation.data_dir()) == 0 &&
         std::chrono::steady_clock::now() < arrived) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(PartialUploads(federation.data_dir()), 1u);
  const int with_streams = ThreadCount(federation.coordinator().pid());

  // Honest workers join and finish the round while the streams stall.
  federation.StartWorker("honest-1");
  federation.StartWorker("honest-2");
  int most_threads = with_streams;
  v1::JobStatus status;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (std::chrono::steady_clock::now() < deadline) {
    most_threads =
        std::max(most_threads, ThreadCount(federation.coordinator().pid()));
    absl::StatusOr<v1::JobStatus> job_status = federation.admin().GetJob(job);
    if (job_status.ok()) {
      status = *job_status;
      if (status.state() != v1::JOB_RUNNING) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << status.DebugString();
  // The hostile worker's lease went back when it went silent; it earned
  // nothing.
  auto workers = federation.admin().ListWorkers(true);
  ASSERT_OK(workers);
  for (const v1::WorkerStatus& worker : *workers) {
    if (worker.worker_id() == hostile.id()) {
      EXPECT_EQ(worker.units_accepted(), 0u);
      EXPECT_EQ(worker.credit_flop(), 0);
    }
  }
  // 200 stalled streams did not become 200 threads.
  std::cout << "coordinator threads: " << baseline << " at start, at most "
            << most_threads << " with " << kStreams << " stalled streams\n";
  EXPECT_LT(most_threads, baseline + 40);

  // Every partial upload expires (4 s here) and leaves the disk.
  const auto expiry =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (PartialUploads(federation.data_dir()) > 0 &&
         std::chrono::steady_clock::now() < expiry) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  EXPECT_EQ(PartialUploads(federation.data_dir()), 0u);
  auto store = federation.admin().GetStoreStatus();
  ASSERT_OK(store);
  EXPECT_EQ(store->partial_upload_count(), 0u);
  for (auto& stream : stalled) stream->context->TryCancel();
}

TEST(HostileWorkerTest, AVictimsIdAloneReleasesNothingAndFetchesNothing) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  const std::string job = federation.Submit(federation.DemoSpec(1, 2, 10));
  auto stub = federation.WorkerStub();
  ScriptedWorker victim(stub.get(), 1);
  ASSERT_TRUE(victim.Register().ok());
  const v1::WorkUnit unit = victim.Lease();
  ASSERT_FALSE(unit.unit_id().empty());

  ScriptedWorker attacker(stub.get(), 2);
  ASSERT_TRUE(attacker.Register().ok());
  attacker.set_id(victim.id());
  v1::RejectReason reason;
  grpc::Status released = attacker.Release(unit.unit_id(), &reason);
  EXPECT_EQ(released.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(reason, v1::REJECT_BAD_CALL_AUTH);
  v1::LeaseWorkUnitResponse lease;
  EXPECT_EQ(attacker.TryLease(&lease, &reason).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  std::string data;
  EXPECT_EQ(
      attacker.Fetch(unit.shard().sha256(), &data, false, &reason).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(data.empty());
  // Under its own id, without a lease, the attacker fetches no model and no
  // data either; the victim, holding the lease, can.
  attacker.set_id(ScriptedWorker(stub.get(), 2).id());
  ScriptedWorker own(stub.get(), 2);
  ASSERT_TRUE(own.Register().ok());
  EXPECT_EQ(own.Fetch(unit.base_model_files(0).sha256(), &data, false, &reason)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(reason, v1::REJECT_NOT_LEASED_BLOB);
  EXPECT_EQ(own.Fetch(unit.shard().sha256(), &data, true, &reason).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status fetched = victim.Fetch(unit.shard().sha256(), &data);
  ASSERT_TRUE(fetched.ok()) << fetched.error_message();
  EXPECT_EQ(Sha256Hex(data), unit.shard().sha256());
  // The victim's lease is still its own.
  auto status = federation.admin().GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->rounds(0).units_leased(), 1u);
}

}  // namespace
}  // namespace openforce::testing
