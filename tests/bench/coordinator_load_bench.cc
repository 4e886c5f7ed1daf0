// Load on the coordinator from thousands of simulated volunteers: a real
// CoordinatorServer on loopback (its state store on disk), and a callback-API
// client that keeps a fixed number of calls in flight (a closed loop) with
// real Ed25519 keys and the authenticated calls workers make. For each
// (workers, units per round) pair it prints throughput and p50/p99 latency
// of register, heartbeat, lease + release and lease + accepted upload, next to
// gRPC's own health check on the same server in the same run, and the time to
// submit the job itself. Printed, never timed by ctest.
//
// Heartbeats are signed before their phase starts (volunteers sign on their
// own machines; here the client shares the server's cores), lease, release
// and upload calls are signed as they go, because each depends on the
// answer before it.
#include <ATen/ATen.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/blob_store.h"
#include "common/ed25519.h"
#include "common/file_util.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "common/signing_payload.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "coordinator/postgres_state_store.h"
#include "coordinator/server.h"
#include "coordinator/sqlite_state_store.h"
#include "lora/lora_adapter.h"
#include "lora/safetensors.h"
#include "proto/call_signing.h"
#include "proto/channel.h"
#include "proto/openforce.grpc.pb.h"
#include "proto/signing_convert.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/temp_dir.h"

ABSL_FLAG(std::string, workers, "1000,10000",
          "simulated workers per configuration (comma-separated)");
ABSL_FLAG(std::string, units, "5000,50000",
          "units per round per configuration (comma-separated)");
ABSL_FLAG(double, seconds, 3, "seconds each operation is measured");
ABSL_FLAG(int32_t, in_flight, 64, "calls kept in flight (closed loop)");
ABSL_FLAG(std::string, scratch, "",
          "directory for the coordinator's data (default: $TMPDIR)");
ABSL_FLAG(bool, uploads, true, "also measure lease + accepted upload");
ABSL_FLAG(std::string, backends, "sqlite,postgresql",
          "state stores to measure (comma-separated: sqlite, postgresql; "
          "PostgreSQL is a throwaway server started on this machine)");
ABSL_FLAG(std::string, replicas, "1,2",
          "coordinator replicas sharing the PostgreSQL database "
          "(comma-separated; SQLite runs one)");

namespace openforce::coordinator {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Figures {
  uint64_t calls = 0;
  uint64_t errors = 0;
  std::string first_error;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double PerSecond() const { return seconds > 0 ? calls / seconds : 0; }
};

// Keeps `in_flight` chains of operations going until the time is up or
// `limit` operations started. An operation is asynchronous: it calls `done`
// (from any thread) with its outcome.
class ClosedLoop {
 public:
  using Done = std::function<void(const grpc::Status&)>;
  // `chain` is the chain's index, `sequence` the chain's own count: chains
  // own disjoint workers, so one worker's calls never overlap.
  using Operation = std::function<void(int chain, uint64_t sequence, Done)>;

  static Figures Run(int in_flight, double seconds, uint64_t limit,
                     const Operation& operation) {
    ClosedLoop loop(in_flight, seconds, limit, operation);
    return loop.Wait();
  }

 private:
  ClosedLoop(int in_flight, double seconds, uint64_t limit,
             const Operation& operation)
      : operation_(operation),
        seconds_(seconds),
        limit_(limit),
        start_(Clock::now()),
        active_(in_flight),
        sequences_(in_flight, 0) {
    for (int chain = 0; chain < in_flight; ++chain) Next(chain);
  }

  void Next(int chain) {
    if (SecondsSince(start_) >= seconds_ || started_.fetch_add(1) >= limit_) {
      absl::MutexLock lock(&mu_);
      --active_;
      return;
    }
    const Clock::time_point begun = Clock::now();
    operation_(chain, sequences_[chain]++,
               [this, chain, begun](const grpc::Status& status) {
                 Record(begun, status);
                 Next(chain);
               });
  }

