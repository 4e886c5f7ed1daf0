// The binaries as people run them: `openforce-worker probe` (text, --json,
// --config), `openforce-coordinator keygen` and `simulate`, with their exit
// codes and error messages.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/byte_size.h"
#include "common/ed25519.h"
#include "common/hardware_profile.h"
#include "tests/testing/demo_task.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace openforce {
namespace {

using ::openforce::testing::RunProcess;
using ::testing::HasSubstr;

constexpr char kWorker[] = OPENFORCE_WORKER_PATH;
constexpr char kCoordinator[] = OPENFORCE_COORDINATOR_PATH;

TEST(WorkerProbeCliTest, JsonDescribesThisMachine) {
  testing::ProcessResult run = RunProcess(
      {kWorker, "probe", "--json", "--headroom=6GiB", "--threads=1"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const nlohmann::json json = nlohmann::json::parse(run.stdout_text);

  absl::StatusOr<HardwareProfile> profile = ProbeHardware();
  ASSERT_OK(profile);
  EXPECT_EQ(json["cpu"]["logical_cores"], profile->cpu.logical_cores);
  EXPECT_EQ(json["cpu"]["physical_cores"], profile->cpu.physical_cores);
  EXPECT_EQ(json["cpu"]["avx2"], profile->cpu.avx2);
  EXPECT_EQ(json["memory"]["total_bytes"], profile->memory.total_bytes);
  EXPECT_EQ(json["tier"], profile->gpus.empty() ? "cpu" : json["tier"]);
  EXPECT_EQ(json["libtorch"]["cpu_threads"], 1);
  ASSERT_EQ(json["gemm"].size(), 2u);
  EXPECT_EQ(json["gemm"][0]["dtype"], "float32");
  EXPECT_EQ(json["gemm"][1]["dtype"], "bfloat16");
  EXPECT_GT(json["gemm"][0]["gflops"].get<double>(), 0.0);
  EXPECT_EQ(json["advisor"]["headroom_bytes"], 6 * kGiB);
  if (json["advisor"]["device"] == "cpu") {
    EXPECT_EQ(json["advisor"]["budget_bytes"],
              profile->memory.total_bytes - 6 * kGiB);
  }
  EXPECT_FALSE(json["advisor"]["models"].empty());
}

TEST(WorkerProbeCliTest, TextReportNamesTierAndAdvice) {
  testing::ProcessResult run =
      RunProcess({kWorker, "probe", "--measure=false"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_THAT(run.stdout_text, HasSubstr("openforce hardware probe"));
  EXPECT_THAT(run.stdout_text, HasSubstr("tier"));
  EXPECT_THAT(run.stdout_text, HasSubstr("largest model class"));
  EXPECT_THAT(run.stdout_text, ::testing::Not(HasSubstr("GEMM")));
}

TEST(WorkerProbeCliTest, ConfigFileSetsFlagsAndTheCommandLineWins) {
  testing::TempDir dir;
  const std::string config = dir.WriteFile(
      "worker.json", R"({"headroom": "5GiB", "measure": false, "json": true})");
  testing::ProcessResult run =
      RunProcess({kWorker, "probe", "--config=" + config});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  nlohmann::json json = nlohmann::json::parse(run.stdout_text);
  EXPECT_EQ(json["advisor"]["headroom_bytes"], 5 * kGiB);
  EXPECT_TRUE(json["gemm"].empty());

  run =
      RunProcess({kWorker, "probe", "--config", config, "--headroom", "7GiB"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  json = nlohmann::json::parse(run.stdout_text);
  EXPECT_EQ(json["advisor"]["headroom_bytes"], 7 * kGiB);
}

TEST(WorkerProbeCliTest, BadConfigAndFlagsFailWithMessagesNamingThem) {
  testing::TempDir dir;
  const std::string typo = dir.WriteFile("typo.json", R"({"headrom": "5GiB"})");
  testing::ProcessResult run =
      RunProcess({kWorker, "probe", "--config=" + typo});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.stderr_text, HasSubstr("unknown key 'headrom'"));
  EXPECT_TRUE(run.stdout_text.empty());

  const std::string bad = dir.WriteFile("bad.json", R"({"threads": "lots"})");
  run = RunProcess({kWorker, "probe", "--config=" + bad});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.stderr_text, HasSubstr("key 'threads'"));

  run = RunProcess({kWorker, "probe", "--headroom=plenty"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.stderr_text, HasSubstr("plenty"));

  run = RunProcess({kWorker, "probe", "--threads=-2", "--measure=false"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("thread count"));

  run = RunProcess({kWorker, "donate-everything"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.stderr_text,
              HasSubstr("unknown command 'donate-everything'"));
}

TEST(WorkerProbeCliTest, PicksFastBlasKernelsByItself) {
  // Same machine, same binary: without the variable the binary relaunches
  // itself with the core its CPU deserves, so its fp32 GEMM is not slower than
  // with the core forced.
  testing::ProcessResult run =
      RunProcess({kWorker, "probe", "--json", "--measure=false"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const std::string core =
      nlohmann::json::parse(run.stdout_text)["libtorch"]["openblas_core"];
  EXPECT_NE(core, "Prescott");
  EXPECT_FALSE(core.empty());
}

TEST(CoordinatorKeygenCliTest, CreatesIdentityOnceAndPrintsItsFingerprint) {
  testing::TempDir dir;
  const std::string data = dir.Join("coord");
  testing::ProcessResult run =
      RunProcess({kCoordinator, "keygen", "--data=" + data});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  absl::StatusOr<Ed25519PublicKey> public_key =
      Ed25519PublicKey::LoadPemFile(data + "/coordinator.pub");
  ASSERT_OK(public_key);
  EXPECT_THAT(run.stdout_text,
              HasSubstr("fingerprint  " + public_key->Fingerprint()));
  struct stat info;
  ASSERT_EQ(::stat((data + "/coordinator.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600);

  run = RunProcess({kCoordinator, "keygen", "--data=" + data});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("already exists"));

  run = RunProcess({kCoordinator, "keygen"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("--data"));
}

TEST(CoordinatorKeygenCliTest, DataDirectoryMayComeFromTheConfigFile) {
  testing::TempDir dir;
  const std::string config = dir.WriteFile(
      "coordinator.json", "{\"data\": \"" + dir.Join("from-config") + "\"}");
  testing::ProcessResult run =
      RunProcess({kCoordinator, "keygen", "--config=" + config});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_OK(
      Ed25519PrivateKey::LoadPemFile(dir.Join("from-config/coordinator.key")));
}

TEST(CoordinatorSimulateCliTest, PrintsEachRoundNextToTheCentralizedRun) {
  testing::TempDir dir;
  const testing::DemoTaskFiles task =
      testing::WriteDemoTask(dir.path(), 60, 16);
  const std::vector<std::string> common = {kCoordinator,
                                           "simulate",
                                           "--model",
                                           task.model_dir,
                                           "--dataset",
                                           task.train_path,
                                           "--workers",
                                           "4",
                                           "--rounds",
                                           "2",
                                           "--steps",
                                           "2",
                                           "--batch",
                                           "4",
                                           "--seq-len",
                                           "12",
                                           "--learning-rate",
                                           "1e-2",
                                           "--lora-rank",
                                           "4",
                                           "--validation-fraction",
                                           "0.2"};
  std::vector<std::string> args = common;
  args.insert(args.end(), {"--aggregation", "svd+krum:1", "--attack",
                           "sign_flip", "--hostile-fraction", "0.25"});
  testing::ProcessResult run = RunProcess(args);
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_THAT(run.stdout_text, HasSubstr("aggregation svd+krum:1"));
  EXPECT_THAT(run.stdout_text, HasSubstr("hostile workers: "));
  EXPECT_THAT(run.stdout_text,
              HasSubstr("round  validation_loss  centralized"));
  EXPECT_THAT(run.stdout_text, HasSubstr("\n    2  "));
  EXPECT_THAT(run.stderr_text, HasSubstr("round 2: validation loss"));

  args = common;
  args.insert(args.end(), {"--attack", "ddos"});
  run = RunProcess(args);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("unknown attack 'ddos'"));
  run = RunProcess({kCoordinator, "simulate", "--model", task.model_dir});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.stderr_text, HasSubstr("--dataset"));
}

}  // namespace
}  // namespace openforce
