// End-to-end federated fine-tunes on loopback with the real binaries: rounds
// that learn, every kind of bad delta refused with its status and reason while
// the round goes on, a killed worker's unit leased again, a coordinator killed
// with SIGKILL losing nothing it acknowledged.
#include "tests/integration/federation.h"

#include <signal.h>

#include <filesystem>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/signing_payload.h"
#include "coordinator/sqlite_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lora/dataset.h"
#include "lora/llama_model.h"
#include "lora/lora_adapter.h"
#include "lora/tokenizer.h"
#include "lora/trainer.h"
#include "proto/signing_convert.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;

bool Succeeded(const v1::JobStatus& job) {
  return job.state() == v1::JOB_SUCCEEDED || job.state() == v1::JOB_FAILED ||
         job.state() == v1::JOB_CANCELLED;
}

double HeldOutLoss(const DemoTaskFiles& task, const std::string& adapter_dir) {
  lora::LoadOptions options;
  auto model = lora::LlamaModel::Load(task.model_dir, options);
  EXPECT_OK(model);
  auto records = lora::ReadJsonl(task.held_out_path);
  EXPECT_OK(records);
  lora::ByteTokenizer tokenizer;
  lora::TokenizeOptions tokenize;
  tokenize.sequence_length = 12;
  auto examples = lora::TokenizeRecords(*records, tokenizer, tokenize);
  EXPECT_OK(examples);
  std::optional<lora::LoraAdapter> adapter;
  if (!adapter_dir.empty()) {
    auto loaded = lora::LoraAdapter::Load(adapter_dir, (*model)->config());
    EXPECT_OK(loaded);
    adapter = *std::move(loaded);
  }
  auto loss =
      lora::EvaluateLoss(**model, adapter ? &*adapter : nullptr, *examples, 32);
  EXPECT_OK(loss);
  return *loss;
}

TEST(FederationTest, ThreeWorkersTwoRoundsLearnTheTaskAndThePullVerifies) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  const std::string job = federation.Submit(federation.DemoSpec(2, 3, 40));
  federation.StartWorker("w1", {"--max-memory", "8GiB"});
  federation.StartWorker("w2", {"--max-memory", "8GiB"});
  federation.StartWorker("w3");
  const v1::JobStatus status = federation.WaitForJob(job, Succeeded, 300);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << status.DebugString();
  ASSERT_EQ(status.rounds_size(), 2);
  for (const v1::RoundStatus& round : status.rounds()) {
    EXPECT_EQ(round.units_accepted(), 3u);
    EXPECT_EQ(round.units_rejected(), 0u);
    EXPECT_EQ(round.adapter_version(), round.round());
  }
  EXPECT_LT(status.rounds(1).mean_train_loss(),
            status.rounds(0).mean_train_loss());
  // All three workers took part.
  auto workers = federation.admin().ListWorkers(true);
  ASSERT_OK(workers);
  ASSERT_EQ(workers->size(), 3u);
  for (const v1::WorkerStatus& worker : *workers)
    EXPECT_GE(worker.units_accepted(), 1u) << worker.display_name();

  // The published adapter's signature verifies with the coordinator's key.
  auto stub = federation.WorkerStub();
  grpc::ClientContext context;
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job);
  v1::GetLatestAdapterResponse response;
  ASSERT_TRUE(stub->GetLatestAdapter(&context, request, &response).ok());
  const v1::SignedAdapter& adapter = response.adapter();
  EXPECT_EQ(adapter.version(), 2u);
  EXPECT_EQ(adapter.parent_version(), 1u);
  auto key =
      Ed25519PublicKey::LoadPemFile(federation.data_dir() + "/coordinator.pub");
  ASSERT_OK(key);
  SigningPayload payload = AdapterSigningPayload(adapter);
  EXPECT_OK(VerifyPayloadSignature(*key, payload, adapter.signature()));
  payload.round = 1;  // the same signature does not vouch for another version
  EXPECT_THAT(VerifyPayloadSignature(*key, payload, adapter.signature()),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));

  // pull writes PEFT files that load, and the fine-tuned model is clearly
  // better on held-out prompts than the base.
  const std::string out = dir.path() + "/pulled";
  ProcessResult pull =
      RunProcess({OPENFORCE_WORKER_PATH, "pull", "--coordinator",
                  federation.address(), "--job", job, "--coordinator-key",
                  federation.data_dir() + "/coordinator.pub", "--out", out});
  ASSERT_EQ(pull.exit_code, 0) << pull.stderr_text;
  EXPECT_THAT(pull.stdout_text, HasSubstr("adapter version 2"));
  const double base_loss = HeldOutLoss(federation.task(), "");
  const double tuned_loss = HeldOutLoss(federation.task(), out);
  EXPECT_LT(tuned_loss, 0.5 * base_loss)
      << "base " << base_loss << " tuned " << tuned_loss;

  // A key that is not the coordinator's is refused and nothing is written.
  auto other = Ed25519PrivateKey::Generate();
  ASSERT_OK(other);
  auto other_pem = other->PublicKey().ToPem();
  ASSERT_OK(other_pem);
  ASSERT_OK(WriteFileAtomically(dir.path() + "/other.pub", *other_pem));
  ProcessResult forged_pin = RunProcess(
      {OPENFORCE_WORKER_PATH, "pull", "--coordinator", federation.address(),
       "--job", job, "--coordinator-key", dir.path() + "/other.pub", "--out",
       dir.path() + "/not-pulled"});
  EXPECT_EQ(forged_pin.exit_code, 1);
  EXPECT_THAT(forged_pin.stderr_text, HasSubstr("not signed by the pinned"));
  EXPECT_FALSE(std::filesystem::exists(
      dir.path() + "/not-pulled/adapter_model.safetensors"));
}