  void Record(Clock::time_point begun, const grpc::Status& status) {
    const double ms = SecondsSince(begun) * 1e3;
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      latencies_ms_.push_back(ms);
    } else {
      if (errors_++ == 0) {
        first_error_ =
            absl::StrCat(status.error_code(), ": ", status.error_message());
      }
    }
  }

  Figures Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* active) { return *active == 0; }, &active_));
    Figures figures;
    figures.seconds = SecondsSince(start_);
    figures.calls = latencies_ms_.size();
    figures.errors = errors_;
    figures.first_error = first_error_;
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    if (!latencies_ms_.empty()) {
      figures.p50_ms = latencies_ms_[latencies_ms_.size() / 2];
      figures.p99_ms = latencies_ms_[latencies_ms_.size() * 99 / 100];
    }
    return figures;
  }

  const Operation& operation_;
  const double seconds_;
  const uint64_t limit_;
  const Clock::time_point start_;
  std::atomic<uint64_t> started_{0};
  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_);
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  uint64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
  // Each touched only by its chain, one call at a time.
  std::vector<uint64_t> sequences_;
};

// A simulated volunteer: its key, and the session Register gave it.
struct SimulatedWorker {
  Ed25519PrivateKey key;
  std::string id;
  std::string session;
  uint64_t counter = 0;  // touched only by the chain that owns the worker

  template <typename Request>
  void Sign(absl::string_view method, Request* request) {
    (void)SignCall(key, method, id, session, ++counter, request);
  }
};

// Unary call state that lives until its callback ran.
template <typename Request, typename Response>
struct UnaryCall {
  grpc::ClientContext context;
  Request request;
  Response response;
};

class LoadClient {
 public:
  // Worker i talks to replica i % channels.size() (its session lives
  // there); health checks go round the replicas.
  LoadClient(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
             int workers) {
    for (const auto& channel : channels) {
      stubs_.push_back(v1::WorkerService::NewStub(channel));
      generics_.push_back(std::make_unique<grpc::GenericStub>(channel));
    }
    workers_.reserve(workers);
    for (int i = 0; i < workers; ++i) {
      std::string seed(32, '\0');
      for (int b = 0; b < 4; ++b) seed[b] = static_cast<char>(i >> (8 * b));
      seed[31] = 'w';
      workers_.push_back({*Ed25519PrivateKey::FromSeed(seed), "", ""});
    }
  }

  int workers() const { return static_cast<int>(workers_.size()); }
  SimulatedWorker& worker(int index) { return workers_[index]; }

  // The worker chain `chain` uses for its `sequence`th operation.
  int WorkerFor(int chain, uint64_t sequence, int in_flight) const {
    const uint64_t per_chain =
        std::max<uint64_t>(1, workers_.size() / in_flight);
    return static_cast<int>((chain + in_flight * (sequence % per_chain)) %
                            workers_.size());
  }

  void HealthCheck(int chain, ClosedLoop::Done done) {
    struct Call {
      grpc::ClientContext context;
      grpc::ByteBuffer request;
      grpc::ByteBuffer response;
    };
    auto* call = new Call;
    // An empty HealthCheckRequest (every service), as one empty slice: a
    // ByteBuffer with no slice at all is not a message.
    grpc::Slice empty("");
    call->request = grpc::ByteBuffer(&empty, 1);
    generics_[chain % generics_.size()]->UnaryCall(
        &call->context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
        &call->request, &call->response, [call, done](grpc::Status status) {
          delete call;
          done(status);
        });
  }

  void Register(const v1::RegisterRequest& request, int index,
                ClosedLoop::Done done) {
    auto* call = new UnaryCall<v1::RegisterRequest, v1::RegisterResponse>;
    call->request = request;
    StubFor(index)->async()->Register(
        &call->context, &call->request, &call->response,
        [this, call, index, done](grpc::Status status) {
          if (status.ok()) {
            workers_[index].id = call->response.worker_id();
            workers_[index].session = call->response.session_id();
          }
          delete call;
          done(status);
        });
  }

