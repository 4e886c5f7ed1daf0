// openforce-coordinator: the operator's binary. Subcommands:
//   keygen                 create the coordinator's Ed25519 identity under
//                          --data and print the fingerprint workers pin
//   serve                  run the coordinator (state and blobs under --data)
//   job submit|status|list|cancel, workers
//                          admin calls to a running coordinator
//   simulate               a federated job in one process (simulated
//                          workers, optional attacks) next to a centralized
//                          run, to choose an aggregation rule
// Flags may also come from a JSON config file (--config); the command line
// wins.
#include <signal.h>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/blob_store.h"
#include "common/byte_size.h"
#include "common/command_line.h"
#include "common/config_file.h"
#include "common/file_util.h"
#include "common/secret_token.h"
#include "common/status_macros.h"
#include "common/termination_signals.h"
#include "common/tier.h"
#include "common/weight_format.h"
#include "coordinator/admin_client.h"
#include "coordinator/coordinator.h"
#include "coordinator/identity.h"
#include "coordinator/postgres_state_store.h"
#include "coordinator/server.h"
#include "coordinator/simulation.h"
#include "coordinator/sqlite_state_store.h"
#include "google/protobuf/util/json_util.h"
#include "lora/checkpoint.h"
#include "lora/compute_device.h"

ABSL_FLAG(std::string, config, "",
          "JSON config file whose keys are this binary's flag names");
ABSL_FLAG(std::string, data, "",
          "data directory: state, blobs, tokens and the identity key");
// serve
ABSL_FLAG(std::string, listen, "127.0.0.1:7443",
          "serve: address to listen on (port 0 picks a free one)");
ABSL_FLAG(std::string, tls_cert, "", "serve: PEM certificate chain for TLS");
ABSL_FLAG(std::string, tls_key, "", "serve: PEM private key for TLS");
ABSL_FLAG(std::string, tls_ca, "",
          "admin commands: PEM CA certificate that signed the coordinator's");
ABSL_FLAG(bool, insecure, false,
          "allow plaintext on a non-loopback address (traffic readable and "
          "alterable by the network)");
ABSL_FLAG(std::string, admin_token_file, "",
          "file holding the admin token (default DATA/admin.token; serve "
          "creates it)");
ABSL_FLAG(std::string, enrollment_token_file, "",
          "serve: file holding the worker enrollment token (default "
          "DATA/enrollment.token, created when missing)");
ABSL_FLAG(bool, open_enrollment, false,
          "serve: let any worker register without an enrollment token");
ABSL_FLAG(uint32_t, heartbeat_interval_ms, 10000,
          "serve: how often workers heartbeat");
ABSL_FLAG(uint32_t, worker_timeout_s, 60,
          "serve: a worker silent this long gets no new lease");
ABSL_FLAG(uint32_t, max_leases_per_worker, 1,
          "serve: concurrent leases one worker may hold in one job (a job's "
          "own setting wins)");
ABSL_FLAG(uint32_t, lease_grace_ms, 0,
          "serve: a lease whose worker sent no heartbeat for this long goes "
          "back to pending (0: three heartbeat intervals, at least 5 s)");
ABSL_FLAG(uint32_t, max_open_uploads, 4,
          "serve: partial delta uploads one worker may have open");
ABSL_FLAG(uint32_t, upload_expiry_s, 3600,
          "serve: partial uploads idle this long are removed (also at start)");
ABSL_FLAG(uint32_t, stream_idle_timeout_s, 60,
          "serve: an upload or fetch stream idle this long is cancelled");
ABSL_FLAG(uint32_t, max_streams, 1024,
          "serve: upload and fetch streams open at once");
ABSL_FLAG(std::string, state, "",
          "serve: where state lives: empty for SQLite in <data>/state.db, or "
          "a postgresql:// URI shared by several coordinator replicas (which "
          "then share one --data directory on a shared filesystem)");
ABSL_FLAG(std::string, metrics_listen, "",
          "serve: host:port for Prometheus metrics over HTTP at /metrics "
          "(port 0 picks a free one, written to <data>/metrics.address); "
          "empty: off. Bind it to loopback or a private network");
