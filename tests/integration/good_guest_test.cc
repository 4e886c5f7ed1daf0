// The worker as a guest on someone's machine, with real processes: a real
// CPU load started beside it pauses training within 2 seconds and its end
// resumes it from the checkpoint; a worker killed mid-unit and restarted
// finishes the unit with the same delta as an uninterrupted run; `status`
// reads what a running worker does. These tests measure the machine's load,
// so ctest runs them alone (RUN_SERIAL).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "coordinator/sqlite_state_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/federation.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace openforce::testing {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// Polls `log` until it contains `text`; the seconds it took, or -1.
double WaitForLog(const ChildProcess& process, const std::string& text,
                  double timeout_seconds, size_t from = 0) {
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() <
         timeout_seconds) {
    const std::string log = process.Log();
    if (log.size() > from && log.find(text, from) != std::string::npos) {
      return std::chrono::duration<double>(Clock::now() - start).count();
    }
    usleep(20 * 1000);
  }
  return -1;
}

// Polls the worker's status file until it reports at least `step`.
bool WaitForStep(const std::string& data_dir, int64_t step,
                 double timeout_seconds) {
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() <
         timeout_seconds) {
    absl::StatusOr<std::string> text =
        ReadFileToString(data_dir + "/status.json");
    if (text.ok()) {
      const nlohmann::json json = nlohmann::json::parse(*text, nullptr, false);
      if (!json.is_discarded() && json.value("step", int64_t{0}) >= step)
        return true;
    }
    usleep(50 * 1000);
  }
  return false;
}

// The status file as the worker wrote it, read without starting a process
// (which would itself be load the worker sees).
nlohmann::json StatusFile(const std::string& data_dir) {
  absl::StatusOr<std::string> text =
      ReadFileToString(data_dir + "/status.json");
  EXPECT_OK(text);
  return nlohmann::json::parse(text.ok() ? *text : "{}");
}

// What `openforce-worker status --json` prints.
nlohmann::json Status(const std::string& data_dir) {
  ProcessResult status = RunProcess(
      {OPENFORCE_WORKER_PATH, "status", "--data", data_dir, "--json"});
  EXPECT_EQ(status.exit_code, 0) << status.stderr_text;
  return nlohmann::json::parse(status.stdout_text);
}

std::string AcceptedContentHash(const std::string& state_db,
                                const std::string& job_id) {
  auto state = coordinator::OpenSqliteStateStore(state_db);
  EXPECT_OK(state);
  auto results = (*state)->ListResults(job_id, 1);
  EXPECT_OK(results);
  for (const auto& result : *results) {
    if (result.accepted) return result.header.content_hash();
  }
  return "";
}

TEST(GoodGuestTest, RealLoadPausesWithinTwoSecondsAndItsEndResumes) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  const std::string job = federation.Submit(federation.DemoSpec(1, 1, 100000));
  ChildProcess& worker = federation.StartWorker(
      "guest", {"--max-other-cpu", "0.5", "--idle-for", "1s"});
  const std::string data = dir.path() + "/guest";
  ASSERT_TRUE(WaitForStep(data, 200, 120)) << worker.Log();
  nlohmann::json training = StatusFile(data);
  ASSERT_EQ(training["state"], "training") << worker.Log();
  EXPECT_EQ(training["job_id"], job);
  EXPECT_GT(training["step"].get<int64_t>(), 0);
  EXPECT_EQ(training["total_steps"], 100000);
  EXPECT_GT(training["tokens_per_second"].get<double>(), 0);
  EXPECT_GT(training["eta_seconds"].get<double>(), 0);
  EXPECT_EQ(training["tier"], "cpu");

  // Somebody starts using the machine: one busy process per core.
  const size_t before = worker.Log().size();
  std::vector<std::unique_ptr<ChildProcess>> load;
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  for (long i = 0; i < cores; ++i) {
    load.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{"/bin/sh", "-c", "while :; do :; done"},
        dir.path() + "/load.log"));
  }
  const double paused_after = WaitForLog(
      worker, "checkpoint saved; paused: other programs use", 10, before);
  ASSERT_GE(paused_after, 0) << worker.Log().substr(before);
  EXPECT_LT(paused_after, 2.0) << "paused after " << paused_after << " s";
  std::cout << "paused " << paused_after << " s after the load started\n";
  usleep(700 * 1000);  // the status file follows within a quarter second
  nlohmann::json paused = Status(data);
  EXPECT_EQ(paused["state"], "paused");
  EXPECT_THAT(paused["reason"].get<std::string>(),
              HasSubstr("of the CPU (limit 50%)"));
  const int64_t paused_step = paused["step"].get<int64_t>();
  sleep(2);
  EXPECT_EQ(StatusFile(data)["step"].get<int64_t>(), paused_step)
      << "trained while paused";
  auto during = federation.admin().GetJob(job);
  ASSERT_OK(during);
  EXPECT_EQ(during->rounds(0).units_leased(), 1u);  // the lease is kept

  // The owner is done: after a second of idle the unit resumes from its
  // checkpoint.
  const size_t before_resume = worker.Log().size();
  load.clear();  // SIGKILL
  const double resumed_after =
      WaitForLog(worker, "from its checkpoint", 15, before_resume);
  ASSERT_GE(resumed_after, 0) << worker.Log().substr(before_resume);
  std::cout << "resumed " << resumed_after << " s after the load ended\n";
  ASSERT_TRUE(WaitForStep(data, paused_step + 50, 30)) << worker.Log();
  usleep(1500 * 1000);
  EXPECT_GT(StatusFile(data)["step"].get<int64_t>(), paused_step);
  EXPECT_EQ(StatusFile(data)["state"], "training");

  worker.Signal(SIGTERM);
  EXPECT_EQ(worker.Wait(30), 0);
  nlohmann::json stopped = Status(data);
  EXPECT_EQ(stopped["state"], "not running");
  ProcessResult text =
      RunProcess({OPENFORCE_WORKER_PATH, "status", "--data", data});
  EXPECT_THAT(text.stdout_text, HasSubstr("not running"));
}