TEST(FederationTest, RefusesBadDeltasWithTheirReasonAndTheRoundGoesOn) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment", "--max-upload", "1MiB"});
  const std::string job = federation.Submit(federation.DemoSpec(2, 1, 10));
  const std::string other_job =
      federation.Submit(federation.DemoSpec(1, 1, 10));
  auto stub = federation.WorkerStub();
  const std::string good = MakeDeltaBytes(dir.path(), 8, 0.001f);

  ScriptedWorker holder(stub.get(), 1);
  ASSERT_TRUE(holder.Register().ok());
  const v1::WorkUnit unit = holder.Lease();
  ASSERT_EQ(unit.job_id(), job);
  ASSERT_EQ(unit.round(), 1u);

  struct Case {
    const char* what;
    grpc::StatusCode code;
    v1::RejectReason reason;
  };
  auto expect_refused = [&](const ScriptedWorker::UploadResult& result,
                            const Case& expected) {
    EXPECT_EQ(result.status.error_code(), expected.code)
        << expected.what << ": " << result.status.error_message();
    EXPECT_EQ(result.reason, expected.reason)
        << expected.what << ": " << v1::RejectReason_Name(result.reason);
    EXPECT_FALSE(result.response.accepted()) << expected.what;
  };

  // Forged: signed by a key that is not the holder's.
  ScriptedWorker forger(stub.get(), 2);
  expect_refused(
      holder.Upload(holder.MakeHeader(unit, good, &forger.key()), good),
      {"forged signature", grpc::StatusCode::UNAUTHENTICATED,
       v1::REJECT_BAD_SIGNATURE});
  // Unknown worker id.
  ScriptedWorker unknown(stub.get(), 3);
  unknown.set_id("w-0000000000000000");
  expect_refused(unknown.Upload(unknown.MakeHeader(unit, good), good),
                 {"unknown worker", grpc::StatusCode::UNAUTHENTICATED,
                  v1::REJECT_UNKNOWN_WORKER});
  // Another job's delta: the header (signed) names the other job.
  {
    v1::WorkUnit other = unit;
    other.set_job_id(other_job);
    expect_refused(holder.Upload(holder.MakeHeader(other, good), good),
                   {"another job", grpc::StatusCode::FAILED_PRECONDITION,
                    v1::REJECT_WRONG_JOB});
  }
  // The lease is held by another worker.
  ScriptedWorker intruder(stub.get(), 4);
  ASSERT_TRUE(intruder.Register().ok());
  expect_refused(intruder.Upload(intruder.MakeHeader(unit, good), good),
                 {"lease held by another", grpc::StatusCode::PERMISSION_DENIED,
                  v1::REJECT_LEASE_NOT_HELD});
  // Over the size limit (the coordinator accepts at most 1 MiB).
  {
    v1::DeltaHeader header = holder.MakeHeader(unit, good);
    header.set_size_bytes(2u << 20);
    holder.Sign(&header);
    expect_refused(holder.Upload(header, good),
                   {"oversize", grpc::StatusCode::RESOURCE_EXHAUSTED,
                    v1::REJECT_TOO_LARGE});
  }
  // Bytes that do not hash to the signed content hash.
  {
    std::string tampered = good;
    tampered[tampered.size() - 1] ^= 1;
    expect_refused(holder.Upload(holder.MakeHeader(unit, good), tampered),
                   {"hash mismatch", grpc::StatusCode::DATA_LOSS,
                    v1::REJECT_HASH_MISMATCH});
  }
  // A chunk that does not continue the upload.
  expect_refused(
      holder.Upload(holder.MakeHeader(unit, good), good, 7),
      {"bad offset", grpc::StatusCode::OUT_OF_RANGE, v1::REJECT_BAD_OFFSET});

  // Content the holder signed but that is wrong: each sends the unit back to
  // pending for someone else.
  int seed = 10;
  auto content_case = [&](const std::string& bytes, const Case& expected) {
    ScriptedWorker sender(stub.get(), seed++);
    ASSERT_TRUE(sender.Register().ok());
    // The holder gives its lease back so that the sender can take it.
    const v1::WorkUnit leased = sender.Lease();
    ASSERT_EQ(leased.unit_id(), unit.unit_id()) << expected.what;
    expect_refused(sender.Upload(sender.MakeHeader(leased, bytes), bytes),
                   expected);
  };
  ASSERT_TRUE(holder.Release(unit.unit_id()).ok());
  content_case(MakeDeltaBytes(dir.path(), 4, 0.001f),
               {"wrong shapes", grpc::StatusCode::INVALID_ARGUMENT,
                v1::REJECT_BAD_SHAPE});
  content_case(
      MakeDeltaBytes(dir.path(), 8, std::nanf("")),
      {"NaN", grpc::StatusCode::INVALID_ARGUMENT, v1::REJECT_NON_FINITE});
  content_case(MakeDeltaBytes(dir.path(), 8, 1.0f),
               {"norm above the bound", grpc::StatusCode::INVALID_ARGUMENT,
                v1::REJECT_NORM_TOO_LARGE});

  // The round is unaffected: a good delta is accepted and closes it.
  ScriptedWorker honest(stub.get(), 99);
  ASSERT_TRUE(honest.Register().ok());
  const v1::WorkUnit honest_unit = honest.Lease();
  ASSERT_EQ(honest_unit.unit_id(), unit.unit_id());
  const v1::DeltaHeader round_one = honest.MakeHeader(honest_unit, good);
  ScriptedWorker::UploadResult accepted = honest.Upload(round_one, good);
  ASSERT_TRUE(accepted.status.ok()) << accepted.status.error_message();
  EXPECT_TRUE(accepted.response.accepted());
  // Sending it again is acknowledged again, not counted twice.
  ScriptedWorker::UploadResult again = honest.Upload(round_one, good);
  EXPECT_TRUE(again.status.ok() && again.response.accepted());
  const v1::JobStatus status = federation.WaitForJob(
      job, [](const v1::JobStatus& s) { return s.current_round() == 2; }, 30);
  ASSERT_EQ(status.current_round(), 2u);
  EXPECT_EQ(status.rounds(0).units_accepted(), 1u);
  EXPECT_EQ(status.rounds(0).units_rejected(), 3u);
  EXPECT_EQ(status.rounds(0).adapter_version(), 1u);

  // The round-1 delta replayed into round 2 is refused.
  ScriptedWorker::UploadResult replay = honest.Upload(round_one, good);
  expect_refused(replay,
                 {"replay from round 1", grpc::StatusCode::FAILED_PRECONDITION,
                  v1::REJECT_WRONG_ROUND});
}