ABSL_FLAG(double, min_norm, 0,
          "job submit: L2 floor below which a delta shows no training "
          "(0: 1e-6)");
ABSL_FLAG(double, min_norm_fraction, 0,
          "job submit: deltas below this fraction of the round's median norm "
          "are left out of the aggregate (0: 0.1)");
ABSL_FLAG(uint32_t, lease_retry_ms, 5000,
          "serve: how long a worker waits when nothing fits it");
ABSL_FLAG(openforce::ByteSize, max_upload, openforce::ByteSize{256ull << 20},
          "serve: largest delta accepted");
ABSL_FLAG(openforce::ByteSize, max_blob, openforce::ByteSize{64ull << 30},
          "serve: largest model or dataset file accepted");
// admin commands
ABSL_FLAG(std::string, coordinator, "127.0.0.1:7443",
          "admin commands: the coordinator's address");
ABSL_FLAG(bool, json, false, "admin commands: print JSON");
ABSL_FLAG(std::string, name, "", "job submit: a name for people");
ABSL_FLAG(std::string, model, "", "job submit: base model directory");
ABSL_FLAG(std::string, dataset, "",
          "job submit: JSONL of {\"text\"} or {\"prompt\",\"completion\"}");
ABSL_FLAG(uint32_t, rounds, 3, "job submit: federated rounds");
ABSL_FLAG(uint32_t, shards, 3, "job submit: shards (work units) per round");
ABSL_FLAG(uint32_t, replication, 1,
          "job submit: distinct workers that train each shard");
ABSL_FLAG(int32_t, lora_rank, 8, "job submit: LoRA rank r");
ABSL_FLAG(double, lora_alpha, 16, "job submit: LoRA alpha");
ABSL_FLAG(double, lora_dropout, 0.0, "job submit: LoRA dropout");
ABSL_FLAG(std::vector<std::string>, lora_targets,
          std::vector<std::string>({"q_proj", "v_proj"}),
          "job submit: projections to wrap, e.g. q_proj,k_proj,v_proj,o_proj");
ABSL_FLAG(int32_t, steps, 50, "job submit: optimizer steps per shard");
ABSL_FLAG(double, learning_rate, 2e-4, "job submit: AdamW peak learning rate");
ABSL_FLAG(int32_t, batch, 8, "job submit: sequences per batch");
ABSL_FLAG(int32_t, seq_len, 256, "job submit: tokens per sequence");
ABSL_FLAG(int32_t, warmup_steps, 0, "job submit: linear warmup steps");
ABSL_FLAG(bool, gradient_checkpointing, false,
          "job submit: every worker recomputes layer activations in backward "
          "(without it, only workers that would not fit otherwise do)");
ABSL_FLAG(double, max_grad_norm, 1.0, "job submit: gradient clipping");
ABSL_FLAG(uint64_t, seed, 0,
          "job submit: seed for adapter init and data order");
ABSL_FLAG(std::string, min_tier, "cpu",
          "job submit: lowest worker tier (cpu, gpu-small, gpu-mid, "
          "gpu-large, datacenter)");
ABSL_FLAG(uint32_t, unit_deadline_s, 1800, "job submit: lease length");
ABSL_FLAG(uint32_t, round_deadline_s, 0,
          "job submit: aggregate with what arrived after this (0: wait for "
          "every unit)");
ABSL_FLAG(uint32_t, min_results, 0,
          "job submit: results a round needs at its deadline (0: all units)");
ABSL_FLAG(double, max_norm, 100.0, "job submit: L2 bound on one delta");
ABSL_FLAG(std::string, aggregation, "",
          "job submit: aggregation rule, '<exact>[+clip[:m]][+direction]"
          "[+median|+trimmed_mean[:beta]|+krum[:f]|+centered_clip[:tau]]' "
          "with exact one of fedavg, ffa, svd; empty: the default, "
          "svd+clip:2+direction+centered_clip:1");
ABSL_FLAG(std::string, base_quantization, "none",
          "job submit: the base's projections quantized at load on every "
          "worker (QLoRA): none, q8, q4 or nf4; a 7B job then fits 16 GB "
          "laptops (q8) and 8 GB GPUs (q4, nf4)");