TEST(GoodGuestTest, PausedPastTheLeaseGivesTheUnitBack) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  v1::JobSpec spec = federation.DemoSpec(1, 1, 100000);
  spec.set_unit_deadline_s(40);  // release margin: 30 s before the deadline
  const std::string job = federation.Submit(spec);
  ChildProcess& worker = federation.StartWorker("guest");
  ASSERT_TRUE(WaitForStep(dir.path() + "/guest", 60, 120)) << worker.Log();
  worker.Signal(SIGKILL);
  worker.Wait();
  ChildProcess& picky = federation.StartWorker(
      "guest", {"--max-other-cpu", "0", "--idle-for", "10m"});
  // Restarted with a policy that never allows work now: it keeps its saved
  // lease paused, then gives it back well before the deadline.
  const double released = WaitForLog(picky, "allows; giving it back", 60);
  ASSERT_GE(released, 0) << picky.Log();
  // The worker logs just before its Release call: wait for the coordinator
  // to have it.
  const v1::JobStatus status = federation.WaitForJob(
      job,
      [](const v1::JobStatus& job) {
        return job.rounds(0).units_leased() == 0;
      },
      10);
  EXPECT_EQ(status.rounds(0).units_leased(), 0u);
  EXPECT_EQ(status.rounds(0).units_pending(), 1u);
}

TEST(GoodGuestTest, KilledMidUnitAndRestartedGivesTheSameDelta) {
  TempDir dir;
  Federation federation(dir.path());
  federation.StartCoordinator({"--open-enrollment"});
  // The reference: one worker, uninterrupted.
  const std::string reference =
      federation.Submit(federation.DemoSpec(1, 1, 120));
  ChildProcess& straight =
      federation.StartWorker("straight", {"--max-units", "1"});
  ASSERT_EQ(straight.Wait(120), 0) << straight.Log();

  // The same unit (same seed, data, parent): killed mid-unit, restarted.
  const std::string job = federation.Submit(federation.DemoSpec(1, 1, 120));
  ChildProcess& first = federation.StartWorker("crashy");
  ASSERT_GE(WaitForLog(first, "step 72/120", 120), 0) << first.Log();
  first.Signal(SIGKILL);
  ASSERT_EQ(first.Wait(), 128 + SIGKILL);
  const size_t restart = first.Log().size();  // both append to one log
  ChildProcess& second = federation.StartWorker("crashy", {"--max-units", "1"});
  EXPECT_GE(
      WaitForLog(second, "continuing " + job + "-r1-s0-p0 after a restart", 60,
                 restart),
      0)
      << second.Log();
  ASSERT_EQ(second.Wait(120), 0) << second.Log();
  // It went on from a checkpoint, not from the start.
  EXPECT_THAT(second.Log().substr(restart),
              ::testing::Not(HasSubstr("step 24/120")));

  federation.coordinator().Signal(SIGTERM);
  ASSERT_EQ(federation.coordinator().Wait(), 0);
  const std::string db = federation.data_dir() + "/state.db";
  const std::string expected = AcceptedContentHash(db, reference);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(AcceptedContentHash(db, job), expected);
}

}  // namespace
}  // namespace openforce::testing