// A community fine-tune on conversations: the model ships a chat template,
// the dataset is OpenAI/TRL-style {"messages"} JSONL, real workers render
// and train on it and the round's adapter is accepted.
TEST(FederationTest, TrainsOnConversationsWithTheModelsChatTemplate) {
  TempDir dir;
  Federation federation(dir.path());
  ASSERT_OK(WriteFileAtomically(
      federation.task().model_dir + "/chat_template.jinja",
      "{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' %}"
      "{{ eos_token }}{% endif %}{% endfor %}"));
  ASSERT_OK(WriteFileAtomically(
      federation.task().model_dir + "/tokenizer_config.json",
      R"({"eos_token": "</s>"})"));
  absl::StatusOr<std::vector<lora::TrainingRecord>> records =
      lora::ReadJsonl(federation.task().train_path);
  ASSERT_OK(records);
  std::string conversations;
  for (const lora::TrainingRecord& record : *records) {
    conversations +=
        nlohmann::json{
            {"messages",
             {{{"role", "user"}, {"content", record.prompt}},
              {{"role", "assistant"}, {"content", record.completion}}}}}
            .dump() +
        "\n";
  }
  const std::string dataset = dir.path() + "/conversations.jsonl";
  ASSERT_OK(WriteFileAtomically(dataset, conversations));
  federation.StartCoordinator({"--open-enrollment"});
  const std::string job =
      federation.Submit(federation.DemoSpec(1, 2, 10), dataset);
  ChildProcess& worker = federation.StartWorker("chatty");
  const v1::JobStatus status = federation.WaitForJob(job, Succeeded, 240);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << worker.Log();
  EXPECT_EQ(status.rounds(0).units_accepted(), 2u);
}