ABSL_FLAG(bool, quantized_cache, false,
          "job submit with --base-quantization: write the quantized base "
          "next to the model (openforce-quantized-<format>.safetensors) so "
          "the next submit maps it instead of quantizing again");
ABSL_FLAG(int32_t, workers, 10, "simulate: simulated workers (one shard each)");
ABSL_FLAG(double, dirichlet_alpha, 0,
          "simulate: non-IID split, Dirichlet alpha over record classes "
          "(completions); 0: IID");
ABSL_FLAG(double, hostile_fraction, 0.3,
          "simulate: fraction of workers that attack (with --attack)");
ABSL_FLAG(std::string, attack, "none",
          "simulate: none, absent (hostile workers deliver nothing), scale, "
          "sign_flip, noise, zero, claimed_samples");
ABSL_FLAG(std::string, validation, "",
          "simulate: JSONL scored each round (default: a held-out split)");
ABSL_FLAG(double, validation_fraction, 0,
          "job submit and simulate: fraction of the dataset held out for "
          "validation, never trained on (simulate without --validation: 0 "
          "means 0.1)");
ABSL_FLAG(double, validation_tolerance, 0,
          "job submit: a round's aggregate whose validation loss is worse than "
          "its parent's by more than this (relative; 0: 0.05) is aggregated "
          "again without outliers");
ABSL_FLAG(double, replica_tolerance, 0,
          "job submit: relative distance under which replicas agree (0: "
          "0.02)");
ABSL_FLAG(bool, centralized, true,
          "simulate: also run the centralized baseline");
ABSL_FLAG(int32_t, threads, 1, "simulate: CPU threads");
ABSL_FLAG(std::string, reason, "", "job cancel: why, for the record");
ABSL_FLAG(bool, all, false, "workers: include workers that went silent");

namespace openforce::coordinator {
namespace {

constexpr char kUsage[] =
    "openforce-coordinator: run a community LoRA fine-tune.\n"
    "\n"
    "usage: openforce-coordinator <command> [flags]\n"
    "commands:\n"
    "  keygen --data DIR                create the coordinator identity and "
    "print its\n"
    "                                   fingerprint, which workers pin\n"
    "  serve --data DIR [--listen ADDR] run the coordinator (TLS with "
    "--tls-cert/--tls-key;\n"
    "                                   plaintext only on loopback or with "
    "--insecure)\n"
    "  job submit --model DIR --dataset FILE [--rounds N --shards N ...]\n"
    "  job status ID | job list | job cancel ID [--reason TEXT]\n"
    "  workers [--all]                  registered workers\n"
    "  store                            blob store size and partial uploads\n"
    "  simulate --model DIR --dataset FILE [--workers N --rounds N\n"
    "           --aggregation RULE --dirichlet-alpha A --attack KIND\n"
    "           --hostile-fraction F ...]  a federated job in one process\n"
    "admin commands take --coordinator ADDR and --admin-token-file FILE\n"
    "(default DATA/admin.token with --data).\n";

const std::vector<std::string> kConfigKeys = {"data",
                                              "listen",
                                              "tls_cert",
                                              "tls_key",
                                              "tls_ca",
                                              "insecure",
                                              "admin_token_file",
                                              "enrollment_token_file",
                                              "open_enrollment",
                                              "heartbeat_interval_ms",
                                              "worker_timeout_s",
                                              "lease_retry_ms",
                                              "max_upload",
                                              "max_blob",
                                              "max_leases_per_worker",
                                              "lease_grace_ms",
                                              "max_open_uploads",
                                              "upload_expiry_s",
                                              "stream_idle_timeout_s",
                                              "max_streams",
                                              "metrics_listen",
                                              "state",
                                              "coordinator"};

std::string DataPath(const std::string& name) {
  return absl::StrCat(absl::GetFlag(FLAGS_data), "/", name);
}

TransportOptions Transport() {
  TransportOptions transport;
  transport.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  transport.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  transport.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  transport.insecure = absl::GetFlag(FLAGS_insecure);
  return transport;
}

absl::Status RequireData() {
  if (absl::GetFlag(FLAGS_data).empty())
    return absl::InvalidArgumentError("--data DIR is required");
  return absl::OkStatus();
}

absl::Status RunKeygen() {
  RETURN_IF_ERROR(RequireData());
  const std::string data_dir = absl::GetFlag(FLAGS_data);
  ASSIGN_OR_RETURN(Ed25519PublicKey public_key, CreateIdentity(data_dir));
  std::cout << "private key  " << PrivateKeyPath(data_dir) << " (mode 0600)\n"
            << "public key   " << PublicKeyPath(data_dir) << "\n"
            << "fingerprint  " << public_key.Fingerprint() << "\n";
  return absl::OkStatus();
}

// SQLite under --data unless --state names a PostgreSQL database.
absl::StatusOr<std::unique_ptr<StateStore>> OpenStateStore() {
  const std::string state = absl::GetFlag(FLAGS_state);
  if (state.empty()) return OpenSqliteStateStore(DataPath("state.db"));
  if (!IsPostgresConninfo(state)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--state must be empty (SQLite in the data directory) or a "
        "postgresql:// URI, not \"",
        state, "\""));
  }
  return OpenPostgresStateStore(state);
}

