// A federation on loopback for integration tests: the real coordinator
// binary (SQLite on disk under a temporary directory) on port 0, real worker
// processes, an admin client, and a scripted in-test worker that speaks
// WorkerService directly to send the bad deltas a test needs.
#ifndef OPENFORCE_TESTS_INTEGRATION_FEDERATION_H_
#define OPENFORCE_TESTS_INTEGRATION_FEDERATION_H_

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/ed25519.h"
#include "coordinator/admin_client.h"
#include "proto/call_signing.h"
#include "proto/openforce.grpc.pb.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/subprocess.h"

namespace openforce::testing {

class Federation {
 public:
  // Writes the demo task and a coordinator identity under `root`.
  explicit Federation(std::string root);
  ~Federation();

  // Starts `openforce-coordinator serve` and waits for its address. `listen`
  // keeps a port across restarts.
  void StartCoordinator(const std::vector<std::string>& extra_flags = {},
                        const std::string& listen = "127.0.0.1:0");
  ChildProcess& coordinator() { return *coordinator_; }
  const std::string& address() const { return address_; }
  std::string data_dir() const { return root_ + "/coordinator"; }

  coordinator::AdminClient& admin();
  std::unique_ptr<v1::WorkerService::Stub> WorkerStub() const;

  // The demo job: lookup task, LoRA r4 on q/v, tiny steps.
  v1::JobSpec DemoSpec(uint32_t rounds, uint32_t shards, int32_t steps) const;
  // Uploads the model and dataset (the demo's unless `dataset_path` is
  // given), submits; the job id.
  std::string Submit(v1::JobSpec spec, const std::string& dataset_path = "");

  ChildProcess& StartWorker(const std::string& name,
                            const std::vector<std::string>& extra_flags = {});

  // Polls GetJob until `done` holds or `timeout_seconds` pass; the last
  // status either way.
  v1::JobStatus WaitForJob(
      const std::string& job_id,
      const std::function<bool(const v1::JobStatus&)>& done,
      double timeout_seconds);

  const DemoTaskFiles& task() const { return task_; }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
  DemoTaskFiles task_;
  std::unique_ptr<ChildProcess> coordinator_;
  std::string address_;
  std::unique_ptr<coordinator::AdminClient> admin_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
  int coordinator_starts_ = 0;
};

// A worker scripted by the test: registers its own key and sends whatever
// deltas the test builds.
class ScriptedWorker {
 public:
  ScriptedWorker(v1::WorkerService::Stub* stub, uint64_t seed);

  grpc::Status Register(const std::string& enrollment_token = "",
                        const std::string& display_name = "scripted");
  // Heartbeats, then leases; the unit (unset when none was given).
  v1::WorkUnit Lease();
  // The signed calls, as the worker binary makes them. `revoked` gets the
  // units the coordinator revoked.
  grpc::Status Heartbeat(const std::string& current_unit_id = "",
                         std::vector<std::string>* revoked = nullptr);
  grpc::Status TryLease(v1::LeaseWorkUnitResponse* response,
                        v1::RejectReason* reason = nullptr);
  grpc::Status Release(const std::string& unit_id,
                       v1::RejectReason* reason = nullptr);
  // Fetches a whole blob (with this worker's id and signature, or
  // anonymously); the bytes in `data`.
  grpc::Status Fetch(const std::string& sha256, std::string* data,
                     bool anonymous = false,
                     v1::RejectReason* reason = nullptr);
  // Signs `request` as `method` in this worker's session with the next
  // counter.
  template <typename Request>
  void SignCall(absl::string_view method, Request* request) {
    absl::Status signed_call = openforce::SignCall(
        key_, method, worker_id_, session_id_, ++counter_, request);
    if (!signed_call.ok()) throw std::runtime_error(signed_call.ToString());
  }

  // A header for `unit` and the delta `bytes`, signed with `signer`
  // (this worker's key when null).
  v1::DeltaHeader MakeHeader(const v1::WorkUnit& unit, const std::string& bytes,
                             const Ed25519PrivateKey* signer = nullptr) const;
  void Sign(v1::DeltaHeader* header,
            const Ed25519PrivateKey* signer = nullptr) const;

  struct UploadResult {
    grpc::Status status;
    v1::RejectReason reason = v1::REJECT_REASON_UNSPECIFIED;
    v1::UploadDeltaResponse response;
  };
  // Streams `bytes` at `offset` under `header`.
  UploadResult Upload(const v1::DeltaHeader& header, const std::string& bytes,
                      uint64_t offset = 0);

  const std::string& id() const { return worker_id_; }
  void set_id(const std::string& id) { worker_id_ = id; }
  const std::string& session() const { return session_id_; }
  void set_session(const std::string& session) { session_id_ = session; }
  const Ed25519PrivateKey& key() const { return key_; }
  v1::WorkerService::Stub* stub() const { return stub_; }

 private:
  v1::WorkerService::Stub* stub_;
  Ed25519PrivateKey key_;
  std::string worker_id_;
  std::string session_id_;
  uint64_t counter_ = 0;
};

// A delta file for the demo job's LoRA shape (`rank`, q/v) with every value
// set to `value`; the bytes.
std::string MakeDeltaBytes(const std::string& dir, int64_t rank, float value);

}  // namespace openforce::testing

#endif  // OPENFORCE_TESTS_INTEGRATION_FEDERATION_H_