  void Heartbeat(int index, const v1::HeartbeatRequest& request,
                 ClosedLoop::Done done) {
    auto* call = new UnaryCall<v1::HeartbeatRequest, v1::HeartbeatResponse>;
    call->request = request;
    StubFor(index)->async()->Heartbeat(&call->context, &call->request,
                                       &call->response,
                                       [call, done](grpc::Status status) {
                                         delete call;
                                         done(status);
                                       });
  }

  // Leases a unit for worker `index`; `then` gets the unit (or an error, or
  // OK with no unit when none was free).
  void Lease(
      int index,
      std::function<void(const grpc::Status&, const v1::WorkUnit*)> then) {
    SimulatedWorker& worker = workers_[index];
    auto* call =
        new UnaryCall<v1::LeaseWorkUnitRequest, v1::LeaseWorkUnitResponse>;
    call->request.set_worker_id(worker.id);
    call->request.set_free_memory_bytes(uint64_t{16} << 30);
    worker.Sign(kLeaseMethod, &call->request);
    StubFor(index)->async()->LeaseWorkUnit(
        &call->context, &call->request, &call->response,
        [call, then](grpc::Status status) {
          const v1::WorkUnit* unit = status.ok() && call->response.has_unit()
                                         ? &call->response.unit()
                                         : nullptr;
          if (status.ok() && unit == nullptr) {
            status = grpc::Status(grpc::StatusCode::NOT_FOUND,
                                  "no unit was free to lease");
          }
          then(status, unit);
          delete call;
        });
  }

  void Release(int index, const std::string& unit_id, ClosedLoop::Done done) {
    SimulatedWorker& worker = workers_[index];
    auto* call =
        new UnaryCall<v1::ReleaseWorkUnitRequest, v1::ReleaseWorkUnitResponse>;
    call->request.set_worker_id(worker.id);
    call->request.set_unit_id(unit_id);
    worker.Sign(kReleaseMethod, &call->request);
    StubFor(index)->async()->ReleaseWorkUnit(&call->context, &call->request,
                                             &call->response,
                                             [call, done](grpc::Status status) {
                                               delete call;
                                               done(status);
                                             });
  }

  // Uploads `delta` for `unit` in one message, signed as the worker binary
  // signs it; OK only when the coordinator accepted it.
  void Upload(int index, const v1::WorkUnit& unit, const std::string& delta,
              const std::string& delta_sha, ClosedLoop::Done done) {
    SimulatedWorker& worker = workers_[index];
    v1::UploadDeltaChunk chunk;
    v1::DeltaHeader& header = *chunk.mutable_header();
    header = DeltaHeaderForUnit(unit, worker.id);
    header.set_content_hash(delta_sha);
    header.set_size_bytes(delta.size());
    header.set_sample_count(4);
    header.set_signature(*SignPayload(worker.key, DeltaSigningPayload(header)));
    chunk.set_offset(0);
    chunk.set_data(delta);
    worker.Sign(kUploadDeltaMethod, &chunk);
    new UploadReactor(StubFor(index), std::move(chunk), std::move(done));
  }

 private:
  class UploadReactor final
      : public grpc::ClientWriteReactor<v1::UploadDeltaChunk> {
   public:
    UploadReactor(v1::WorkerService::Stub* stub, v1::UploadDeltaChunk chunk,
                  ClosedLoop::Done done)
        : chunk_(std::move(chunk)), done_(std::move(done)) {
      stub->async()->UploadDelta(&context_, &response_, this);
      StartWriteLast(&chunk_, grpc::WriteOptions());
      StartCall();
    }
    void OnDone(const grpc::Status& status) override {
      grpc::Status outcome = status;
      if (status.ok() && !response_.accepted()) {
        outcome =
            grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                         absl::StrCat("not accepted: ", response_.message()));
      }
      ClosedLoop::Done done = std::move(done_);
      delete this;
      done(outcome);
    }