TEST(FederationTest, RealWorkersReplicasAgreeAndTheValidationSplitScores) {
  // Replication 2 with the worker binary: replicas of a shard are the same
  // work on two machines' worth of processes, so they agree (bitwise on one
  // machine), every result is validated, and each round's candidate is
  // scored on the held-out split by validation units the workers run (two
  // replicas, which agree) before it is published.
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  v1::JobSpec spec = federation.DemoSpec(2, 2, 15);
  spec.set_replication(2);
  spec.set_validation_fraction(0.2);
  const std::string job = federation.Submit(spec);
  ChildProcess& first = federation.StartWorker("r1");
  ChildProcess& second = federation.StartWorker("r2");
  const v1::JobStatus status = federation.WaitForJob(job, Succeeded, 300);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED)
      << status.DebugString() << first.Log() << second.Log();
  EXPECT_EQ(status.spec().aggregation(),
            "svd+clip:2+direction+centered_clip:1");  // the default
  ASSERT_EQ(status.rounds_size(), 2);
  for (const v1::RoundStatus& round : status.rounds()) {
    EXPECT_EQ(round.units_accepted(), 4u);
    EXPECT_EQ(round.units_rejected(), 0u);
    EXPECT_GT(round.validation_loss(), 0);
    EXPECT_EQ(round.validation_retries(), 0u);
    EXPECT_EQ(round.validation_units_reported(), 2u);
    EXPECT_EQ(round.validation_units_open(), 0u);
  }
  EXPECT_THAT(first.Log(), HasSubstr("validation of"));
  EXPECT_THAT(second.Log(), HasSubstr("validation of"));
  // Each round learned on the held-out split.
  EXPECT_LT(status.rounds(0).validation_loss(),
            status.rounds(0).parent_validation_loss());
  EXPECT_LT(status.rounds(1).validation_loss(),
            status.rounds(0).validation_loss());
  auto workers = federation.admin().ListWorkers(true);
  ASSERT_OK(workers);
  ASSERT_EQ(workers->size(), 2u);
  for (const v1::WorkerStatus& worker : *workers) {
    // A replica of each shard and one validation unit per round each, all
    // agreeing.
    EXPECT_EQ(worker.units_accepted(), 6u) << worker.display_name();
    EXPECT_EQ(worker.validated_streak(), worker.units_accepted())
        << worker.display_name();
    EXPECT_EQ(worker.units_invalid(), 0u);
    EXPECT_GT(worker.credit_flop(), 0);
  }
  // Agreeing replicas count once.
  auto stub = federation.WorkerStub();
  grpc::ClientContext context;
  v1::GetLatestAdapterRequest request;
  request.set_job_id(job);
  v1::GetLatestAdapterResponse response;
  ASSERT_TRUE(stub->GetLatestAdapter(&context, request, &response).ok());
  EXPECT_EQ(response.adapter().metrics().at("deltas"), 2);
}