absl::Status RunServe() {
  // SIGINT/SIGTERM are handled on this thread; they are blocked before
  // libtorch or gRPC start threads (which inherit the mask) so that none of
  // those receives them.
  const sigset_t signals = BlockTerminationSignals();
  RETURN_IF_ERROR(RequireData());
  const std::string data_dir = absl::GetFlag(FLAGS_data);
  absl::StatusOr<Ed25519PrivateKey> identity = LoadIdentity(data_dir);
  if (absl::IsNotFound(identity.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no coordinator identity in ", data_dir,
        "; run `openforce-coordinator keygen --data ", data_dir, "` first"));
  }
  RETURN_IF_ERROR(identity.status());
  std::string admin_file = absl::GetFlag(FLAGS_admin_token_file);
  if (admin_file.empty()) admin_file = DataPath("admin.token");
  ASSIGN_OR_RETURN(std::string admin_token, LoadOrCreateTokenFile(admin_file));
  CoordinatorOptions options;
  options.data_dir = data_dir;
  if (!absl::GetFlag(FLAGS_open_enrollment)) {
    std::string file = absl::GetFlag(FLAGS_enrollment_token_file);
    if (file.empty()) file = DataPath("enrollment.token");
    ASSIGN_OR_RETURN(options.enrollment_token, LoadOrCreateTokenFile(file));
  }
  options.heartbeat_interval_ms = absl::GetFlag(FLAGS_heartbeat_interval_ms);
  options.worker_timeout_ms = 1000 * absl::GetFlag(FLAGS_worker_timeout_s);
  options.lease_retry_ms = absl::GetFlag(FLAGS_lease_retry_ms);
  options.max_upload_bytes = absl::GetFlag(FLAGS_max_upload).bytes;
  options.max_blob_bytes = absl::GetFlag(FLAGS_max_blob).bytes;
  options.max_leases_per_worker = absl::GetFlag(FLAGS_max_leases_per_worker);
  options.lease_heartbeat_grace_ms = absl::GetFlag(FLAGS_lease_grace_ms);
  options.max_open_uploads_per_worker = absl::GetFlag(FLAGS_max_open_uploads);
  options.upload_expiry_ms =
      int64_t{1000} * absl::GetFlag(FLAGS_upload_expiry_s);
  ASSIGN_OR_RETURN(std::unique_ptr<StateStore> state, OpenStateStore());
  BlobStoreOptions blob_options;
  blob_options.max_blob_bytes =
      std::max(options.max_blob_bytes, options.max_upload_bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<BlobStore> blobs,
                   BlobStore::Open(DataPath("blobs"), blob_options));
  RETURN_IF_ERROR(lora::SetCpuThreads(1));  // aggregation only; serve others
  const std::string fingerprint = identity->PublicKey().Fingerprint();
  ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator,
                   Coordinator::Create(options, *std::move(identity),
                                       std::move(state), std::move(blobs)));
  ServerOptions server_options;
  server_options.listen_address = absl::GetFlag(FLAGS_listen);
  server_options.transport = Transport();
  server_options.admin_token = admin_token;
  server_options.streams.idle_timeout_ms =
      int64_t{1000} * absl::GetFlag(FLAGS_stream_idle_timeout_s);
  server_options.streams.max_open_streams = absl::GetFlag(FLAGS_max_streams);
  server_options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);

  ASSIGN_OR_RETURN(
      std::unique_ptr<CoordinatorServer> server,
      CoordinatorServer::Start(std::move(coordinator), server_options));
  if (!server->metrics_address().empty()) {
    RETURN_IF_ERROR(WriteFileAtomically(DataPath("metrics.address"),
                                        server->metrics_address() + "\n"));
  }
  RETURN_IF_ERROR(WriteFileAtomically(DataPath("coordinator.address"),
                                      server->address() + "\n"));
  std::cout << "openforce-coordinator listening on " << server->address()
            << (Transport().tls_cert_file.empty() ? " (plaintext)" : " (TLS)")
            << "\n  identity fingerprint " << fingerprint
            << "\n  admin token file     " << admin_file
            << (server->metrics_address().empty()
                    ? ""
                    : "\n  metrics              http://" +
                          server->metrics_address() + "/metrics")
            << "\n  enrollment "
            << (options.enrollment_token.empty() ? "open" : "needs a token")
            << std::endl;
  WaitForTerminationSignal(signals);
  std::cout << "openforce-coordinator: shutting down" << std::endl;
  server->Shutdown();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<AdminClient>> ConnectAdmin() {
  std::string token_file = absl::GetFlag(FLAGS_admin_token_file);
  if (token_file.empty() && !absl::GetFlag(FLAGS_data).empty())
    token_file = DataPath("admin.token");
  if (token_file.empty()) {
    return absl::InvalidArgumentError(
        "give --admin-token-file FILE (or --data DIR of the coordinator)");
  }
  ASSIGN_OR_RETURN(std::string token, ReadTokenFile(token_file));
  return AdminClient::Connect(absl::GetFlag(FLAGS_coordinator), Transport(),
                              token);
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// The LoRA and training settings `job submit` and `simulate` share.
absl::Status FillTrainingFromFlags(v1::JobSpec* spec) {
  v1::LoraConfig* lora = spec->mutable_lora();
  lora->set_rank(absl::GetFlag(FLAGS_lora_rank));
  lora->set_alpha(absl::GetFlag(FLAGS_lora_alpha));
  lora->set_dropout(absl::GetFlag(FLAGS_lora_dropout));
  for (const std::string& target : absl::GetFlag(FLAGS_lora_targets))
    lora->add_target_modules(target);
  v1::TrainingConfig* training = spec->mutable_training();
  training->set_learning_rate(absl::GetFlag(FLAGS_learning_rate));
  training->set_steps_per_shard(absl::GetFlag(FLAGS_steps));
  training->set_batch_size(absl::GetFlag(FLAGS_batch));
  training->set_sequence_length(absl::GetFlag(FLAGS_seq_len));
  training->set_seed(absl::GetFlag(FLAGS_seed));
  training->set_warmup_steps(absl::GetFlag(FLAGS_warmup_steps));
  training->set_max_grad_norm(absl::GetFlag(FLAGS_max_grad_norm));
  training->set_compute_dtype(v1::DTYPE_FLOAT32);
  ASSIGN_OR_RETURN(const WeightFormat base_format,
                   ParseWeightFormat(absl::GetFlag(FLAGS_base_quantization)));
  training->set_base_format(static_cast<v1::BaseFormat>(base_format));
  training->set_gradient_checkpointing(
      absl::GetFlag(FLAGS_gradient_checkpointing));
  return absl::OkStatus();
}

absl::Status RunSimulate() {
  SimulationOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.dataset_path = absl::GetFlag(FLAGS_dataset);
  if (options.model_dir.empty() || options.dataset_path.empty())
    return absl::InvalidArgumentError("simulate needs --model and --dataset");
  v1::JobSpec spec;
  RETURN_IF_ERROR(FillTrainingFromFlags(&spec));
  options.lora = spec.lora();
  options.training = spec.training();
  options.validation_path = absl::GetFlag(FLAGS_validation);
  options.validation_fraction = absl::GetFlag(FLAGS_validation_fraction) > 0
                                    ? absl::GetFlag(FLAGS_validation_fraction)
                                    : 0.1;
  options.workers = absl::GetFlag(FLAGS_workers);
  options.rounds = static_cast<int>(absl::GetFlag(FLAGS_rounds));
  options.dirichlet_alpha = absl::GetFlag(FLAGS_dirichlet_alpha);
  ASSIGN_OR_RETURN(options.attack, ParseAttack(absl::GetFlag(FLAGS_attack)));
  options.hostile_fraction = options.attack == Attack::kNone
                                 ? 0.0
                                 : absl::GetFlag(FLAGS_hostile_fraction);
  options.max_delta_norm = absl::GetFlag(FLAGS_max_norm);
  options.aggregation = absl::GetFlag(FLAGS_aggregation);
  options.centralized = absl::GetFlag(FLAGS_centralized);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.log = [](const std::string& line) { std::cerr << line << "\n"; };
  ASSIGN_OR_RETURN(SimulationResult result, RunSimulation(options));
  std::cout << FormatSimulation(result);
  return absl::OkStatus();
}

absl::Status RunJobSubmit(AdminClient& client) {
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string dataset = absl::GetFlag(FLAGS_dataset);
  if (model.empty() || dataset.empty())
    return absl::InvalidArgumentError("job submit needs --model and --dataset");
  v1::JobSpec spec;
  spec.set_name(absl::GetFlag(FLAGS_name).empty() ? "fine-tune"
                                                  : absl::GetFlag(FLAGS_name));
  RETURN_IF_ERROR(FillTrainingFromFlags(&spec));
  if (spec.training().base_format() != v1::BASE_FORMAT_UNSPECIFIED) {
    // Before uploading gigabytes: weights that cannot be quantized fail here.
    lora::LoadOptions load;
    load.quantization =
        static_cast<WeightFormat>(spec.training().base_format());
    load.write_quantized_cache = absl::GetFlag(FLAGS_quantized_cache);
    ASSIGN_OR_RETURN(const std::string sha256,
                     lora::QuantizedBaseSha256OfModel(model, load));
    spec.mutable_training()->set_quantized_base_sha256(sha256);
    std::cerr << "quantized base (" << WeightFormatName(load.quantization)
              << "): sha256 " << sha256 << "\n";
  }
  RETURN_IF_ERROR(client.UploadModel(model, &spec));
  ASSIGN_OR_RETURN(*spec.mutable_dataset(), client.UploadFile(dataset));
  spec.set_rounds(absl::GetFlag(FLAGS_rounds));
  spec.set_shards_per_round(absl::GetFlag(FLAGS_shards));
  spec.set_replication(absl::GetFlag(FLAGS_replication));
  ASSIGN_OR_RETURN(Tier tier, ParseTier(absl::GetFlag(FLAGS_min_tier)));
  spec.set_min_tier(static_cast<v1::Tier>(static_cast<int>(tier)));
  spec.set_unit_deadline_s(absl::GetFlag(FLAGS_unit_deadline_s));
  spec.set_round_deadline_s(absl::GetFlag(FLAGS_round_deadline_s));
  spec.set_min_results_per_round(absl::GetFlag(FLAGS_min_results));
  spec.set_max_delta_norm(absl::GetFlag(FLAGS_max_norm));
  spec.set_min_delta_norm(absl::GetFlag(FLAGS_min_norm));
  spec.set_min_norm_fraction(absl::GetFlag(FLAGS_min_norm_fraction));
  spec.set_aggregation(absl::GetFlag(FLAGS_aggregation));
  spec.set_validation_fraction(absl::GetFlag(FLAGS_validation_fraction));
  spec.set_validation_tolerance(absl::GetFlag(FLAGS_validation_tolerance));
  spec.set_replica_tolerance(absl::GetFlag(FLAGS_replica_tolerance));
  ASSIGN_OR_RETURN(std::string job_id, client.SubmitJob(spec));
  std::cout << job_id << "\n";
  return absl::OkStatus();
}

absl::Status RunAdmin(const std::vector<std::string>& args) {
  ASSIGN_OR_RETURN(std::unique_ptr<AdminClient> client, ConnectAdmin());
  const bool json = absl::GetFlag(FLAGS_json);
  if (args[0] == "store") {
    if (args.size() != 1)
      return absl::InvalidArgumentError("store takes no arguments");
    ASSIGN_OR_RETURN(v1::GetStoreStatusResponse status,
                     client->GetStoreStatus());
    std::cout << (json ? ToJson(status) : FormatStoreStatus(status));
    return absl::OkStatus();
  }
  if (args[0] == "workers") {
    if (args.size() != 1)
      return absl::InvalidArgumentError("workers takes no arguments");
    ASSIGN_OR_RETURN(std::vector<v1::WorkerStatus> workers,
                     client->ListWorkers(absl::GetFlag(FLAGS_all)));
    if (json) {
      v1::ListWorkersResponse response;
      for (auto& worker : workers) *response.add_workers() = worker;
      std::cout << ToJson(response);
    } else {
      const int64_t now =
          std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count();
      std::cout << FormatWorkers(workers, now);
    }
    return absl::OkStatus();
  }
  if (args.size() < 2)
    return absl::InvalidArgumentError("job needs a subcommand");
  const std::string& sub = args[1];
  if (sub == "submit" && args.size() == 2) return RunJobSubmit(*client);
  if (sub == "list" && args.size() == 2) {
    ASSIGN_OR_RETURN(std::vector<v1::JobStatus> jobs, client->ListJobs());
    if (json) {
      v1::ListJobsResponse response;
      for (auto& job : jobs) *response.add_jobs() = job;
      std::cout << ToJson(response);
    } else {
      std::cout << FormatJobList(jobs);
    }
    return absl::OkStatus();
  }
  if (sub == "status" && args.size() == 3) {
    ASSIGN_OR_RETURN(v1::JobStatus job, client->GetJob(args[2]));
    std::cout << (json ? ToJson(job) : FormatJobStatus(job));
    return absl::OkStatus();
  }
  if (sub == "cancel" && args.size() == 3) {
    ASSIGN_OR_RETURN(v1::JobState state,
                     client->CancelJob(args[2], absl::GetFlag(FLAGS_reason)));
    std::cout << args[2] << " " << v1::JobState_Name(state) << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      "usage: job submit | job status ID | job list | job cancel ID");
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  ArgvBuffer normalized(NormalizeFlagNames(argc, argv));
  std::vector<char*> args =
      absl::ParseCommandLine(normalized.argc(), normalized.argv());
  if (const std::string config = absl::GetFlag(FLAGS_config); !config.empty()) {
    absl::Status applied = ApplyConfigFile(
        config, kConfigKeys,
        FlagsNamedOnCommandLine(normalized.argc(), normalized.argv()));
    if (!applied.ok()) {
      std::cerr << "openforce-coordinator: " << applied.message() << "\n";
      return 2;
    }
  }
  if (args.size() < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::vector<std::string> words(args.begin() + 1, args.end());
  const std::string& command = words[0];
  absl::Status status;
  if (command == "keygen" && words.size() == 1) {
    status = RunKeygen();
  } else if (command == "serve" && words.size() == 1) {
    status = RunServe();
  } else if (command == "simulate" && words.size() == 1) {
    status = RunSimulate();
  } else if (command == "job" || command == "workers" || command == "store") {
    status = RunAdmin(words);
  } else {
    std::cerr << "openforce-coordinator: unknown command '" << command
              << "'\n\n"
              << kUsage;
    return 2;
  }
  if (!status.ok()) {
    std::cerr << "openforce-coordinator " << command << ": " << status << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace openforce::coordinator

int main(int argc, char** argv) {
  return openforce::coordinator::Main(argc, argv);
}