   private:
    grpc::ClientContext context_;
    v1::UploadDeltaChunk chunk_;
    v1::UploadDeltaResponse response_;
    ClosedLoop::Done done_;
  };

  v1::WorkerService::Stub* StubFor(int index) {
    return stubs_[index % stubs_.size()].get();
  }

  std::vector<std::unique_ptr<v1::WorkerService::Stub>> stubs_;
  std::vector<std::unique_ptr<grpc::GenericStub>> generics_;
  std::vector<SimulatedWorker> workers_;
};

v1::JobSpec LoadJobSpec(BlobStore* blobs, const testing::DemoTaskFiles& task,
                        uint32_t units) {
  v1::JobSpec spec;
  spec.set_name("load");
  std::vector<ManifestFile> manifest;
  for (const char* name :
       {"config.json", "model.safetensors", "openforce_tokenizer.json"}) {
    const std::string sha = *blobs->PutFile(task.model_dir + "/" + name);
    v1::BlobRef* ref = spec.add_base_model_files();
    ref->set_name(name);
    ref->set_sha256(sha);
    ref->set_size_bytes(*blobs->Size(sha));
    manifest.push_back({name, sha});
  }
  spec.set_base_model_hash(*ModelContentHash(manifest));
  spec.mutable_dataset()->set_sha256(*blobs->PutFile(task.train_path));
  spec.mutable_lora()->set_rank(4);
  spec.mutable_lora()->set_alpha(8);
  spec.mutable_lora()->add_target_modules("q_proj");
  spec.mutable_lora()->add_target_modules("v_proj");
  spec.mutable_training()->set_learning_rate(1e-3);
  spec.mutable_training()->set_steps_per_shard(2);
  spec.mutable_training()->set_batch_size(2);
  spec.mutable_training()->set_sequence_length(12);
  spec.set_rounds(2);
  spec.set_shards_per_round(units);
  spec.set_replication(1);
  spec.set_unit_deadline_s(3600);
  spec.set_max_delta_norm(10);
  spec.set_aggregation("fedavg");
  return spec;
}

// Deltas of the job's LoRA shape, each a little different so that no two
// uploads carry the same bytes.
std::vector<std::string> MakeDeltas(const std::string& dir, int count) {
  lora::LoraConfig lora;
  lora.rank = 4;
  std::vector<std::string> deltas;
  for (int i = 0; i < count; ++i) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, shape] :
         lora::ExpectedAdapterTensors(testing::DemoModelConfig(), lora)) {
      tensors.emplace_back(name, at::full(shape, 0.01f + 1e-4f * i));
    }
    const std::string path = absl::StrCat(dir, "/delta-", i, ".safetensors");
    (void)lora::WriteSafetensors(path, tensors);
    deltas.push_back(*ReadFileToString(path));
  }
  return deltas;
}

void PrintRow(const std::string& operation, const Figures& figures,
              const Figures& health) {
  std::string note;
  if (figures.errors > 0) {
    note = absl::StrCat(figures.errors,
                        " failed, first: ", figures.first_error.substr(0, 90));
  }
  std::printf(
      "| %-24s | %9.0f | %8.2f | %8.2f | %6.3f | %s\n", operation.c_str(),
      figures.PerSecond(), figures.p50_ms, figures.p99_ms,
      health.PerSecond() > 0 ? figures.PerSecond() / health.PerSecond() : 0.0,
      note.c_str());
  std::fflush(stdout);
}

struct Backend {
  std::string name;  // "sqlite" or "postgresql"
  int replicas = 1;
};