TEST(FederationTest, AKilledWorkersUnitIsLeasedAgainAfterItsDeadline) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  v1::JobSpec spec = federation.DemoSpec(1, 2, 80);
  spec.set_unit_deadline_s(15);
  const std::string job = federation.Submit(spec);
  ChildProcess& doomed = federation.StartWorker("doomed");
  const v1::JobStatus leased = federation.WaitForJob(
      job,
      [](const v1::JobStatus& s) {
        return s.rounds_size() > 0 && s.rounds(0).units_leased() == 1;
      },
      60);
  ASSERT_EQ(leased.rounds(0).units_leased(), 1u) << doomed.Log();
  doomed.Signal(SIGKILL);
  ASSERT_EQ(doomed.Wait(), 128 + SIGKILL);
  // The unit stays leased to the dead worker until its deadline passes.
  auto during = federation.admin().GetJob(job);
  ASSERT_OK(during);
  EXPECT_EQ(during->rounds(0).units_leased(), 1u);

  ChildProcess& survivor = federation.StartWorker("survivor");
  const v1::JobStatus status = federation.WaitForJob(job, Succeeded, 240);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED) << survivor.Log();
  EXPECT_EQ(status.rounds(0).units_accepted(), 2u);
  auto workers = federation.admin().ListWorkers(true);
  ASSERT_OK(workers);
  for (const v1::WorkerStatus& worker : *workers) {
    EXPECT_EQ(worker.units_accepted(),
              worker.display_name() == "survivor" ? 2u : 0u);
  }
}

TEST(FederationTest, CoordinatorKilledWithSigkillLosesNothingAcknowledged) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  const std::string listen = federation.address();
  const std::string job = federation.Submit(federation.DemoSpec(2, 3, 60));
  std::vector<ChildProcess*> workers = {&federation.StartWorker("w1"),
                                        &federation.StartWorker("w2")};
  const v1::JobStatus before = federation.WaitForJob(
      job,
      [](const v1::JobStatus& s) {
        return s.rounds_size() > 0 && s.rounds(0).units_accepted() >= 1;
      },
      120);
  ASSERT_GE(before.rounds(0).units_accepted(), 1u);
  federation.coordinator().Signal(SIGKILL);
  ASSERT_EQ(federation.coordinator().Wait(), 128 + SIGKILL);
  // What the workers were told was accepted before the kill.
  std::set<std::string> acknowledged;
  const std::regex accepted_line("delta for (\\S+) accepted");
  for (ChildProcess* worker : workers) {
    const std::string log = worker->Log();
    for (std::sregex_iterator it(log.begin(), log.end(), accepted_line), end;
         it != end; ++it) {
      acknowledged.insert((*it)[1]);
    }
  }
  ASSERT_FALSE(acknowledged.empty());
  sleep(2);  // the workers notice and back off
  federation.StartCoordinator({"--open-enrollment"}, listen);
  const v1::JobStatus status = federation.WaitForJob(job, Succeeded, 300);
  ASSERT_EQ(status.state(), v1::JOB_SUCCEEDED)
      << status.DebugString() << workers[0]->Log();
  for (const v1::RoundStatus& round : status.rounds()) {
    EXPECT_EQ(round.units_accepted(), 3u);  // never more: nothing counted twice
  }
  federation.coordinator().Signal(SIGTERM);
  EXPECT_EQ(federation.coordinator().Wait(), 0);

  // Every delta acknowledged before the kill is in the state, accepted, with
  // exactly one accepted result per unit.
  auto state =
      coordinator::OpenSqliteStateStore(federation.data_dir() + "/state.db");
  ASSERT_OK(state);
  for (const std::string& unit_id : acknowledged) {
    auto result = (*state)->GetAcceptedResult(unit_id);
    ASSERT_OK(result);
    EXPECT_TRUE(result->has_value()) << unit_id << " was lost";
  }
  for (uint64_t round = 1; round <= 2; ++round) {
    auto results = (*state)->ListResults(job, round);
    ASSERT_OK(results);
    std::set<std::string> units;
    for (const auto& result : *results) {
      if (result.accepted) {
        EXPECT_TRUE(units.insert(result.unit_id).second) << result.unit_id;
      }
    }
    EXPECT_EQ(units.size(), 3u);
  }
}

}  // namespace
}  // namespace openforce::testing

