// `openforce-worker infer` as people run it: reproducing the conformance
// fixture's greedy tokens with and without its PEFT adapter, streaming text
// from a byte-level model, and clear errors for bad requests.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_llama.h"

namespace openforce {
namespace {

using ::openforce::testing::RunProcess;
using ::testing::HasSubstr;

constexpr char kWorker[] = OPENFORCE_WORKER_PATH;
const std::string kFixture = OPENFORCE_FIXTURE_DIR "/hf-llama-tiny";

std::string JoinIds(const nlohmann::json& ids) {
  std::string out;
  for (const auto& id : ids)
    out += (out.empty() ? "" : ",") + std::to_string(id.get<int64_t>());
  return out;
}

TEST(InferCliTest, ReproducesTheFixtureGreedyTokens) {
  const nlohmann::json expected =
      nlohmann::json::parse(*ReadFileToString(kFixture + "/expected.json"));
  const std::string prompt = JoinIds(expected["prompt"]);
  testing::ProcessResult base = RunProcess(
      {kWorker, "infer", "--model", kFixture, "--prompt-ids", prompt,
       "--max-new-tokens", "12", "--greedy", "--json", "--threads=1"});
  ASSERT_EQ(base.exit_code, 0) << base.stderr_text;
  const nlohmann::json base_json = nlohmann::json::parse(base.stdout_text);
  EXPECT_EQ(base_json["generated_ids"], expected["greedy_base"]);
  EXPECT_EQ(base_json["prompt_ids"], expected["prompt"]);
  EXPECT_EQ(base_json["dtype"], "float32");

  for (const char* merge : {"--merge-adapter=false", "--merge-adapter=true"}) {
    testing::ProcessResult adapted =
        RunProcess({kWorker, "infer", "--model", kFixture, "--adapter",
                    kFixture + "/adapter", "--prompt-ids", prompt,
                    "--max-new-tokens", "12", "--greedy", "--json", merge});
    ASSERT_EQ(adapted.exit_code, 0) << adapted.stderr_text;
    EXPECT_EQ(nlohmann::json::parse(adapted.stdout_text)["generated_ids"],
              expected["greedy_adapter"])
        << merge;
  }
}

TEST(InferCliTest, StreamsTextFromATokenizedModel) {
  testing::TempDir dir;
  const std::string model =
      testing::WriteTinyLlama(dir.Join("model"), testing::TinyLlamaConfig(), 5);
  testing::ProcessResult run =
      RunProcess({kWorker, "infer", "--model", model, "--prompt", "Hello",
                  "--max-new-tokens", "8", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const nlohmann::json json = nlohmann::json::parse(run.stdout_text);
  EXPECT_EQ(json["prompt_ids"],
            nlohmann::json({1, 75, 104, 111, 111, 114}));  // bos + bytes
  EXPECT_LE(json["generated_ids"].size(), 8u);

  testing::ProcessResult text =
      RunProcess({kWorker, "infer", "--model", model, "--prompt", "Hello",
                  "--max-new-tokens", "8"});
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  // A random model emits arbitrary bytes: the stream carries them as they are
  // (JSON output replaces invalid UTF-8), byte b being token 3 + b.
  std::string expected_bytes;
  for (const auto& id : json["generated_ids"]) {
    const int64_t token = id.get<int64_t>();
    if (token >= 3 && token < 259)
      expected_bytes.push_back(static_cast<char>(token - 3));
  }
  EXPECT_EQ(text.stdout_text, expected_bytes + "\n");

  // Sampling with a seed is reproducible from the command line too.
  std::vector<std::string> sample = {
      kWorker,   "infer",         "--model", model,     "--prompt",
      "Hi",      "--temperature", "1.2",     "--top-k", "50",
      "--top-p", "0.9",           "--seed",  "7",       "--json"};
  EXPECT_EQ(
      nlohmann::json::parse(RunProcess(sample).stdout_text)["generated_ids"],
      nlohmann::json::parse(RunProcess(sample).stdout_text)["generated_ids"]);
}

TEST(InferCliTest, BadRequestsFailWithClearMessages) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  testing::TempDir dir;
  const std::vector<Case> cases = {
      {{"infer", "--prompt", "x"}, "--model is required"},
      {{"infer", "--model", kFixture},
       "exactly one of --prompt or --prompt-ids"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1,x"},
       "'x' is not a token id"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1,999"}, "token 999"},
      {{"infer", "--model", kFixture, "--prompt", "hi"}, "no tokenizer.model"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1", "--greedy",
        "--temperature", "1"},
       "--greedy cannot be combined"},
      {{"infer", "--model", kFixture, "--prompt-ids", "1", "--top-k", "5"},
       "--temperature > 0"},
      {{"infer", "--model", dir.path(), "--prompt-ids", "1"}, "config.json"},
      {{"infer", "--model", kFixture, "--adapter", dir.path(), "--prompt-ids",
        "1"},
       "adapter_config.json"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {kWorker};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    testing::ProcessResult run = RunProcess(argv);
    EXPECT_EQ(run.exit_code, 1) << c.message;
    EXPECT_THAT(run.stderr_text, HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace openforce