absl::Status RunConfiguration(const Backend& backend, int workers,
                              uint32_t units, int in_flight, double seconds) {
  testing::TempDir scratch_dir;
  const std::string scratch = absl::GetFlag(FLAGS_scratch).empty()
                                  ? scratch_dir.path()
                                  : absl::GetFlag(FLAGS_scratch);
  const std::string data_dir =
      absl::StrCat(scratch, "/coordinator-", backend.name, "-", workers, "-",
                   units, "-", backend.replicas);
  RETURN_IF_ERROR(MakeDirectories(data_dir));
  const testing::DemoTaskFiles task =
      testing::WriteDemoTask(scratch + "/task", static_cast<int>(units), 8);
  // The demo task repeats short prompts; a real dataset's shards differ, so
  // each record here is made distinct (identical shards would be stored once
  // and make the submission look cheaper than it is).
  std::vector<lora::TrainingRecord> records =
      testing::DemoTaskRecords(static_cast<int>(units), 1);
  for (size_t i = 0; i < records.size(); ++i)
    records[i].prompt = absl::StrCat(i, ":", records[i].prompt);
  testing::WriteJsonl(task.train_path, records);
  // A throwaway PostgreSQL server on this machine, sharing its cores.
  std::unique_ptr<testing::PostgresServer> postgres;
  std::string postgres_uri;
  if (backend.name == "postgresql") {
    ASSIGN_OR_RETURN(postgres, testing::PostgresServer::Start());
    ASSIGN_OR_RETURN(postgres_uri, postgres->CreateDatabase("load_bench"));
  }
  // Every replica: its own store connection and blob store handle on the
  // shared database and directory, the same identity.
  ASSIGN_OR_RETURN(Ed25519PrivateKey first_identity,
                   Ed25519PrivateKey::Generate());
  ASSIGN_OR_RETURN(const std::string identity_pem, first_identity.ToPem());
  std::vector<std::unique_ptr<Coordinator>> coordinators;
  BlobStore* blob_view = nullptr;
  for (int r = 0; r < backend.replicas; ++r) {
    ASSIGN_OR_RETURN(std::unique_ptr<StateStore> state,
                     backend.name == "postgresql"
                         ? OpenPostgresStateStore(postgres_uri)
                         : OpenSqliteStateStore(data_dir + "/state.db"));
    ASSIGN_OR_RETURN(std::unique_ptr<BlobStore> blobs,
                     BlobStore::Open(data_dir + "/blobs"));
    if (blob_view == nullptr) blob_view = blobs.get();
    ASSIGN_OR_RETURN(Ed25519PrivateKey identity,
                     Ed25519PrivateKey::FromPem(identity_pem));
    CoordinatorOptions options;
    options.data_dir = data_dir;
    ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator,
                     Coordinator::Create(options, std::move(identity),
                                         std::move(state), std::move(blobs)));
    coordinators.push_back(std::move(coordinator));
  }
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = LoadJobSpec(blob_view, task, units);
  const Clock::time_point submit_start = Clock::now();
  ASSIGN_OR_RETURN(v1::SubmitJobResponse submitted,
                   coordinators.front()->SubmitJob(submit));
  const double submit_seconds = SecondsSince(submit_start);

  std::vector<std::unique_ptr<CoordinatorServer>> servers;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (std::unique_ptr<Coordinator>& coordinator : coordinators) {
    ServerOptions server_options;
    server_options.listen_address = "127.0.0.1:0";
    server_options.admin_token = "load-bench-admin-token";
    ASSIGN_OR_RETURN(
        std::unique_ptr<CoordinatorServer> server,
        CoordinatorServer::Start(std::move(coordinator), server_options));
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                     MakeChannel(server->address(), TransportOptions()));
    servers.push_back(std::move(server));
    channels.push_back(std::move(channel));
  }
  LoadClient client(channels, workers);

  std::printf(
      "\n%d workers, %u units per round (%s, %d replica%s): job of %u shards "
      "submitted in %.2f s\n",
      workers, units, backend.name.c_str(), backend.replicas,
      backend.replicas == 1 ? "" : "s", units, submit_seconds);
  std::printf(
      "| %-24s | %9s | %8s | %8s | %6s |\n| --- | --- | --- | --- | --- |\n",
      "operation", "calls/s", "p50 ms", "p99 ms", "/health");

  const Figures health =
      ClosedLoop::Run(in_flight, seconds, UINT64_MAX,
                      [&](int chain, uint64_t, ClosedLoop::Done done) {
                        client.HealthCheck(chain, std::move(done));
                      });
  PrintRow("health check", health, health);

  // Registration: every worker once, proofs signed beforehand.
  std::vector<v1::RegisterRequest> registrations(workers);
  for (int i = 0; i < workers; ++i) {
    SimulatedWorker& worker = client.worker(i);
    v1::RegisterRequest& request = registrations[i];
    request.set_public_key(worker.key.PublicKey().Raw());
    request.mutable_profile()->set_tier(v1::TIER_CPU);
    request.mutable_profile()->set_ram_available_bytes(uint64_t{32} << 30);
    request.set_display_name(absl::StrCat("load-", i));
    const std::string nonce = absl::StrCat("load-bench-nonce-", i);
    request.set_nonce(nonce);
    request.set_proof_of_possession(*worker.key.Sign(
        RegistrationProofMessage(request.public_key(), nonce)));
  }
  std::atomic<int> next_registration{0};
  const Figures registered = ClosedLoop::Run(
      in_flight, 1e9, static_cast<uint64_t>(workers),
      [&](int, uint64_t, ClosedLoop::Done done) {
        const int index = next_registration.fetch_add(1);
        client.Register(registrations[index], index, std::move(done));
      });
  PrintRow("register", registered, health);
  if (registered.errors > 0) {
    return absl::InternalError("registration failed: " +
                               registered.first_error);
  }

  // Heartbeats, signed beforehand, chain by chain so that each worker's
  // counters arrive in order.
  const uint64_t per_chain =
      static_cast<uint64_t>(std::max(1.0, seconds * 40'000 / in_flight));
  std::vector<std::vector<v1::HeartbeatRequest>> heartbeats(in_flight);
  {
    std::vector<std::thread> signers;
    for (int t = 0; t < 2; ++t) {
      signers.emplace_back([&, t] {
        for (int chain = t; chain < in_flight; chain += 2) {
          heartbeats[chain].resize(per_chain);
          for (uint64_t s = 0; s < per_chain; ++s) {
            SimulatedWorker& worker =
                client.worker(client.WorkerFor(chain, s, in_flight));
            v1::HeartbeatRequest& request = heartbeats[chain][s];
            request.set_worker_id(worker.id);
            request.set_availability(v1::AVAILABLE);
            worker.Sign(kHeartbeatMethod, &request);
          }
        }
      });
    }
    for (std::thread& signer : signers) signer.join();
  }
  const Figures beats = ClosedLoop::Run(
      in_flight, seconds, UINT64_MAX,
      [&](int chain, uint64_t sequence, ClosedLoop::Done done) {
        if (sequence >= heartbeats[chain].size()) {
          done(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                            "ran out of pre-signed heartbeats"));
          return;
        }
        client.Heartbeat(client.WorkerFor(chain, sequence, in_flight),
                         heartbeats[chain][sequence], std::move(done));
      });
  PrintRow("heartbeat", beats, health);

  const Figures cycles = ClosedLoop::Run(
      in_flight, seconds, UINT64_MAX,
      [&](int chain, uint64_t sequence, ClosedLoop::Done done) {
        const int index = client.WorkerFor(chain, sequence, in_flight);
        client.Lease(index, [&client, index, done](const grpc::Status& status,
                                                   const v1::WorkUnit* unit) {
          if (!status.ok()) {
            done(status);
            return;
          }
          client.Release(index, unit->unit_id(), done);
        });
      });
  PrintRow("lease + release", cycles, health);

  if (absl::GetFlag(FLAGS_uploads)) {
    const std::vector<std::string> deltas = MakeDeltas(scratch, 64);
    std::vector<std::string> delta_shas;
    for (const std::string& delta : deltas)
      delta_shas.push_back(Sha256Hex(delta));
    std::atomic<uint64_t> next_delta{0};
    const Figures uploads = ClosedLoop::Run(
        in_flight, seconds, units / 2,
        [&](int chain, uint64_t sequence, ClosedLoop::Done done) {
          const int index = client.WorkerFor(chain, sequence, in_flight);
          const size_t which = next_delta.fetch_add(1) % deltas.size();
          client.Lease(index, [&, index, which, done](
                                  const grpc::Status& status,
                                  const v1::WorkUnit* unit) {
            if (!status.ok()) {
              done(status);
              return;
            }
            client.Upload(index, *unit, deltas[which], delta_shas[which], done);
          });
        });
    PrintRow("lease + accepted upload", uploads, health);
  }
  for (auto& server : servers) server->Shutdown();
  return absl::OkStatus();
}