namespace openforce::testing {
namespace {

TEST(WorkerLifecycleTest, SigtermCheckpointsAndGivesTheLeaseBack) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  const std::string job = federation.Submit(federation.DemoSpec(1, 1, 5000));
  ChildProcess& worker = federation.StartWorker("w1");
  const v1::JobStatus leased = federation.WaitForJob(
      job,
      [&](const v1::JobStatus&) {
        return worker.Log().find("step 1000/5000") != std::string::npos;
      },
      120);
  ASSERT_EQ(leased.rounds(0).units_leased(), 1u) << worker.Log();
  worker.Signal(SIGTERM);
  EXPECT_EQ(worker.Wait(30), 0) << worker.Log();
  EXPECT_THAT(worker.Log(),
              HasSubstr("checkpoint saved; giving the lease back"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/w1/units/" + job +
                                      "-r1-s0-p0/checkpoint"));
  // Released at once, not at the deadline.
  auto status = federation.admin().GetJob(job);
  ASSERT_OK(status);
  EXPECT_EQ(status->rounds(0).units_leased(), 0u);
  EXPECT_EQ(status->rounds(0).units_pending(), 1u);
}

TEST(WorkerLifecycleTest, AWorkerStartedBeforeItsCoordinatorRetriesAndJoins) {
  TempDir dir;
  Federation federation(dir.path());
  // Reserve a port by starting and stopping a coordinator on it.
  federation.StartCoordinator({"--open-enrollment"});
  const std::string address = federation.address();
  federation.coordinator().Signal(SIGTERM);
  ASSERT_EQ(federation.coordinator().Wait(), 0);
  ChildProcess& worker = federation.StartWorker("early");
  // Starting libtorch takes a while on a loaded machine: wait for the first
  // retry to be logged rather than a fixed time.
  for (int i = 0;
       i < 300 && worker.Log().find("retrying in") == std::string::npos; ++i) {
    usleep(100 * 1000);
  }
  EXPECT_THAT(worker.Log(), HasSubstr("coordinator unavailable"));
  EXPECT_THAT(worker.Log(), HasSubstr("retrying in"));
  EXPECT_TRUE(worker.running());
  federation.StartCoordinator({"--open-enrollment"}, address);
  const std::string job = federation.Submit(federation.DemoSpec(1, 1, 5));
  const v1::JobStatus status = federation.WaitForJob(job, Succeeded, 120);
  EXPECT_EQ(status.state(), v1::JOB_SUCCEEDED) << worker.Log();
}

// `openforce-coordinator ARGS` as the federation's operator runs it.
ProcessResult RunAdminCli(const Federation& federation,
                          std::vector<std::string> args) {
  args.insert(args.begin(), OPENFORCE_COORDINATOR_PATH);
  for (const std::string& flag :
       {std::string("--coordinator"), federation.address(),
        std::string("--data"), federation.data_dir()})
    args.push_back(flag);
  return RunProcess(args);
}

TEST(AdminCliTest, SubmitStatusListWorkersAndCancel) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  auto cli = [&](const std::vector<std::string>& args) {
    return RunAdminCli(federation, args);
  };
  ProcessResult submitted = cli({"job",         "submit",
                                 "--name",      "cli-job",
                                 "--model",     federation.task().model_dir,
                                 "--dataset",   federation.task().train_path,
                                 "--rounds",    "4",
                                 "--shards",    "2",
                                 "--steps",     "3",
                                 "--batch",     "4",
                                 "--seq-len",   "12",
                                 "--lora-rank", "4"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.stderr_text;
  const std::string job =
      submitted.stdout_text.substr(0, submitted.stdout_text.find('\n'));
  EXPECT_THAT(job, ::testing::StartsWith("job-"));

  ProcessResult status = cli({"job", "status", job});
  ASSERT_EQ(status.exit_code, 0) << status.stderr_text;
  EXPECT_THAT(status.stdout_text, HasSubstr("cli-job"));
  EXPECT_THAT(status.stdout_text, HasSubstr("running, round 1 of 4"));
  EXPECT_THAT(status.stdout_text, HasSubstr("round  pending  leased"));
  ProcessResult json = cli({"job", "status", job, "--json"});
  EXPECT_THAT(json.stdout_text, HasSubstr("\"units_pending\": 2"));
  ProcessResult list = cli({"job", "list"});
  EXPECT_THAT(list.stdout_text, HasSubstr(job));

  federation.StartWorker("w1", {"--max-units", "1"});
  EXPECT_EQ(federation
                .WaitForJob(
                    job,
                    [](const v1::JobStatus& s) {
                      return s.rounds(0).units_accepted() >= 1;
                    },
                    60)
                .rounds(0)
                .units_accepted(),
            1u);
  ProcessResult workers = cli({"workers", "--all"});
  EXPECT_THAT(workers.stdout_text, HasSubstr("w1"));
  EXPECT_THAT(workers.stdout_text, HasSubstr("cpu"));
  // The store holds the model, dataset, shards and adapters; the accepted
  // delta's upload was committed, so nothing is left partial.
  ProcessResult store = cli({"store"});
  ASSERT_EQ(store.exit_code, 0) << store.stderr_text;
  EXPECT_THAT(store.stdout_text, HasSubstr("partial uploads  0 (0 B)"));
  ProcessResult store_json = cli({"store", "--json"});
  EXPECT_THAT(store_json.stdout_text, HasSubstr("\"blob_count\""));

  ProcessResult cancelled =
      cli({"job", "cancel", job, "--reason", "done testing"});
  EXPECT_EQ(cancelled.exit_code, 0) << cancelled.stderr_text;
  EXPECT_THAT(cli({"job", "status", job}).stdout_text,
              HasSubstr("cancelled by an operator: done testing"));
  ProcessResult again = cli({"job", "cancel", job});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.stderr_text, HasSubstr("already JOB_CANCELLED"));
  ProcessResult missing = cli({"job", "status", "job-nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.stderr_text, HasSubstr("no job 'job-nope'"));
  ProcessResult bad_dataset =
      cli({"job", "submit", "--model", federation.task().model_dir, "--dataset",
           dir.path() + "/missing.jsonl"});
  EXPECT_EQ(bad_dataset.exit_code, 1);
  EXPECT_THAT(bad_dataset.stderr_text, HasSubstr("missing.jsonl"));
}

// QLoRA through the command line: `job submit --base-quantization` records
// the quantized base's hash (and with --quantized-cache leaves the cache next
// to the model); a worker quantizes the same way, matches the hash, keeps its
// own cache, and its delta is accepted.
TEST(AdminCliTest, AQuantizedBaseIsRecordedAndItsWorkersMatchIt) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  auto cli = [&](const std::vector<std::string>& args) {
    return RunAdminCli(federation, args);
  };
  ProcessResult submitted = cli({"job",
                                 "submit",
                                 "--model",
                                 federation.task().model_dir,
                                 "--dataset",
                                 federation.task().train_path,
                                 "--rounds",
                                 "1",
                                 "--shards",
                                 "1",
                                 "--steps",
                                 "3",
                                 "--batch",
                                 "4",
                                 "--seq-len",
                                 "12",
                                 "--lora-rank",
                                 "4",
                                 "--base-quantization",
                                 "q8",
                                 "--quantized-cache"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.stderr_text;
  const std::string job =
      submitted.stdout_text.substr(0, submitted.stdout_text.find('\n'));
  const std::string marker = "quantized base (q8): sha256 ";
  const size_t at = submitted.stderr_text.find(marker);
  ASSERT_NE(at, std::string::npos) << submitted.stderr_text;
  const std::string sha = submitted.stderr_text.substr(at + marker.size(), 64);
  EXPECT_TRUE(std::filesystem::exists(federation.task().model_dir +
                                      "/openforce-quantized-q8.safetensors"));
  ProcessResult json = cli({"job", "status", job, "--json"});
  EXPECT_THAT(json.stdout_text,
              HasSubstr("\"quantized_base_sha256\": \"" + sha + "\""));
  EXPECT_THAT(json.stdout_text, HasSubstr("BASE_FORMAT_Q8"));

  federation.StartWorker("w1", {"--max-units", "1"});
  const v1::JobStatus status = federation.WaitForJob(
      job,
      [](const v1::JobStatus& s) { return s.rounds(0).units_accepted() >= 1; },
      90);
  EXPECT_EQ(status.rounds(0).units_accepted(), 1u);
  // The worker's copy of the base now has its own cache.
  bool cached = false;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(
           dir.path() + "/w1/models")) {
    cached |= entry.path().filename() == "openforce-quantized-q8.safetensors";
  }
  EXPECT_TRUE(cached);
}

}  // namespace
}  // namespace openforce::testing