std::vector<int64_t> ParseList(const std::string& text, const char* flag) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(part, &value) || value <= 0) {
      std::fprintf(stderr, "--%s: \"%s\" is not a positive number\n", flag,
                   std::string(part).c_str());
      std::exit(2);
    }
    values.push_back(value);
  }
  return values;
}

// What the signed-call protocol costs on this machine, measured here: each
// worker call is signed by the client and verified by the coordinator, and
// in this bench both share the machine's cores. Prints the throughput those
// signatures alone would allow, the ceiling the rates below are bound by.
void PrintSignatureBound() {
  absl::StatusOr<Ed25519PrivateKey> key = Ed25519PrivateKey::Generate();
  if (!key.ok()) return;
  const Ed25519PublicKey public_key = key->PublicKey();
  const std::string message(160, 'c');  // about a call's signed bytes
  constexpr int kOps = 2000;
  double sign_us = 1e9;
  double verify_us = 1e9;
  std::string signature;
  for (int trial = 0; trial < 3; ++trial) {  // best of three: a shared machine
    Clock::time_point start = Clock::now();
    for (int i = 0; i < kOps; ++i) signature = *key->Sign(message);
    sign_us = std::min(sign_us, SecondsSince(start) * 1e6 / kOps);
    start = Clock::now();
    for (int i = 0; i < kOps; ++i) (void)public_key.Verify(message, signature);
    verify_us = std::min(verify_us, SecondsSince(start) * 1e6 / kOps);
  }
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  std::printf(
      "Ed25519 here: sign %.1f us, verify %.1f us (one core). Signatures "
      "alone bound %d cores to %.0f verified heartbeats/s (signed in "
      "advance) and %.0f lease + release cycles/s (2 signs + 2 verifies)\n",
      sign_us, verify_us, static_cast<int>(cores), cores * 1e6 / verify_us,
      cores * 1e6 / (2 * sign_us + 2 * verify_us));
}

}  // namespace
}  // namespace openforce::coordinator

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using namespace openforce::coordinator;  // NOLINT
  const int in_flight = std::max(1, absl::GetFlag(FLAGS_in_flight));
  std::printf("coordinator load: %d calls in flight, %.1f s per operation\n",
              in_flight, absl::GetFlag(FLAGS_seconds));
  PrintSignatureBound();
  std::vector<Backend> backends;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_backends), ',', absl::SkipEmpty())) {
    if (name != "sqlite" && name != "postgresql") {
      std::fprintf(stderr, "--backends: \"%s\" is not sqlite or postgresql\n",
                   std::string(name).c_str());
      return 2;
    }
    for (int64_t replicas :
         ParseList(absl::GetFlag(FLAGS_replicas), "replicas")) {
      // SQLite is one process's database.
      if (name == "sqlite" && replicas > 1) continue;
      backends.push_back({std::string(name), static_cast<int>(replicas)});
    }
  }
  for (const Backend& backend : backends) {
    for (int64_t workers : ParseList(absl::GetFlag(FLAGS_workers), "workers")) {
      for (int64_t units : ParseList(absl::GetFlag(FLAGS_units), "units")) {
        absl::Status ran = RunConfiguration(
            backend, static_cast<int>(workers), static_cast<uint32_t>(units),
            in_flight, absl::GetFlag(FLAGS_seconds));
        if (!ran.ok()) {
          std::fprintf(stderr, "coordinator_load_bench: %s\n",
                       ran.ToString().c_str());
          return 1;
        }
      }
    }
  }
  return 0;
}
